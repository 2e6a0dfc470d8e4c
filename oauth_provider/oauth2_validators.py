"""The oauthlib request validator: where oauthlib's questions are answered from the database.

oauthlib drives every flow and asks this class whether a client exists, whether its secret
matches, whether a code or token is valid, and to store what it issues. Tokens are always found
by their indexed checksum (``AccessToken.lookup`` / ``RefreshToken.lookup``), never by scanning.
Whether an issued token may be used is decided in :mod:`oauth_provider.tokens`, nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import logging
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from django.contrib.auth import authenticate
from django.db import router, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from jwcrypto import jwt
from oauthlib.common import Request
from oauthlib.oauth2.rfc6749 import errors, utils
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import (
    code_challenge_method_plain,
    code_challenge_method_s256,
)
from oauthlib.openid import RequestValidator

from . import ratelimit, remote_introspection, tokens
from .http import oidc_issuer
from .id_tokens import load_id_token
from .models import (
    AbstractApplication,
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    token_checksum,
)
from .oauth2_backends import LOADED_TOKENS, LoadedTokens
from .scopes import get_scopes_backend, requested_scope_problem
from .settings import oauth2_settings

log = logging.getLogger(__name__)

# Which application grant types may use which OAuth2 grant_type at the token endpoint.
GRANT_TYPE_MAPPING: dict[str, tuple[str, ...]] = {
    "authorization_code": (
        AbstractApplication.GRANT_AUTHORIZATION_CODE,
        AbstractApplication.GRANT_OPENID_HYBRID,
    ),
    "password": (AbstractApplication.GRANT_PASSWORD,),
    "client_credentials": (AbstractApplication.GRANT_CLIENT_CREDENTIALS,),
    "refresh_token": (
        AbstractApplication.GRANT_AUTHORIZATION_CODE,
        AbstractApplication.GRANT_PASSWORD,
        AbstractApplication.GRANT_CLIENT_CREDENTIALS,
        AbstractApplication.GRANT_OPENID_HYBRID,
    ),
}

# How a PKCE code_verifier answers a code_challenge, by method (RFC 7636 4.6).
PKCE_CHECKS = {"S256": code_challenge_method_s256, "plain": code_challenge_method_plain}

# RFC 6750 error bodies of a failed bearer check, by the reason tokens.access_token_problem gives.
BEARER_ERRORS = {
    tokens.INVALID: ("invalid_token", "The access token is invalid."),
    tokens.EXPIRED: ("invalid_token", "The access token has expired."),
    tokens.INSUFFICIENT_SCOPE: (
        "insufficient_scope",
        "The access token is valid but does not have enough scope.",
    ),
}


def _headers(request: Request) -> dict:
    """The request's headers; empty for a stand-in request without them (as DOT's tests pass)."""
    return getattr(request, "headers", None) or {}


class OAuth2Validator(RequestValidator):
    """oauthlib's ``RequestValidator`` (OAuth2 and OpenID Connect) over the provider's models."""

    # A standard claim is released only when its scope was granted (OpenID Connect Core 5.4).
    oidc_claim_scope: dict[str, str] | None = {
        "sub": "openid",
        "name": "profile",
        "family_name": "profile",
        "given_name": "profile",
        "preferred_username": "profile",
        "email": "email",
    }

    # -- clients -----------------------------------------------------------------------------

    def _load_application(self, client_id: str | None, request: Request):
        """The usable application with this client id, cached on ``request.client``, or None."""
        application_model = get_application_model()
        cached = request.client
        if isinstance(cached, application_model) and cached.client_id == client_id:
            return cached
        request.client = None
        if not client_id or "\x00" in client_id:
            return None
        # client_id is unique: ``[:1]`` rather than ``first()``, whose ORDER BY costs compiling.
        client = next(iter(application_model.objects.filter(client_id=client_id)[:1]), None)
        if client is None or not client.is_usable(request):
            return None
        request.client = client
        return client

    @staticmethod
    def _basic_auth_credentials(request: Request) -> tuple[str, str] | None:
        """``(client_id, client_secret)`` from an HTTP Basic header (RFC 6749 2.3.1), or None."""
        headers = _headers(request)
        auth = headers.get("Authorization") or headers.get("HTTP_AUTHORIZATION")
        if not auth:
            return None
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        client_id, sep, client_secret = decoded.partition(":")
        if not sep:
            return None
        # The credentials are form-encoded before being put into the header.
        return unquote_plus(client_id), unquote_plus(client_secret)

    def client_authentication_required(self, request: Request, *args, **kwargs) -> bool:
        """Confidential clients, and any client presenting credentials, must authenticate."""
        if self._basic_auth_credentials(request):
            return True
        if getattr(request, "client_secret", None):
            return True
        client = self._load_application(request.client_id, request)
        if client is not None:
            return client.client_type == AbstractApplication.CLIENT_CONFIDENTIAL
        return super().client_authentication_required(request, *args, **kwargs)

    def authenticate_client(self, request: Request, *args, **kwargs) -> bool:
        """HTTP Basic first (RFC 6749 2.3.1 prefers it); when that fails, ``client_id`` and
        ``client_secret`` in the body, as django-oauth-toolkit does."""
        if self._authenticate_basic_auth(request):
            return True
        if self._basic_auth_credentials(request) is not None and not getattr(request, "client_secret", None):
            # Nothing in the body to fall back to: one failure, counted once by the rate limit.
            return False
        return self._authenticate_request_body(request)

    def _authenticate_basic_auth(self, request: Request) -> bool:
        """The client of the HTTP Basic header, if its secret matches (DOT's hook)."""
        basic = self._basic_auth_credentials(request)
        if basic is None:
            return False
        client_id, client_secret = basic
        if not self._authenticate_credentials(request, client_id, client_secret):
            return False
        if not request.client_id:
            request.client_id = client_id
        return True

    def _authenticate_request_body(self, request: Request) -> bool:
        """The client of ``client_id`` and ``client_secret`` in the body (DOT's hook)."""
        client_id = getattr(request, "client_id", None)
        client_secret = getattr(request, "client_secret", None)
        return self._authenticate_credentials(request, client_id, client_secret)

    def _authenticate_credentials(self, request: Request, client_id, client_secret) -> bool:
        # Before any secret is hashed: refused with 429 once the address or client used up its failures.
        ratelimit.check(_headers(request), client_id)
        client = self._load_application(client_id, request)
        if client is None:
            log.debug("Client authentication failed: unknown client")
            ratelimit.record_failure(_headers(request), client_id)
            return False
        if not client.check_client_secret(client_secret):
            log.info("Client authentication failed: wrong secret for client %s", client.client_id)
            ratelimit.record_failure(_headers(request), client_id)
            request.client = None
            return False
        return True

    def authenticate_client_id(self, client_id: str, request: Request, *args, **kwargs) -> bool:
        """A client that did not authenticate may proceed only if it is public."""
        client = self._load_application(client_id, request)
        return client is not None and client.client_type != AbstractApplication.CLIENT_CONFIDENTIAL

    def validate_client_id(self, client_id: str, request: Request, *args, **kwargs) -> bool:
        return self._load_application(client_id, request) is not None

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs) -> bool:
        allowed = GRANT_TYPE_MAPPING.get(grant_type)
        return bool(allowed) and request.client.allows_grant_type(*allowed)

    def validate_response_type(self, client_id, response_type, client, request, *args, **kwargs) -> bool:
        if response_type == "code":
            return client.allows_grant_type(AbstractApplication.GRANT_AUTHORIZATION_CODE)
        if response_type in ("token", "id_token", "id_token token"):
            return client.allows_grant_type(AbstractApplication.GRANT_IMPLICIT)
        if response_type in ("code id_token", "code token", "code id_token token"):
            return client.allows_grant_type(AbstractApplication.GRANT_OPENID_HYBRID)
        return False

    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs) -> bool:
        problem = requested_scope_problem(scopes)
        if problem is None:
            available = set(get_scopes_backend().get_available_scopes(application=client, request=request))
            unknown = [name for name in scopes if name not in available]
            if unknown:
                problem = f"scope: {unknown[0][:40]!r} is not a scope this client may request"
        if problem:
            raise errors.InvalidScopeError(description=problem, request=request)
        return True

    def get_default_scopes(self, client_id, request, *args, **kwargs) -> list[str]:
        return get_scopes_backend().get_default_scopes(application=request.client, request=request)

    def validate_redirect_uri(self, client_id, redirect_uri, request, *args, **kwargs) -> bool:
        """Exact match with a registered URI, and a scheme still allowed by the settings."""
        scheme = urlsplit(redirect_uri).scheme.lower()
        allowed = {s.lower() for s in request.client.get_allowed_schemes()}
        return scheme in allowed and request.client.redirect_uri_allowed(redirect_uri)

    def get_default_redirect_uri(self, client_id, request, *args, **kwargs) -> str | None:
        return request.client.default_redirect_uri

    def is_origin_allowed(self, client_id, origin, request, *args, **kwargs) -> bool:
        return request.client.origin_allowed(origin)

    # -- authorization codes -----------------------------------------------------------------

    def is_pkce_required(self, client_id: str, request: Request) -> bool:
        # oauthlib compares with ``is True``: a real bool is needed.
        return bool(oauth2_settings.pkce_required(client_id))

    def _grant(self, code: str, request: Request, client=None):
        """The grant of ``code`` issued to ``client`` (the authenticated one), or None.

        oauthlib asks for it several times per exchange (the code, the PKCE challenge and method,
        the redirect URI): it is read once per request, with its application and user.
        """
        client = request.client if client is None else client
        key = (code, getattr(client, "pk", None))
        read = getattr(request, "_provider_grant", None)
        if read is not None and read[0] == key:
            return read[1]
        grant = next(
            iter(
                get_grant_model()
                .objects.select_related("application", "user")
                .filter(code=code, application=client)[:1]
            ),
            None,
        )
        request._provider_grant = (key, grant)
        return grant

    def get_code_challenge(self, code: str, request: Request) -> str | None:
        grant = self._grant(code, request)
        return (grant.code_challenge or None) if grant else None

    def get_code_challenge_method(self, code: str, request: Request) -> str | None:
        grant = self._grant(code, request)
        return (grant.code_challenge_method or None) if grant else None

    def save_authorization_code(self, client_id, code, request, *args, **kwargs) -> None:
        expires = timezone.now() + timedelta(seconds=oauth2_settings.AUTHORIZATION_CODE_EXPIRE_SECONDS)
        get_grant_model().objects.create(
            application=request.client,
            user=request.user,
            code=code["code"],
            expires=expires,
            redirect_uri=request.redirect_uri,
            scope=" ".join(request.scopes),
            code_challenge=request.code_challenge or "",
            code_challenge_method=request.code_challenge_method or "",
            nonce=request.nonce or "",
            claims=json.dumps(request.claims or {}),
            auth_time=getattr(request, "auth_time", None),
        )

    def validate_code(self, client_id, code, client, request, *args, **kwargs) -> bool:
        grant = self._grant(code, request)
        if grant is None or grant.is_expired():
            return False
        if grant.consumed is not None:
            # A replayed code: whoever holds it, the tokens of the first exchange may be in the wrong
            # hands (RFC 6749 4.1.2). oauthlib answers without raising, so the revocation commits.
            log.warning("Authorization code replayed; revoking the tokens of its first exchange")
            get_refresh_token_model().revoke_family(grant.token_family)
            return False
        if not self._code_verifier_matches(grant, request):
            # One guess per code: a failed PKCE verification burns it (RFC 9700 2.1.1). oauthlib
            # answers validation errors without raising, so the delete is committed.
            log.info("PKCE verification failed; authorization code of client %s burnt", client_id)
            grant.delete()
            if request.code_verifier is None:
                raise errors.MissingCodeVerifierError(request=request)
            return False
        if grant.user is None or not tokens.is_issued_token_allowed(grant, request):
            # An inactive user, or a revocation started after the code was issued: the tokens it
            # would be swapped for are newer than the revocation and would escape it.
            return False
        request.scopes = grant.scope.split()
        request.user = grant.user
        request.auth_time = grant.auth_time
        if grant.nonce:
            request.nonce = grant.nonce
        if grant.claims:
            request.claims = json.loads(grant.claims)
        return True

    @staticmethod
    def _code_verifier_matches(grant, request: Request) -> bool:
        """Whether the request's ``code_verifier`` answers the grant's PKCE challenge (RFC 7636 4.6).

        True for a grant without a challenge (``PKCE_REQUIRED`` is oauthlib's check). A challenge
        stored with a method no longer in ``PKCE_CODE_CHALLENGE_METHODS`` does not verify.
        """
        if not grant.code_challenge:
            return True
        method = grant.code_challenge_method or grant.CODE_CHALLENGE_PLAIN
        verifier = request.code_verifier
        if verifier is None or method not in oauth2_settings.PKCE_CODE_CHALLENGE_METHODS:
            return False
        check = PKCE_CHECKS.get(method)
        return check is not None and check(verifier, grant.code_challenge)

    def confirm_redirect_uri(self, client_id, code, redirect_uri, client, request, *args, **kwargs) -> bool:
        """The redirect URI of the authorization request, or ``invalid_grant`` (RFC 6749 5.2).

        oauthlib would answer ``invalid_request``; the code was issued to another URI, which is
        what ``invalid_grant`` names.
        """
        grant = self._grant(code, request, client)
        if grant is None or not grant.redirect_uri_allowed(redirect_uri):
            raise errors.InvalidGrantError(
                description="redirect_uri does not match the one of the authorization request.",
                request=request,
            )
        return True

    def invalidate_authorization_code(self, client_id, code, request, *args, **kwargs) -> None:
        """Mark the code consumed, with the token family it was swapped for, until it expires.

        A code already consumed (a concurrent exchange) is an invalid grant. The token endpoint
        runs in one transaction, so raising here also undoes the tokens this exchange just saved.
        """
        marked = (
            get_grant_model()
            .objects.filter(code=code, application=request.client, consumed__isnull=True)
            .update(consumed=timezone.now(), token_family=getattr(request, "issued_token_family", None))
        )
        if not marked:
            raise errors.InvalidGrantError(request=request)

    def get_authorization_code_scopes(self, client_id, code, redirect_uri, request) -> list[str]:
        scope = get_grant_model().objects.filter(code=code).values_list("scope", flat=True).first()
        return utils.scope_to_list(scope) if scope else []

    def get_authorization_code_nonce(self, client_id, code, redirect_uri, request) -> str | None:
        nonce = get_grant_model().objects.filter(code=code).values_list("nonce", flat=True).first()
        return nonce or None

    # -- resource owner password ---------------------------------------------------------------

    def build_http_request(self, request: Request) -> HttpRequest:
        """A Django request for ``authenticate()``, for backends that look at it."""
        http_request = HttpRequest()
        http_request.path = request.uri
        http_request.method = request.http_method
        http_request.META = dict(_headers(request))
        return http_request

    def validate_user(self, username, password, client, request, *args, **kwargs) -> bool:
        """The password grant: a wrong password counts as a failure of the client and the address."""
        ratelimit.check(_headers(request), request.client_id)
        if username and "\x00" not in username:
            user = authenticate(self.build_http_request(request), username=username, password=password)
            if user is not None and user.is_active:
                request.user = user
                return True
        ratelimit.record_failure(_headers(request), request.client_id)
        return False

    # -- bearer tokens -------------------------------------------------------------------------

    @staticmethod
    def _refuse_bearer(request: Request, problem: str) -> bool:
        error, description = BEARER_ERRORS[problem]
        request.oauth2_error = OrderedDict([("error", error), ("error_description", description)])
        return False

    def _load_access_token(self, token: str):
        """The access token row of ``token``, or None (django-oauth-toolkit's hook)."""
        return get_access_token_model().lookup(token)

    def _access_token_of_request(self, token: str, request: Request):
        """``_load_access_token``, once per Django request (``LoadedTokens``): the middleware and
        the view check the same token, and each check's decision is still made afresh."""
        loaded = _headers(request).get(LOADED_TOKENS)
        if isinstance(loaded, LoadedTokens) and token in loaded.rows:
            return loaded.rows[token]
        return self._remember_access_token(token, request, self._load_access_token(token))

    @staticmethod
    def _remember_access_token(token: str, request: Request, access_token):
        loaded = _headers(request).get(LOADED_TOKENS)
        if isinstance(loaded, LoadedTokens):
            loaded.rows[token] = access_token
        return access_token

    def validate_bearer_token(self, token: str, scopes: list[str], request: Request) -> bool:
        """The bearer check of every protected resource; the decision is ``tokens.access_token_problem``."""
        if not token:
            return False  # no credentials: RFC 6750 3.1 wants a challenge without an error code
        access_token = self._access_token_of_request(token, request)
        problem = tokens.access_token_problem(access_token, scopes, request)
        if (
            problem is not None
            and oauth2_settings.RESOURCE_SERVER_INTROSPECTION_URL
            and (access_token is None or access_token.application_id is None)
        ):
            # A token of another authorization server, or our expired copy of its last answer.
            access_token = self._remember_access_token(
                token,
                request,
                self._get_token_from_authentication_server(
                    token,
                    oauth2_settings.RESOURCE_SERVER_INTROSPECTION_URL,
                    oauth2_settings.RESOURCE_SERVER_AUTH_TOKEN,
                    oauth2_settings.RESOURCE_SERVER_INTROSPECTION_CREDENTIALS,
                ),
            )
            problem = tokens.access_token_problem(access_token, scopes, request)
        if problem is not None:
            return self._refuse_bearer(request, problem)
        request.client = access_token.application
        request.user = access_token.user
        request.scopes = list(access_token.scopes)
        request.access_token = access_token
        return True

    def _get_token_from_authentication_server(
        self, token: str, introspection_url: str, introspection_token: str | None, introspection_credentials
    ):
        """The local stand-in of a token another authorization server vouches for (RFC 7662), or
        None (django-oauth-toolkit's method): asked at ``introspection_url`` with a bearer
        ``introspection_token`` or HTTP Basic ``introspection_credentials``, and kept until its
        ``exp``, at most ``RESOURCE_SERVER_TOKEN_CACHING_SECONDS``."""
        return remote_introspection.token_from_authorization_server(
            token, introspection_url, introspection_token, introspection_credentials
        )

    def rotate_refresh_token(self, request: Request) -> bool:
        return bool(oauth2_settings.ROTATE_REFRESH_TOKEN)

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs) -> bool:
        """Accept a live refresh token of this client, or a rotated one within the grace period.

        Any other presentation of a rotated token is a replay: with
        ``REFRESH_TOKEN_REUSE_PROTECTION`` its whole family is revoked (RFC 9700 4.14.2).
        """
        rt = (
            get_refresh_token_model()
            .objects.select_related("access_token", "user", "application")
            .filter(token_checksum=token_checksum(refresh_token))
            .order_by(F("revoked").desc(nulls_first=True), "-id")
            .first()
        )
        if rt is None or rt.application_id != client.pk:
            return False
        if rt.revoked is not None:
            if not tokens.refresh_token_in_grace_period(rt, request):
                if oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION and rt.token_family:
                    log.warning("Refresh token reuse detected; revoking token family %s", rt.token_family)
                    get_refresh_token_model().revoke_family(rt.token_family)
                return False
        elif not tokens.is_refresh_token_usable(rt, request):
            return False
        request.user = rt.user
        request.refresh_token = refresh_token
        request.refresh_token_instance = rt
        return True

    def get_original_scopes(self, refresh_token, request, *args, **kwargs) -> list[str]:
        rt = request.refresh_token_instance
        access_token = rt.access_token or tokens.successor_access_token(rt)
        return utils.scope_to_list(access_token.scope) if access_token else []

    def save_bearer_token(self, token: dict, request: Request, *args, **kwargs) -> None:
        access_token_model = get_access_token_model()
        # No savepoint: at the token endpoint this runs inside the request's transaction, which an
        # error here rolls back whole; two round trips fewer per token issued.
        with transaction.atomic(using=router.db_for_write(access_token_model), savepoint=False):
            self._save_bearer_token(token, request, *args, **kwargs)

    def _save_bearer_token(self, token: dict, request: Request, *args, **kwargs) -> None:
        """Store what oauthlib issued; for a refresh, rotate or reuse as configured (RFC 6749 6)."""
        if "scope" not in token:
            raise errors.InvalidScopeError(
                description="Failed to issue a token: missing scope", request=request
            )
        expires = timezone.now() + timedelta(
            seconds=token.get("expires_in", oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
        )
        if request.grant_type == "client_credentials":
            request.user = None
        previous = getattr(request, "refresh_token_instance", None)

        if request.grant_type == "refresh_token" and previous is not None:
            self._save_refreshed_token(token, request, previous, expires)
            return
        access_token = self._create_access_token(expires, request, token)
        if token.get("refresh_token"):
            self._create_refresh_token(request, token["refresh_token"], access_token, None)

    def _save_refreshed_token(self, token: dict, request: Request, previous, expires) -> None:
        access_token_model = get_access_token_model()
        refresh_token_model = get_refresh_token_model()
        locked = refresh_token_model.objects.select_for_update().filter(pk=previous.pk).first()
        if locked is None:
            raise errors.InvalidGrantError(request=request)

        if locked.revoked is not None:
            # A replay within the grace period (or a concurrent refresh that won the lock):
            # answer with the pair the first refresh issued.
            successor = (
                access_token_model.objects.select_for_update().filter(source_refresh_token=locked).first()
            )
            if successor is None or not tokens.refresh_token_in_grace_period(locked, request):
                raise errors.InvalidGrantError(request=request)
            successor_refresh = refresh_token_model.objects.filter(access_token=successor).first()
            if successor_refresh is None:
                # The successor's refresh token is gone (cleaned up, or revoked by a concurrent
                # rotation) while the access token survived: bind a new one to it, as DOT does,
                # rather than refuse a retry the grace period exists for.
                successor_refresh = self._create_refresh_token(
                    request, token["refresh_token"], successor, locked
                )
            token["access_token"] = successor.token
            token["refresh_token"] = successor_refresh.token
            token["scope"] = successor.scope
            token["expires_in"] = max(0, int((successor.expires - timezone.now()).total_seconds()))
            return

        if not self.rotate_refresh_token(request) and locked.access_token_id:
            access_token = access_token_model.objects.select_for_update().get(pk=locked.access_token_id)
            access_token.token = token["access_token"]
            access_token.scope = token["scope"]
            access_token.expires = expires
            access_token.user = request.user
            access_token.id_token = self._id_token_issued(token, request) or access_token.id_token
            access_token.save()
            return

        locked.revoke()
        access_token = self._create_access_token(expires, request, token, source_refresh_token=locked)
        self._create_refresh_token(request, token["refresh_token"], access_token, locked)

    def _id_token_issued(self, token: dict, request: Request):
        """The ID token row oauthlib just issued with ``token``, if any (its expiry is not judged)."""
        return self._load_id_token(token.get("id_token"), request, accept_expired=True)

    def _create_access_token(self, expires, request: Request, token: dict, source_refresh_token=None):
        return get_access_token_model().objects.create(
            user=request.user,
            scope=token["scope"],
            expires=expires,
            token=token["access_token"],
            id_token=self._id_token_issued(token, request),
            application=request.client,
            source_refresh_token=source_refresh_token,
        )

    def _create_refresh_token(self, request: Request, raw: str, access_token, previous):
        family = previous.token_family if previous is not None and previous.token_family else uuid.uuid4()
        request.issued_token_family = family
        return get_refresh_token_model().objects.create(
            user=request.user,
            application=request.client,
            token=raw,
            access_token=access_token,
            token_family=family,
        )

    def revoke_token(
        self, token: str, token_type_hint: str | None, request: Request, *args, **kwargs
    ) -> None:
        """Revoke a token of the requesting client (RFC 7009 2.1); unknown tokens are ignored.

        Revoking an access token also revokes its refresh token, so that the refresh token cannot
        mint a replacement; revoking a refresh token deletes its access token.
        """
        application = request.client
        if application is None or application.pk is None:
            return
        access_token_model = get_access_token_model()
        refresh_token_model = get_refresh_token_model()
        order = [access_token_model, refresh_token_model]
        if token_type_hint == "refresh_token":
            order.reverse()
        checksum = token_checksum(token)
        for model in order:
            matches = list(model.objects.filter(token_checksum=checksum, application=application))
            for match in matches:
                if isinstance(match, access_token_model):
                    paired = refresh_token_model.objects.filter(access_token=match).first()
                    if paired is not None:
                        paired.revoke()
                    else:
                        match.revoke()
                else:
                    match.revoke()
            if matches:
                return

    # -- OpenID Connect ------------------------------------------------------------------------

    def get_additional_claims(self, request: Request) -> dict[str, Any]:
        """Claims besides ``sub``: none by default, as django-oauth-toolkit. Override to add some.

        Two forms, as DOT: ``get_additional_claims(self, request)`` returning values, or
        ``get_additional_claims(self)`` returning callables of the request, whose keys discovery
        then lists in ``claims_supported``. Each claim is released when ``oidc_claim_scope`` maps
        it to a granted scope (or always when ``oidc_claim_scope`` is None).
        """
        return {}

    def _get_additional_claims_is_request_agnostic(self) -> bool:
        return len(inspect.signature(self.get_additional_claims).parameters) == 0

    def get_claim_dict(self, request: Request) -> dict[str, Any]:
        """``sub`` and the additional claims, as values or as callables of the request."""
        if self._get_additional_claims_is_request_agnostic():
            return {"sub": lambda r: str(r.user.pk), **self.get_additional_claims()}
        return {"sub": str(request.user.pk), **self.get_additional_claims(request)}

    def get_oidc_claims(self, token, token_handler, request: Request) -> dict[str, Any]:
        scopes = set(request.scopes or [])
        return {
            name: value(request) if callable(value) else value
            for name, value in self.get_claim_dict(request).items()
            if not self.oidc_claim_scope or self.oidc_claim_scope.get(name) in scopes
        }

    def get_discovery_claims(self, request) -> list[str]:
        """The claims this configuration can release: ``sub``, and the keys of request-agnostic
        additional claims (those of the request form are not known without a request)."""
        if self._get_additional_claims_is_request_agnostic():
            return list(dict.fromkeys(["sub", *self.get_claim_dict(request)]))
        return ["sub"]

    def get_oidc_issuer_endpoint(self, request) -> str:
        return oidc_issuer(request)

    def get_id_token_dictionary(self, token, token_handler, request: Request) -> tuple[dict, datetime]:
        """Claims oauthlib does not add itself (``iss``, ``exp``, ``auth_time``, ``jti``) and the expiry."""
        claims = self.get_oidc_claims(token, token_handler, request)
        expires = timezone.now() + timedelta(seconds=oauth2_settings.ID_TOKEN_EXPIRE_SECONDS)
        # The sign-in the authorization request saw; for a refresh, the user's last sign-in.
        auth_time = getattr(request, "auth_time", None) or request.user.last_login or timezone.now()
        if timezone.is_naive(auth_time):
            # Without USE_TZ, Django keeps datetimes naive in TIME_ZONE, not in UTC.
            auth_time = timezone.make_aware(auth_time, timezone.get_default_timezone())
        claims.update(
            iss=self.get_oidc_issuer_endpoint(request),
            exp=int(expires.timestamp()),
            auth_time=int(auth_time.timestamp()),
            jti=str(uuid.uuid4()),
        )
        return claims, expires

    def finalize_id_token(self, id_token: dict, token: dict, token_handler, request: Request) -> str:
        """Sign the ID token with the application's key (RS256 provider key or HS256 client secret)."""
        claims, expires = self.get_id_token_dictionary(token, token_handler, request)
        id_token.update(claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        application = request.client
        header = {"typ": "JWT", "alg": application.algorithm}
        key = application.jwk_key
        if application.algorithm == AbstractApplication.RS256_ALGORITHM:
            header["kid"] = key.thumbprint()
        signed = jwt.JWT(header=json.dumps(header), claims=json.dumps(id_token, default=str))
        signed.make_signed_token(key)
        id_token_model = get_id_token_model()
        with transaction.atomic(using=router.db_for_write(id_token_model)):
            row = id_token_model.objects.create(
                user=request.user,
                scope=" ".join(request.scopes or []),
                expires=expires,
                jti=id_token["jti"],
                application=application,
            )
        request.id_token = row
        return signed.serialize()

    def get_jwt_bearer_token(self, token, token_handler, request):
        return self.get_id_token(token, token_handler, request)

    def _load_id_token(self, raw: str | None, request: Request | None = None, accept_expired: bool = False):
        """The stored ID token of a JWT this provider signed, bound to the application whose key
        verified it (``id_tokens.load_id_token``), or None.

        Without a request (django-oauth-toolkit's ``_load_id_token(token)``) the issuer is not
        checked, only the signature, the expiry and the stored row.
        """
        issuer = self.get_oidc_issuer_endpoint(request) if request is not None else None
        return load_id_token(raw, issuer=issuer, accept_expired=accept_expired)

    def validate_id_token(self, token, scopes, request) -> bool:
        """An ID token as a bearer token (``OIDC_ID_TOKEN_AS_BEARER``): ``tokens.id_token_problem``."""
        id_token = self._load_id_token(token, request)
        problem = tokens.id_token_problem(id_token, scopes, request)
        if problem is not None:
            return self._refuse_bearer(request, problem)
        request.client = id_token.application
        request.user = id_token.user
        request.scopes = scopes
        request.access_token = id_token
        return True

    def validate_jwt_bearer_token(self, token, scopes, request) -> bool:
        """A bearer value shaped like a JWT, which oauthlib's OpenID Connect server sends here.

        An ID token is not a credential: it is refused like any unknown token, unless
        ``OIDC_ID_TOKEN_AS_BEARER`` keeps django-oauth-toolkit's behaviour, and then it must pass
        every check of an access token and its access token must still be usable. An access token
        that looks like a JWT (a signing ``ACCESS_TOKEN_GENERATOR``) is checked as any other.
        """
        if not oauth2_settings.OIDC_ID_TOKEN_AS_BEARER or get_access_token_model().lookup(token) is not None:
            return self.validate_bearer_token(token, scopes, request)
        return self.validate_id_token(token, scopes, request)

    def validate_silent_authorization(self, request) -> bool:
        # The authorization view answers prompt=none itself before oauthlib is asked.
        return True

    def validate_silent_login(self, request) -> bool:
        return True

    def validate_user_match(self, id_token_hint, scopes, claims, request) -> bool:
        return True

    def get_userinfo_claims(self, request) -> dict[str, Any]:
        return self.get_oidc_claims(request.access_token, None, request)


def expiry_timestamp(value: datetime) -> int:
    """Seconds since the epoch of an aware datetime, for ``exp`` claims and introspection."""
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())
