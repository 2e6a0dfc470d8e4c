"""Decorators letting function views be reached with a bearer token of this provider."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from .backends import authenticate_by_bearer_token
from .http import csrf_failure_response, refused_resource_response
from .oauth2_backends import OAuthLibCore
from .scopes import get_scopes_backend
from .settings import oauth2_settings

ViewFunc = Callable[..., HttpResponse]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


def accepts_bearer_token(view_func: ViewFunc) -> ViewFunc:
    """Let a view of a session also be reached with a bearer token of this provider.

    A request with a usable bearer token and no session user runs as the token's user
    (``request.user``; the token is ``request.access_token``). It needs no CSRF token: its
    credential is a header no other site can make a browser send. Every other request that is not
    a safe method, a session one above all, must pass Django's CSRF check as usual. Views that are
    not decorated never see a bearer token's user (the admin, the consent form, logout). For a
    class-based view: ``method_decorator(accepts_bearer_token, name="dispatch")``.
    """

    @wraps(view_func)
    def _view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not authenticate_by_bearer_token(request) and request.method not in SAFE_METHODS:
            refused = csrf_failure_response(request)
            if refused is not None:
                return refused
        return view_func(request, *args, **kwargs)

    # The check above replaces the middleware's; the bearer token middleware opts the view in.
    _view.csrf_exempt = True  # type: ignore[attr-defined]
    _view.accepts_bearer_token = True  # type: ignore[attr-defined]
    return _view


def _core(validator_cls: type | None, server_cls: type | None) -> OAuthLibCore:
    validator = (validator_cls or oauth2_settings.OAUTH2_VALIDATOR_CLASS)()
    server = (server_cls or oauth2_settings.OAUTH2_SERVER_CLASS)(validator, **oauth2_settings.server_kwargs)
    return oauth2_settings.OAUTH2_BACKEND_CLASS(server)


def _protect(
    view_func: ViewFunc, core: OAuthLibCore, scopes_for: Callable[[HttpRequest], list[str]]
) -> ViewFunc:
    @wraps(view_func)
    def _validate(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        scopes = scopes_for(request)
        valid, oauthlib_request = core.verify_request(request, scopes=scopes)
        if not valid:
            return refused_resource_response(getattr(oauthlib_request, "oauth2_error", None), scopes)
        request.resource_owner = oauthlib_request.user
        request.access_token = oauthlib_request.access_token
        return view_func(request, *args, **kwargs)

    # Every request must carry a bearer token, which no other site can make a browser send: no
    # cookie authenticates the view, so there is no cross-site request to forge.
    _validate.csrf_exempt = True  # type: ignore[attr-defined]
    _validate.accepts_bearer_token = True  # type: ignore[attr-defined]
    return _validate


def protected_resource(
    scopes: list[str] | None = None, validator_cls: type | None = None, server_cls: type | None = None
) -> Callable[[ViewFunc], ViewFunc]:
    """Let the view run only with a usable bearer token carrying ``scopes``.

    Failures follow RFC 6750: 401 with ``WWW-Authenticate`` for a missing or bad token, 403 for
    insufficient scope. The token's user is ``request.resource_owner``.
    """
    required = list(scopes or [])

    def decorator(view_func: ViewFunc) -> ViewFunc:
        return _protect(view_func, _core(validator_cls, server_cls), lambda request: required)

    return decorator


def rw_protected_resource(
    scopes: list[str] | None = None, validator_cls: type | None = None, server_cls: type | None = None
) -> Callable[[ViewFunc], ViewFunc]:
    """As :func:`protected_resource`, adding the read scope for safe methods, the write scope otherwise."""
    required = list(scopes or [])

    def scopes_for(request: HttpRequest) -> list[str]:
        if request.method.upper() in ("GET", "HEAD", "OPTIONS"):
            return [*required, oauth2_settings.READ_SCOPE]
        return [*required, oauth2_settings.WRITE_SCOPE]

    def decorator(view_func: ViewFunc) -> ViewFunc:
        available = get_scopes_backend().get_all_scopes()
        if not {oauth2_settings.READ_SCOPE, oauth2_settings.WRITE_SCOPE}.issubset(available):
            raise ImproperlyConfigured("rw_protected_resource needs the read and write scopes in SCOPES")
        return _protect(view_func, _core(validator_cls, server_cls), scopes_for)

    return decorator
