"""View mixins: access to the oauthlib core, and bearer token protection for resource views."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt

from ..exceptions import FatalClientError, OAuthToolkitError
from ..http import CLIENT_CHALLENGE, refused_resource_response
from ..oauth2_backends import OAuthLibCore
from ..ratelimit import RateLimited
from ..scopes import get_scopes_backend
from ..settings import oauth2_settings
from ..watermark_cache import request_scope

SAFE_HTTP_METHODS = ("GET", "HEAD", "OPTIONS")

log = logging.getLogger(__name__)


def answer_rate_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Turn :class:`~oauth_provider.ratelimit.RateLimited` from client authentication into a 429.

    The request runs in a :func:`~oauth_provider.watermark_cache.request_scope`: the revocation
    watermarks' generation is read once, in the same cache command as the rate-limit counters when
    both live in the same cache.
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            with request_scope():
                return view(request, *args, **kwargs)
        except RateLimited as limited:
            return limited.response()

    return wrapped


class OAuthLibMixin:
    """Gives a view the configured oauthlib core (server, validator and backend classes).

    ``server_class``, ``validator_class`` and ``oauthlib_backend_class`` override the settings
    for one view. The core is built once per view class unless ``ALWAYS_RELOAD_OAUTHLIB_CORE``.
    """

    server_class: type | None = None
    validator_class: type | None = None
    oauthlib_backend_class: type | None = None

    @classmethod
    def get_server_class(cls) -> type:
        return cls.server_class or oauth2_settings.OAUTH2_SERVER_CLASS

    @classmethod
    def get_validator_class(cls) -> type:
        return cls.validator_class or oauth2_settings.OAUTH2_VALIDATOR_CLASS

    @classmethod
    def get_oauthlib_backend_class(cls) -> type:
        return cls.oauthlib_backend_class or oauth2_settings.OAUTH2_BACKEND_CLASS

    @classmethod
    def get_server(cls) -> Any:
        return cls.get_server_class()(cls.get_validator_class()(), **oauth2_settings.server_kwargs)

    @classmethod
    def get_oauthlib_core(cls) -> OAuthLibCore:
        if "_oauthlib_core" not in cls.__dict__ or oauth2_settings.ALWAYS_RELOAD_OAUTHLIB_CORE:
            cls._oauthlib_core = cls.get_oauthlib_backend_class()(cls.get_server())
        return cls._oauthlib_core

    def validate_authorization_request(self, request: HttpRequest):
        return self.get_oauthlib_core().validate_authorization_request(request)

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict, allow: bool
    ):
        scope_list = scopes.split() if scopes else []
        return self.get_oauthlib_core().create_authorization_response(request, scope_list, credentials, allow)

    def create_token_response(self, request: HttpRequest):
        return self.get_oauthlib_core().create_token_response(request)

    def create_revocation_response(self, request: HttpRequest):
        return self.get_oauthlib_core().create_revocation_response(request)

    def create_userinfo_response(self, request: HttpRequest):
        return self.get_oauthlib_core().create_userinfo_response(request)

    def authenticate_client(self, request: HttpRequest) -> bool:
        return self.get_oauthlib_core().authenticate_client(request)

    def get_scopes(self) -> list[str]:
        """Scopes a protected resource requires; none by default."""
        return []

    def verify_request(self, request: HttpRequest):
        try:
            return self.get_oauthlib_core().verify_request(request, scopes=self.get_scopes())
        except ValueError as error:
            # oauthlib refuses malformed query strings with a ValueError: a client error, not a 500.
            raise SuspiciousOperation(str(error)) from error

    def unauthenticated_response(self, request: HttpRequest, oauthlib_request=None) -> HttpResponse:
        """The answer to a protected resource request that fails authentication (DOT's hook).

        A bare 403 as django-oauth-toolkit; RFC 6750's 401/403 with a ``WWW-Authenticate``
        challenge when ``RESOURCE_SERVER_BEARER_CHALLENGE`` is on.
        """
        return refused_resource_response(getattr(oauthlib_request, "oauth2_error", None), self.get_scopes())

    def error_response(self, error: OAuthToolkitError, **kwargs) -> tuple[bool, dict[str, Any]]:
        """Whether to redirect the error to the client, and the error and redirect URL."""
        oauthlib_error = error.oauthlib_error
        redirect_uri = oauthlib_error.redirect_uri or ""
        separator = "&" if "?" in redirect_uri else "?"
        response = {"error": oauthlib_error, "url": redirect_uri + separator + oauthlib_error.urlencoded}
        response.update(kwargs)
        return not isinstance(error, FatalClientError), response


class ScopedResourceMixin:
    """A resource that needs ``required_scopes`` (or what ``get_scopes()`` returns)."""

    required_scopes: list[str] | None = None

    def get_scopes(self, *args, **kwargs) -> list[str]:
        if self.required_scopes is None:
            raise ImproperlyConfigured(
                "ScopedResourceMixin requires either 'required_scopes' or an implementation of 'get_scopes()'"
            )
        return list(self.required_scopes)


class OwnCredentialsMixin:
    """A view every request of which must carry credentials of its own (a bearer token, or a
    client's id and secret), never a cookie: it is exempt from CSRF, since no cross-site request
    can be made with credentials the browser does not hold.
    """

    @classmethod
    def as_view(cls, **initkwargs):
        return csrf_exempt(super().as_view(**initkwargs))


class ProtectedResourceMixin(OwnCredentialsMixin, OAuthLibMixin):
    """Refuses a request without a usable bearer token (RFC 6750), before the view runs.

    On success ``request.resource_owner`` is the token's user (None for client credentials) and
    ``request.access_token`` the token; with ``OAuth2TokenMiddleware`` the token's user is also
    ``request.user``.
    """

    accepts_bearer_token = True

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method.upper() == "OPTIONS":
            return super().dispatch(request, *args, **kwargs)
        with request_scope():  # the token and any the view checks: one read of the generation
            valid, oauthlib_request = self.verify_request(request)
            if not valid:
                return self.unauthenticated_response(request, oauthlib_request)
            request.resource_owner = oauthlib_request.user
            request.access_token = oauthlib_request.access_token
            return super().dispatch(request, *args, **kwargs)


class ScopedProtectedResourceMixin(ScopedResourceMixin, ProtectedResourceMixin):
    """A protected resource needing the scopes in ``required_scopes``."""


class ReadWriteScopedResourceMixin(ScopedResourceMixin, OAuthLibMixin):
    """Needs ``READ_SCOPE`` for safe methods and ``WRITE_SCOPE`` otherwise, plus ``required_scopes``."""

    required_scopes: list[str] | None = []

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        available = get_scopes_backend().get_all_scopes()
        needed = {oauth2_settings.READ_SCOPE, oauth2_settings.WRITE_SCOPE}
        if not needed.issubset(available):
            raise ImproperlyConfigured(
                f"ReadWriteScopedResourceMixin needs the scopes {sorted(needed)} in OAUTH2_PROVIDER['SCOPES']"
            )
        self.read_write_scope = (
            oauth2_settings.READ_SCOPE
            if request.method.upper() in SAFE_HTTP_METHODS
            else oauth2_settings.WRITE_SCOPE
        )
        return super().dispatch(request, *args, **kwargs)

    def get_scopes(self, *args, **kwargs) -> list[str]:
        return [*super().get_scopes(*args, **kwargs), self.read_write_scope]


@method_decorator(answer_rate_limited, name="dispatch")
class ClientProtectedResourceMixin(OwnCredentialsMixin, OAuthLibMixin):
    """A resource for authenticated clients (client id and secret, Basic or body), not users."""

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method.upper() == "OPTIONS":
            return super().dispatch(request, *args, **kwargs)
        if not self.authenticate_client(request):
            if not oauth2_settings.RESOURCE_SERVER_BEARER_CHALLENGE:
                return self.unauthenticated_response(request)
            response = JsonResponse(
                {"error": "invalid_client", "error_description": "Client authentication failed."}, status=401
            )
            response["WWW-Authenticate"] = CLIENT_CHALLENGE
            return response
        return super().dispatch(request, *args, **kwargs)


@method_decorator(answer_rate_limited, name="dispatch")
class ClientProtectedScopedResourceMixin(ScopedProtectedResourceMixin):
    """Either an authenticated client, or a bearer token with ``required_scopes``."""

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method.upper() == "OPTIONS":
            return super().dispatch(request, *args, **kwargs)
        auth = request.META.get("HTTP_AUTHORIZATION", "")
        if not auth.lower().startswith("bearer ") and self.authenticate_client(request):
            # Skip the bearer check of ProtectedResourceMixin.
            return super(ProtectedResourceMixin, self).dispatch(request, *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)


class OIDCOnlyMixin:
    """404 (logged as a warning) unless ``OIDC_ENABLED``: the endpoints do not exist for a plain
    OAuth2 provider.

    With ``DEBUG`` on it raises ``ImproperlyConfigured`` instead, as django-oauth-toolkit, so the
    missing setting is found at once during development.
    """

    debug_error_message = (
        "The OIDC views are not enabled unless OIDC_ENABLED is set in the OAUTH2_PROVIDER settings"
    )

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not oauth2_settings.OIDC_ENABLED:
            if settings.DEBUG:
                raise ImproperlyConfigured(self.debug_error_message)
            log.warning(self.debug_error_message)
            return HttpResponseNotFound()
        return super().dispatch(request, *args, **kwargs)


class OIDCLogoutOnlyMixin(OIDCOnlyMixin):
    """As ``OIDCOnlyMixin``, for RP-initiated logout: also needs ``OIDC_RP_INITIATED_LOGOUT_ENABLED``."""

    debug_error_message = (
        "The OpenID Connect RP-initiated logout view is not enabled unless "
        "OIDC_RP_INITIATED_LOGOUT_ENABLED is set in the OAUTH2_PROVIDER settings"
    )

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not oauth2_settings.OIDC_RP_INITIATED_LOGOUT_ENABLED:
            if settings.DEBUG:
                raise ImproperlyConfigured(self.debug_error_message)
            log.warning(self.debug_error_message)
            return HttpResponseNotFound()
        return super().dispatch(request, *args, **kwargs)
