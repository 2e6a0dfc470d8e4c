"""OpenID Connect endpoints: discovery, the JSON Web Key Set and userinfo."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import View

from ..crypto import jwk_from_pem
from ..http import bearer_error_response, oidc_issuer
from ..models import AbstractApplication
from ..settings import oauth2_settings
from .logout import RPInitiatedLogoutView, _load_id_token, _validate_claims  # noqa: F401  (DOT imports them from here)
from .mixins import OIDCOnlyMixin, ScopedProtectedResourceMixin


def _endpoint(request: HttpRequest, name: str) -> str:
    """An endpoint's absolute URL: on the host of ``OIDC_ISS_ENDPOINT`` when set (as DOT), so a
    provider behind a proxy advertises its public URLs, else on the request's host."""
    path = reverse(f"oauth2_provider:{name}")
    issuer = oauth2_settings.OIDC_ISS_ENDPOINT
    if not issuer:
        return request.build_absolute_uri(path)
    parsed = urlsplit(issuer)
    return f"{parsed.scheme}://{parsed.netloc}{path}"


@method_decorator(login_not_required, name="dispatch")
class ConnectDiscoveryInfoView(OIDCOnlyMixin, View):
    """The OpenID Provider metadata (OpenID Connect Discovery 1.0, section 3)."""

    def get(self, request: HttpRequest, *args, **kwargs) -> JsonResponse:
        algorithms = [AbstractApplication.HS256_ALGORITHM]
        if oauth2_settings.OIDC_RSA_PRIVATE_KEY:
            algorithms.insert(0, AbstractApplication.RS256_ALGORITHM)
        validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
        scopes = oauth2_settings.SCOPES_BACKEND_CLASS().get_available_scopes(request=request)
        data = {
            "issuer": oidc_issuer(request),
            "authorization_endpoint": _endpoint(request, "authorize"),
            "token_endpoint": _endpoint(request, "token"),
            "userinfo_endpoint": oauth2_settings.OIDC_USERINFO_ENDPOINT or _endpoint(request, "user-info"),
            "jwks_uri": _endpoint(request, "jwks-info"),
            "revocation_endpoint": _endpoint(request, "revoke-token"),
            "introspection_endpoint": _endpoint(request, "introspect"),
            "scopes_supported": list(scopes),
            "response_types_supported": list(oauth2_settings.OIDC_RESPONSE_TYPES_SUPPORTED),
            "grant_types_supported": [
                "authorization_code",
                "client_credentials",
                "refresh_token",
                "password",
            ],
            "subject_types_supported": list(oauth2_settings.OIDC_SUBJECT_TYPES_SUPPORTED),
            "id_token_signing_alg_values_supported": algorithms,
            "token_endpoint_auth_methods_supported": list(
                oauth2_settings.OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED
            ),
            "code_challenge_methods_supported": list(oauth2_settings.PKCE_CODE_CHALLENGE_METHODS),
            "claims_supported": validator.get_discovery_claims(request),
            "prompt_values_supported": ["none", "login", "consent"]
            + (["create"] if oauth2_settings.OIDC_RP_INITIATED_REGISTRATION_ENABLED else []),
            "authorization_response_iss_parameter_supported": True,
        }
        if oauth2_settings.OIDC_RP_INITIATED_LOGOUT_ENABLED:
            data["end_session_endpoint"] = _endpoint(request, "rp-initiated-logout")
        response = JsonResponse(data)
        response["Access-Control-Allow-Origin"] = "*"
        return response


@method_decorator(login_not_required, name="dispatch")
class JwksInfoView(OIDCOnlyMixin, View):
    """The public keys that verify RS256 ID tokens, the active key first, then retired ones."""

    def get(self, request: HttpRequest, *args, **kwargs) -> JsonResponse:
        keys = []
        if oauth2_settings.OIDC_RSA_PRIVATE_KEY:
            for pem in [
                oauth2_settings.OIDC_RSA_PRIVATE_KEY,
                *oauth2_settings.OIDC_RSA_PRIVATE_KEYS_INACTIVE,
            ]:
                key = jwk_from_pem(pem)
                keys.append(
                    {"alg": "RS256", "use": "sig", "kid": key.thumbprint(), **json.loads(key.export_public())}
                )
        response = JsonResponse({"keys": keys})
        max_age = oauth2_settings.OIDC_JWKS_MAX_AGE_SECONDS
        response["Access-Control-Allow-Origin"] = "*"
        response["Cache-Control"] = (
            f"public, max-age={max_age}, stale-while-revalidate={max_age}, stale-if-error={max_age}"
        )
        return response


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class UserInfoView(OIDCOnlyMixin, ScopedProtectedResourceMixin, View):
    """Claims about the user of a bearer token with the ``openid`` scope (OIDC Core 5.3).

    The bearer check runs first, so that a live token without ``openid`` gets 403
    ``insufficient_scope`` (RFC 6750 3.1) where oauthlib answers 401 ``invalid_token``.
    """

    required_scopes = ["openid"]

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return self._userinfo(request)

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return self._userinfo(request)

    def unauthenticated_response(self, request: HttpRequest, oauthlib_request=None) -> HttpResponse:
        """Always RFC 6750's answer (OIDC Core 5.3.3), as django-oauth-toolkit: 401 without a usable
        token, 403 ``insufficient_scope`` for a token without ``openid``; never cached."""
        response = bearer_error_response(getattr(oauthlib_request, "oauth2_error", None), self.get_scopes())
        response["Cache-Control"] = "no-store"
        return response

    def _userinfo(self, request: HttpRequest) -> HttpResponse:
        _url, headers, body, status = self.create_userinfo_response(request)
        response = HttpResponse(content=body or "", status=status)
        for key, value in headers.items():
            response[key] = value
        if status == 200:
            response["Content-Type"] = "application/json"
        # Personal data: no shared or browser cache may keep it.
        response["Cache-Control"] = "no-store"
        return response
