"""Middleware authenticating, by this provider's bearer tokens, the views that accept them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from .backends import authenticate_by_bearer_token, bearer_token_from_header
from .models import get_access_token_model
from .tokens import is_token_usable
from .watermark_cache import request_scope


def view_accepts_bearer_token(view_func: Callable) -> bool:
    """Whether a view opted in to bearer authentication.

    A function view opts in with ``@accepts_bearer_token`` (or is a ``protected_resource``); a
    class-based view with ``method_decorator(accepts_bearer_token, name="dispatch")``, or by
    being a ``ProtectedResourceView`` (its class sets ``accepts_bearer_token = True``).
    """
    if getattr(view_func, "accepts_bearer_token", False):
        return True
    return bool(getattr(getattr(view_func, "view_class", None), "accepts_bearer_token", False))


class OAuth2TokenMiddleware:
    """Sets ``request.user`` from an ``Authorization: Bearer`` token, for views that accept one.

    django-oauth-toolkit's middleware of the same name authenticates every view by the token,
    the Django admin included. Here only the views that opt in are (see
    :func:`view_accepts_bearer_token`): the admin, the consent form, logout and every other page
    of a session keep their session user, and an ``Authorization`` header cannot stand in for
    it. A session user is kept as is (put the middleware after ``AuthenticationMiddleware``).
    The CSRF check is never touched here: a view that accepts bearer tokens decides (see
    ``accepts_bearer_token``). ``Vary: Authorization`` is added so caches key responses by token.
    The token checked here and those the view checks read the revocation watermarks' generation
    once (:func:`~oauth_provider.watermark_cache.request_scope`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with request_scope():
            response = self.get_response(request)
        patch_vary_headers(response, ("Authorization",))
        return response

    def process_view(
        self, request: HttpRequest, view_func: Callable, view_args: Any, view_kwargs: Any
    ) -> None:
        if view_accepts_bearer_token(view_func):
            authenticate_by_bearer_token(request)


class OAuth2ExtraTokenMiddleware:
    """Sets ``request.access_token`` from a usable ``Authorization: Bearer`` token (DOT's middleware).

    It authenticates nobody: ``request.user`` is left as it is, so a view reads the token (its
    scopes, application, user) without being opened to bearer authentication. An unknown, expired
    or revoked token sets nothing.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
        if raw:
            access_token = get_access_token_model().lookup(raw)
            if access_token is not None and is_token_usable(access_token, request=request):
                request.access_token = access_token
        response = self.get_response(request)
        if response is not None:  # a bare get_response (as in DOT's tests) may answer nothing
            patch_vary_headers(response, ("Authorization",))
        return response
