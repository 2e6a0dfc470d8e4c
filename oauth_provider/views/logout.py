"""OpenID Connect RP-Initiated Logout 1.0: the end session endpoint."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render, resolve_url
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View
from oauthlib.common import add_params_to_uri

from ..exceptions import (
    ClientIdMismatch,
    InvalidIDTokenError,
    InvalidOIDCClientError,
    InvalidOIDCRedirectURIError,
    LogoutDenied,
    OIDCError,
)
from ..http import OAuth2ResponseRedirect, csrf_failure_response, oidc_issuer
from ..id_tokens import load_id_token_with_claims
from ..models import get_application_model
from ..revocation import RevocationTarget, revoke_from_request
from ..settings import oauth2_settings
from ..tokens import is_issued_token_allowed
from .mixins import OIDCLogoutOnlyMixin

PARAMETERS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")


def _load_id_token(token: str | None, request: HttpRequest | None = None):
    """``(IDToken, claims)`` of an ID token hint this provider signed, or ``(None, None)``.

    As django-oauth-toolkit's function of the same name. The signature is verified with the key of
    the application ``aud`` names, the row must still be held for that application (a revoked or
    removed ID token is refused), and, unless ``OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS``,
    the expiry is checked. ``iss`` is checked by :func:`_validate_claims`, or here when
    ``request`` is given.
    """
    issuer = oidc_issuer(request) if request is not None else None
    return load_id_token_with_claims(
        token, issuer=issuer, accept_expired=oauth2_settings.OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS
    )


def _validate_claims(request: HttpRequest, claims: dict) -> bool:
    """Whether the claims of an ID token hint were issued by this provider (``iss``, as required by
    RP-Initiated Logout 1.0 section 2)."""
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    return bool(claims) and claims.get("iss") == validator.get_oidc_issuer_endpoint(request)


def _allow_value(data) -> bool:
    """The ``allow`` field as Django's ``BooleanField`` reads a checkbox: present and not "false"."""
    value = data.get("allow", "")
    return bool(value) and value.lower() != "false"


