"""Middleware authenticating the project's own views with this provider's bearer tokens."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from .backends import bearer_token_from_header


class OAuth2TokenMiddleware:
    """Sets ``request.user`` from an ``Authorization: Bearer`` token (via ``OAuth2Backend``).

    Put it after ``AuthenticationMiddleware``: a session user is kept as is. A request
    authenticated by its token carries no cookie a third-party site could ride on, so it is
    exempt from the CSRF check; a session request is not. ``Vary: Authorization`` is added so
    caches key responses by token.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION", "")):
            user = getattr(request, "user", None)
            if user is None or user.is_anonymous:
                user = authenticate(request=request)
                if user is not None:
                    request.user = request._cached_user = user
                    request._dont_enforce_csrf_checks = True
        response = self.get_response(request)
        patch_vary_headers(response, ("Authorization",))
        return response
