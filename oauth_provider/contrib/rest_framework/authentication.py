"""REST framework authentication by this provider's bearer tokens."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import SuspiciousOperation
from rest_framework.authentication import BaseAuthentication

from ...oauth2_backends import get_oauthlib_core


class OAuth2Authentication(BaseAuthentication):
    """Authenticates a request by its ``Authorization: Bearer`` token: ``(user, access_token)``.

    The token is checked by the provider's validator, as for every protected resource (expiry,
    revocation, inactive user or application). A request without a usable token is left
    unauthenticated (None), so other authentication classes may still run; the reason is kept in
    ``request.oauth2_error`` for the ``WWW-Authenticate`` challenge.
    """

    www_authenticate_realm = "api"

    def authenticate(self, request) -> tuple[Any, Any] | None:
        if request is None:
            return None
        try:
            valid, oauthlib_request = get_oauthlib_core().verify_request(request, scopes=[])
        except ValueError as error:
            # oauthlib refuses a malformed query string with a ValueError: a client error.
            raise SuspiciousOperation(str(error)) from error
        if valid:
            return oauthlib_request.user, oauthlib_request.access_token
        request.oauth2_error = getattr(oauthlib_request, "oauth2_error", {}) or {}
        return None

    def authenticate_header(self, request) -> str:
        attributes = {"realm": self.www_authenticate_realm, **getattr(request, "oauth2_error", {})}
        return "Bearer " + ",".join(f'{key}="{value}"' for key, value in attributes.items())