@method_decorator(never_cache, name="dispatch")
@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class RPInitiatedLogoutView(OIDCLogoutOnlyMixin, View):
    """The end session endpoint (OpenID Connect RP-Initiated Logout 1.0), GET and POST.

    As django-oauth-toolkit: a GET (or a POST without ``allow``) is a logout request, done at once
    when the signed-in user is the one the ID token hint names and prompting is not forced, else a
    GET shows the confirmation form and a POST is refused (``logout_denied``). A POST with
    ``allow`` is the confirmation. The view is CSRF exempt so relying parties can send their
    requests, but a confirmation must carry the CSRF token of the form: a page of another site
    cannot sign a visitor out and revoke their tokens by posting ``allow`` itself.
    """

    template_name = "oauth2_provider/logout_confirm.html"

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return self.handle(request.GET, confirmed=False, may_prompt=True)

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not _allow_value(request.POST):
            return self.handle(request.POST, confirmed=False, may_prompt=False)
        refused = csrf_failure_response(request)
        if refused is not None:
            return refused
        return self.handle(request.POST, confirmed=True, may_prompt=False)

    def handle(self, data, confirmed: bool, may_prompt: bool) -> HttpResponse:
        params = {key: data.get(key, "") for key in PARAMETERS}
        try:
            application, token_user = self.validate_logout_request(
                id_token_hint=params["id_token_hint"] or None,
                client_id=params["client_id"] or None,
                post_logout_redirect_uri=params["post_logout_redirect_uri"] or None,
            )
            if confirmed or not self.must_prompt(token_user):
                return self.do_logout(
                    application,
                    params["post_logout_redirect_uri"] or None,
                    params["state"] or None,
                    token_user,
                )
            if not may_prompt:
                raise LogoutDenied()
        except OIDCError as error:
            return self.error_response(error)
        context = {
            "application": application,
            "params": {key: value for key, value in params.items() if value},
        }
        return render(self.request, self.template_name, context)

    def validate_post_logout_redirect_uri(self, application, post_logout_redirect_uri: str | None) -> None:
        """The URI must be registered on the requesting application, with a permitted scheme."""
        if not post_logout_redirect_uri:
            return
        if application is None:
            raise InvalidOIDCClientError(
                "A post_logout_redirect_uri requires an id_token_hint or a client_id naming the client.",
                parameter="post_logout_redirect_uri",
            )
        scheme = urlsplit(post_logout_redirect_uri).scheme
        if not scheme:
            raise InvalidOIDCRedirectURIError("A Scheme is required for the redirect URI.")
        if (
            oauth2_settings.OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS
            and scheme == "http"
            and application.client_type != application.CLIENT_CONFIDENTIAL
        ):
            raise InvalidOIDCRedirectURIError("http is only allowed with confidential clients.")
        if scheme not in application.get_allowed_schemes():
            raise InvalidOIDCRedirectURIError(f'Redirect to scheme "{scheme}" is not permitted.')
        if not application.post_logout_redirect_uri_allowed(post_logout_redirect_uri):
            raise InvalidOIDCRedirectURIError(
                f"The post_logout_redirect_uri {post_logout_redirect_uri!r} "
                "is not registered for this client."
            )

    def validate_logout_request_user(self, id_token_hint: str | None, client_id: str | None):
        """The stored ID token of the hint (checked against ``client_id`` when both are given)."""
        if not id_token_hint:
            return None
        id_token, claims = _load_id_token(id_token_hint)
        if id_token is None or not _validate_claims(self.request, claims):
            raise InvalidIDTokenError()
        if not is_issued_token_allowed(id_token, self.request):
            # Covered by a revocation (a logout already done with it, for one): refused at once,
            # before the maintenance worker has removed the row.
            raise InvalidIDTokenError()
        if client_id and id_token.application.client_id != client_id:
            raise ClientIdMismatch()
        return id_token

    def get_request_application(self, id_token, client_id: str | None):
        if client_id:
            application = get_application_model().objects.filter(client_id=client_id).first()
            if application is None:
                raise InvalidOIDCClientError("The client_id is unknown.")
            return application
        if id_token is not None:
            return id_token.application
        return None

    def validate_logout_request(
        self, id_token_hint: str | None, client_id: str | None, post_logout_redirect_uri: str | None
    ):
        """``(application, token_user)`` of a valid logout request; an ``OIDCError`` otherwise.

        As django-oauth-toolkit: the hint is verified (and matched with ``client_id`` when both
        are given), and a ``post_logout_redirect_uri`` needs a client it is registered on.
        """
        id_token = self.validate_logout_request_user(id_token_hint, client_id)
        application = self.get_request_application(id_token, client_id)
        self.validate_post_logout_redirect_uri(application, post_logout_redirect_uri)
        return application, id_token.user if id_token is not None else None

    def must_prompt(self, token_user) -> bool:
        """Ask the user unless the hint's user is the one signed in and prompting is not forced.

        Without a session the visitor is always asked (django-oauth-toolkit asks nobody then): a
        link opened from another site with an ID token hint, which may be old and replayed, must
        not revoke anybody's tokens by itself.
        """
        if oauth2_settings.OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT or not self.request.user.is_authenticated:
            return True
        return token_user is None or token_user.pk != self.request.user.pk

    def do_logout(self, application=None, post_logout_redirect_uri=None, state=None, token_user=None):
        """End the session, revoke the user's tokens of the application, and redirect.

        The tokens (access, refresh and ID tokens, codes) are refused from the moment of the
        logout; the rows go through a run of the maintenance worker. Without a post-logout URI
        the user goes to ``LOGOUT_REDIRECT_URL`` (``/`` by default), as an absolute URL.
        """
        request = self.request
        user = token_user
        if user is None and request.user.is_authenticated:
            user = request.user
        if oauth2_settings.OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS and user is not None and application:
            revoke_from_request(
                RevocationTarget(user_id=user.pk, application_id=application.pk),
                trigger="logout",
                triggered_by=f"{user.get_username()} (logout from client {application.client_id})",
                reason="RP-initiated logout",
            )
        logout(request)
        if post_logout_redirect_uri:
            uri = post_logout_redirect_uri
            if state:
                uri = add_params_to_uri(uri, [("state", state)])
            return OAuth2ResponseRedirect(uri, application.get_allowed_schemes())
        landing = resolve_url(settings.LOGOUT_REDIRECT_URL or "/")
        return HttpResponseRedirect(request.build_absolute_uri(landing))

    def error_response(self, error: OIDCError) -> HttpResponse:
        body = {
            "error": error.error,
            "error_description": error.description,
            "parameter": error.parameter,
        }
        accept = self.request.headers.get("Accept", "")
        if "application/json" in accept and "text/html" not in accept:
            return JsonResponse(body, status=error.status_code)
        return render(self.request, self.template_name, {"error": body}, status=error.status_code)
