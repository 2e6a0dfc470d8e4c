"""The bridge between Django requests and oauthlib's server: parameters in, responses out."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.db import router, transaction
from django.http import HttpRequest
from oauthlib import oauth2
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.common import urlencode, urlencoded
from oauthlib.oauth2.rfc6749 import errors, utils

from .authentication import session_auth_time
from .exceptions import FatalClientError, OAuthToolkitError
from .models import get_access_token_model
from .scopes import requested_scope_problem
from .settings import oauth2_settings

# A header name no client can send (it has no HTTP_ prefix), telling oauthlib the request was TLS.
SECURE_MARKER = "X_OAUTH_PROVIDER_SECURE"

# A header name no client can send either, carrying the tokens one Django request already loaded.
LOADED_TOKENS = "X_OAUTH_PROVIDER_LOADED_TOKENS"

Response = tuple[str | None, dict[str, str], str, int]


class LoadedTokens:
    """The access token rows looked up for one Django request, by raw token.

    A request is often checked more than once (the bearer middleware, then the view; the
    userinfo view, then oauthlib's userinfo endpoint): the row is read once per request, and every
    policy check (:mod:`oauth_provider.tokens`) still runs each time. Not a dict: oauthlib copies
    dicts it finds among the headers, and this must stay the request's one object.
    """

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: dict[str, object] = {}

    @classmethod
    def of(cls, request: HttpRequest) -> LoadedTokens:
        loaded = getattr(request, "_oauth_provider_loaded_tokens", None)
        if not isinstance(loaded, cls):
            loaded = cls()
            request._oauth_provider_loaded_tokens = loaded
        return loaded


class OAuthLibCore:
    """Wraps an oauthlib ``Server``: extracts what it needs from a Django request, maps its errors."""

    def __init__(self, server: Any = None) -> None:
        self.server = server or oauth2_settings.OAUTH2_SERVER_CLASS(
            oauth2_settings.OAUTH2_VALIDATOR_CLASS(), **oauth2_settings.server_kwargs
        )

    def _get_escaped_full_path(self, request: HttpRequest) -> str:
        """The path and query, with the characters oauthlib refuses in a query percent-encoded."""
        parts = urlsplit(request.get_full_path())
        query = "".join(c if c in urlencoded else quote(c, safe="") for c in parts.query)
        return urlunsplit(parts._replace(query=query))

    def extract_headers(self, request: HttpRequest) -> dict[str, Any]:
        headers = {k: v for k, v in request.META.items() if k not in ("wsgi.input", "wsgi.errors")}
        headers.pop(SECURE_MARKER, None)
        headers.pop(LOADED_TOKENS, None)
        if "HTTP_AUTHORIZATION" in headers:
            headers["Authorization"] = headers["HTTP_AUTHORIZATION"]
        if "CONTENT_TYPE" in headers:
            headers["Content-Type"] = headers["CONTENT_TYPE"]
        if "HTTP_ORIGIN" in headers:
            headers["Origin"] = headers["HTTP_ORIGIN"]
        if request.is_secure():
            headers[SECURE_MARKER] = "1"
        return headers

    def extract_body(self, request: HttpRequest) -> list[tuple[str, str]]:
        """Form parameters; a repeated parameter keeps its last value."""
        return [(key, values[-1]) for key, values in request.POST.lists()]

    def _extract_params(self, request: HttpRequest) -> tuple[str, str, str, dict[str, Any]]:
        uri = self._get_escaped_full_path(request)
        return uri, request.method, urlencode(self.extract_body(request)), self.extract_headers(request)

    def validate_authorization_request(self, request: HttpRequest) -> tuple[list[str], dict[str, Any]]:
        try:
            uri, http_method, body, headers = self._extract_params(request)
            scopes, credentials = self.server.validate_authorization_request(
                uri, http_method=http_method, body=body, headers=headers
            )
        except oauth2.FatalClientError as error:
            raise FatalClientError(error=error) from error
        except oauth2.OAuth2Error as error:
            raise OAuthToolkitError(error=error) from error
        self._check_code_challenge_method(uri, credentials)
        return scopes, credentials

    @staticmethod
    def _check_code_challenge_method(uri: str, credentials: dict[str, Any]) -> None:
        """Refuse a PKCE method outside ``PKCE_CODE_CHALLENGE_METHODS`` (oauthlib takes both).

        oauthlib reads a challenge without a method as ``plain`` (RFC 7636 4.3), so with the
        default ``["S256"]`` that is refused too. The redirect URI is trusted by now: the error
        goes back to the client.
        """
        if not credentials.get("code_challenge"):
            return
        method = credentials.get("code_challenge_method")
        if method in oauth2_settings.PKCE_CODE_CHALLENGE_METHODS:
            return
        oauthlib_request = OAuthlibRequest(uri)
        oauthlib_request.redirect_uri = credentials.get("redirect_uri")
        oauthlib_request.state = credentials.get("state")
        allowed = ", ".join(oauth2_settings.PKCE_CODE_CHALLENGE_METHODS)
        raise OAuthToolkitError(
            error=errors.UnsupportedCodeChallengeMethodError(
                description=f"code_challenge_method {method!r} is not supported; use {allowed}.",
                request=oauthlib_request,
            )
        )

    def create_authorization_response(
        self, request: HttpRequest, scopes: list[str], credentials: dict[str, Any], allow: bool
    ) -> Response:
        try:
            if not allow:
                raise oauth2.AccessDeniedError(state=credentials.get("state"))
            credentials["user"] = request.user
            credentials["auth_time"] = session_auth_time(request)
            uri, http_method, _body, headers = self._extract_params(request)
            headers, body, status = self.server.create_authorization_response(
                uri=uri, http_method=http_method, headers=headers, scopes=scopes, credentials=credentials
            )
            return headers.get("Location"), headers, body, status
        except oauth2.FatalClientError as error:
            raise FatalClientError(error=error, redirect_uri=credentials["redirect_uri"]) from error
        except oauth2.OAuth2Error as error:
            raise OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]) from error

    def _get_extra_credentials(self, request: HttpRequest) -> dict[str, Any] | None:
        """Extra keys merged into the token response (DOT's hook; none by default)."""
        return None

    def create_token_response(self, request: HttpRequest) -> Response:
        """Run the token request in one transaction, so a failure late in it stores nothing.

        A ``scope`` parameter too long, with too many names or a name twice is refused first, for
        every grant type: oauthlib checks a refresh request's scopes only against the original ones,
        so ``read read read ...`` would otherwise be issued and stored as it came.
        """
        uri, http_method, body, headers = self._extract_params(request)
        scope = request.POST.get("scope", request.GET.get("scope"))
        problem = requested_scope_problem(utils.scope_to_list(scope)) if scope else None
        if problem:
            error = oauth2.InvalidScopeError(description=problem)
            return None, error.headers, error.json, error.status_code
        if not request.POST.get("grant_type"):
            # oauthlib would fall back to its default grant type and answer unsupported_grant_type.
            error = errors.InvalidRequestError(description="Missing grant_type parameter.")
            return None, error.headers, error.json, error.status_code
        try:
            with transaction.atomic(using=router.db_for_write(get_access_token_model())):
                headers, body, status = self.server.create_token_response(
                    uri, http_method, body, headers, self._get_extra_credentials(request)
                )
        except oauth2.OAuth2Error as exc:
            return None, exc.headers, exc.json, exc.status_code
        return headers.get("Location"), headers, body, status

    def create_revocation_response(self, request: HttpRequest) -> Response:
        uri, http_method, body, headers = self._extract_params(request)
        headers, body, status = self.server.create_revocation_response(uri, http_method, body, headers)
        return headers.get("Location"), headers, body, status

    def create_userinfo_response(self, request: HttpRequest) -> Response:
        uri, http_method, body, headers = self._extract_params(request)
        headers[LOADED_TOKENS] = LoadedTokens.of(request)
        try:
            headers, body, status = self.server.create_userinfo_response(uri, http_method, body, headers)
        except oauth2.OAuth2Error as exc:
            return None, exc.headers, exc.json, exc.status_code
        return headers.get("Location"), headers, body, status

    def verify_request(self, request: HttpRequest, scopes: list[str]) -> tuple[bool, OAuthlibRequest]:
        """Check the bearer token of a protected resource request (``validate_bearer_token``)."""
        uri, http_method, body, headers = self._extract_params(request)
        headers[LOADED_TOKENS] = LoadedTokens.of(request)
        return self.server.verify_request(
            request.build_absolute_uri(uri), http_method, body, headers, scopes=scopes
        )

    def authenticate_client(self, request: HttpRequest) -> bool:
        uri, http_method, body, headers = self._extract_params(request)
        oauthlib_request = OAuthlibRequest(uri, http_method, body, headers)
        return self.server.request_validator.authenticate_client(oauthlib_request)


def get_oauthlib_core() -> OAuthLibCore:
    """An ``OAUTH2_BACKEND_CLASS`` over a fresh server of the configured classes."""
    server = oauth2_settings.OAUTH2_SERVER_CLASS(
        oauth2_settings.OAUTH2_VALIDATOR_CLASS(), **oauth2_settings.server_kwargs
    )
    return oauth2_settings.OAUTH2_BACKEND_CLASS(server)
