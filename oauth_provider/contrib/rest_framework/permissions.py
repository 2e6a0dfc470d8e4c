"""REST framework permissions on the scopes of the request's access token."""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated

from ...settings import oauth2_settings
from .authentication import OAuth2Authentication

log = logging.getLogger(__name__)


def _is_access_token(token) -> bool:
    if token is not None and hasattr(token, "scope"):
        return True
    if token:
        log.warning("Token permissions need OAuth2Authentication among the authentication classes.")
    return False


def _read_or_write_scope(request) -> str:
    return (
        oauth2_settings.READ_SCOPE if request.method.upper() in SAFE_METHODS else oauth2_settings.WRITE_SCOPE
    )


class TokenHasScope(BasePermission):
    """The request's access token is valid and carries the view's ``required_scopes``."""

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not _is_access_token(token):
            return False
        required_scopes = self.get_scopes(request, view)
        if token.is_valid(required_scopes):
            return True
        if (
            oauth2_settings.ERROR_RESPONSE_WITH_SCOPES
            and required_scopes
            and not token.is_expired()
            and not token.allow_scopes(required_scopes)
        ):
            self.message = {
                "detail": PermissionDenied.default_detail,
                "required_scopes": list(required_scopes),
            }
        return False

    def get_scopes(self, request, view) -> list[str]:
        try:
            return list(view.required_scopes)
        except AttributeError as error:
            raise ImproperlyConfigured(
                "TokenHasScope requires the view to define the required_scopes attribute"
            ) from error


class TokenHasReadWriteScope(TokenHasScope):
    """``required_scopes`` (if any) plus the read scope for safe methods, the write scope otherwise."""

    def get_scopes(self, request, view) -> list[str]:
        try:
            required_scopes = super().get_scopes(request, view)
        except ImproperlyConfigured:
            required_scopes = []
        return [*required_scopes, _read_or_write_scope(request)]


class TokenHasResourceScope(TokenHasScope):
    """Each of ``required_scopes`` as ``<scope>:read`` for safe methods, ``<scope>:write`` otherwise."""

    def get_scopes(self, request, view) -> list[str]:
        try:
            view_scopes = super().get_scopes(request, view)
        except ImproperlyConfigured:
            view_scopes = []
        return [f"{scope}:{_read_or_write_scope(request)}" for scope in view_scopes]


class IsAuthenticatedOrTokenHasScope(BasePermission):
    """A user authenticated otherwise than by a token, or a token with ``required_scopes``."""

    def has_permission(self, request, view) -> bool:
        is_authenticated = IsAuthenticated().has_permission(request, view)
        by_token = is_authenticated and isinstance(request.successful_authenticator, OAuth2Authentication)
        return (is_authenticated and not by_token) or TokenHasScope().has_permission(request, view)


class TokenMatchesOASRequirements(BasePermission):
    """OpenAPI's alternative security requirements: per method, any one list of scopes suffices.

    ``required_alternate_scopes = {"GET": [["read"]], "POST": [["create", "write"], ["admin"]]}``;
    a method not listed is refused.
    """

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not _is_access_token(token):
            return False
        alternatives = self.get_required_alternate_scopes(request, view)
        method = request.method.upper()
        if method not in alternatives:
            log.warning("no scope alternates defined for method %s", method)
            return False
        return any(token.is_valid(scopes) for scopes in alternatives[method])

    def get_required_alternate_scopes(self, request, view) -> dict:
        try:
            return view.required_alternate_scopes
        except AttributeError as error:
            raise ImproperlyConfigured(
                "TokenMatchesOASRequirements requires the view to define "
                "the required_alternate_scopes attribute"
            ) from error
