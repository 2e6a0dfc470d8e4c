"""django-oauth-toolkit's extension hooks, as projects override them."""

from __future__ import annotations

import pytest
import requests
from django.urls import include, path
from requests.auth import HTTPBasicAuth

from oauth_provider import admin as provider_admin
from oauth_provider.oauth2_backends import OAuthLibCore
from oauth_provider.oauth2_validators import OAuth2Validator
from oauth_provider.views import TokenView

from .test_endpoints_support import make_client


class TenantBackend(OAuthLibCore):
    def _get_extra_credentials(self, request):
        return {"tenant": request.headers.get("X-Tenant", "none")}


class NoClientCredentialsValidator(OAuth2Validator):
    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs):
        return grant_type != "client_credentials" and super().validate_grant_type(
            client_id, grant_type, client, request, *args, **kwargs
        )


class TenantTokenView(TokenView):
    @classmethod
    def get_oauthlib_backend_class(cls):
        return TenantBackend


class StrictTokenView(TokenView):
    @classmethod
    def get_validator_class(cls):
        return NoClientCredentialsValidator


urlpatterns = [
    path("o/", include("oauth_provider.urls")),
    path("tenant/token/", TenantTokenView.as_view()),
    path("strict/token/", StrictTokenView.as_view()),
]


@pytest.fixture
def base_url(live_server, transactional_db, settings) -> str:
    settings.ROOT_URLCONF = __name__
    return live_server.url


def client_credentials(base_url: str, url: str, **kwargs) -> requests.Response:
    client = make_client(authorization_grant_type="client-credentials")
    return requests.post(
        f"{base_url}{url}",
        data={"grant_type": "client_credentials"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
        **kwargs,
    )


def test_extra_credentials_of_the_backend_class_reach_the_token_response(base_url):
    response = client_credentials(base_url, "/tenant/token/", headers={"X-Tenant": "acme"})
    assert response.status_code == 200, response.text
    assert response.json()["tenant"] == "acme"
    assert "tenant" not in client_credentials(base_url, "/o/token/").json()


def test_the_validator_class_of_the_view_decides(base_url):
    response = client_credentials(base_url, "/strict/token/")
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    assert client_credentials(base_url, "/o/token/").status_code == 200


def test_admin_class_helpers_name_the_configured_classes(settings):
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "APPLICATION_ADMIN_CLASS": f"{__name__}.ProjectApplicationAdmin",
    }
    assert provider_admin.get_application_admin_class() is ProjectApplicationAdmin
    assert provider_admin.get_access_token_admin_class() is provider_admin.AccessTokenAdmin
    assert provider_admin.get_refresh_token_admin_class() is provider_admin.RefreshTokenAdmin
    assert provider_admin.get_grant_admin_class() is provider_admin.GrantAdmin
    assert provider_admin.get_id_token_admin_class() is provider_admin.IDTokenAdmin


class ProjectApplicationAdmin(provider_admin.ApplicationAdmin):
    pass
