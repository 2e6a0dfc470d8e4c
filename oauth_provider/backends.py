"""An authentication backend that accepts this provider's bearer tokens."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, get_user_model
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest

from .oauth2_backends import OAuthLibCore, get_oauthlib_core


def bearer_token_from_header(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None.

    The scheme matches without regard to case (RFC 7235) and exactly ("BearerX" is not it);
    whitespace around the parts is tolerated, but a token is one ``token68`` value (RFC 6750
    2.1), so a value with more than one part after the scheme is malformed.
    """
    if not value:
        return None
    parts = value.split(maxsplit=2)  # a third part is enough to refuse; no more work on long junk
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def authenticate_by_bearer_token(request: HttpRequest) -> bool:
    """Authenticate ``request`` by its bearer token, unless a session user is signed in.

    True when the token authenticated the request: ``request.user`` is then the token's user and
    ``request.access_token`` the token. A session user is kept as is, whatever header the request
    carries, so a request authenticated by session stays one (and keeps its CSRF check). The answer
    is kept on the request: the middleware and a view's decorator check the token once.

    Call it only for views that accept bearer tokens (see ``accepts_bearer_token``): the admin and
    the provider's own pages never do.
    """
    known = getattr(request, "_authenticated_by_bearer_token", None)
    if known is not None:
        return known
    by_token = False
    if bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION", "")):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            user = authenticate(request=request)
            if user is not None:
                request.user = request._cached_user = user
                by_token = True
    request._authenticated_by_bearer_token = by_token
    return by_token


class OAuth2Backend:
    """``authenticate(request)`` with a usable bearer token returns the token's user.

    Only bearer requests are considered (other credentials belong to other backends). The token
    is also put on ``request.access_token`` so views can look at its scopes. Client credentials
    tokens have no user and so authenticate nobody.
    """

    _core: OAuthLibCore | None = None

    @classmethod
    def core(cls) -> OAuthLibCore:
        if cls._core is None:
            cls._core = get_oauthlib_core()
        return cls._core

    def authenticate(self, request: HttpRequest | None = None, **credentials: Any):
        if request is None or credentials:
            return None
        if not bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION", "")):
            return None
        try:
            valid, oauthlib_request = self.core().verify_request(request, scopes=[])
        except ValueError as error:
            raise SuspiciousOperation(str(error)) from error
        if not valid or oauthlib_request.user is None:
            return None
        request.access_token = oauthlib_request.access_token
        return oauthlib_request.user

    def get_user(self, user_id: Any):
        """The active user with this id: an inactive user's session is not restored (as ModelBackend)."""
        user_model = get_user_model()
        user = user_model._default_manager.filter(pk=user_id).first()
        return user if user is not None and getattr(user, "is_active", True) else None
