"""Token introspection (RFC 7662)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View

from .. import tokens
from ..models import get_access_token_model, get_refresh_token_model
from ..oauth2_validators import expiry_timestamp
from .mixins import ClientProtectedScopedResourceMixin


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class IntrospectTokenView(ClientProtectedScopedResourceMixin, View):
    """Tells a resource server whether a token is active, and what it grants.

    The caller authenticates with client credentials (Basic or body) or with a bearer token that
    has the ``introspection`` scope. A token that is unknown, expired, revoked or otherwise
    unusable is ``{"active": false}`` and nothing more (RFC 7662 2.2).
    """

    required_scopes = ["introspection"]

    @staticmethod
    def access_token_info(access_token) -> dict[str, Any]:
        info: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "scope": access_token.scope,
            "exp": expiry_timestamp(access_token.expires),
            "iat": expiry_timestamp(access_token.created),
        }
        if access_token.application is not None:
            info["client_id"] = access_token.application.client_id
        if access_token.user is not None:
            info["username"] = access_token.user.get_username()
            info["sub"] = str(access_token.user.pk)
        return info

    @classmethod
    def token_info(cls, raw: str | None, hint: str | None = None) -> dict[str, Any]:
        if not raw:
            return {"active": False}
        lookups = [cls._access_token_info, cls._refresh_token_info]
        if hint == "refresh_token":
            lookups.reverse()
        for lookup in lookups:
            found, info = lookup(raw)
            if found:
                return info
        return {"active": False}

    @classmethod
    def _access_token_info(cls, raw: str) -> tuple[bool, dict[str, Any]]:
        access_token = get_access_token_model().lookup(raw)
        if access_token is None:
            return False, {}
        if not tokens.is_token_usable(access_token):
            return True, {"active": False}
        return True, cls.access_token_info(access_token)

    @classmethod
    def _refresh_token_info(cls, raw: str) -> tuple[bool, dict[str, Any]]:
        refresh_token = get_refresh_token_model().lookup(raw)
        if refresh_token is None:
            return False, {}
        if not tokens.is_refresh_token_usable(refresh_token):
            return True, {"active": False}
        info = {
            "active": True,
            "token_type": "refresh_token",
            "scope": refresh_token.access_token.scope,
            "client_id": refresh_token.application.client_id,
            "username": refresh_token.user.get_username(),
            "sub": str(refresh_token.user_id),
            "iat": expiry_timestamp(refresh_token.created),
        }
        deadline = tokens.refresh_token_deadline(refresh_token)
        if deadline is not None:
            info["exp"] = expiry_timestamp(deadline)
        return True, info

    def respond(self, raw: str | None, hint: str | None) -> JsonResponse:
        if raw is None:
            # RFC 7662 2.1: ``token`` is required; django-oauth-toolkit answers the same 400.
            response = JsonResponse(
                {"error": "invalid_request", "error_description": "Token parameter is missing."}, status=400
            )
        else:
            response = JsonResponse(self.token_info(raw, hint))
        response["Cache-Control"] = "no-store"
        return response

    def get(self, request: HttpRequest, *args, **kwargs) -> JsonResponse:
        return self.respond(request.GET.get("token"), request.GET.get("token_type_hint"))

    def post(self, request: HttpRequest, *args, **kwargs) -> JsonResponse:
        return self.respond(request.POST.get("token"), request.POST.get("token_type_hint"))
