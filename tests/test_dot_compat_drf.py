"""REST framework views protected by ``oauth_provider.contrib.rest_framework``, over real HTTP.

The classes keep django-oauth-toolkit's names and behaviour: OAuth2Authentication authenticates by
bearer token (and leaves other authenticators a chance), the permissions check the token's scopes.
"""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth import get_user_model
from django.urls import include, path
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from oauth_provider.contrib.rest_framework import (
    IsAuthenticatedOrTokenHasScope,
    OAuth2Authentication,
    TokenHasReadWriteScope,
    TokenHasResourceScope,
    TokenHasScope,
    TokenMatchesOASRequirements,
)

from .factories import make_access_token, make_application


class ScopedView(APIView):
    authentication_classes = [OAuth2Authentication]
    permission_classes = [TokenHasScope]
    required_scopes = ["scope1"]

    def get(self, request):
        return Response({"user": request.user.get_username(), "scope": request.auth.scope})


class ReadWriteView(APIView):
    authentication_classes = [OAuth2Authentication]
    permission_classes = [TokenHasReadWriteScope]

    def get(self, request):
        return Response({"read": True})

    def post(self, request):
        return Response({"written": True})


class ResourceView(APIView):
    authentication_classes = [OAuth2Authentication]
    permission_classes = [TokenHasResourceScope]
    required_scopes = ["resource1"]

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True})


class EitherView(APIView):
    authentication_classes = [OAuth2Authentication, SessionAuthentication]
    permission_classes = [IsAuthenticatedOrTokenHasScope]
    required_scopes = ["scope1"]

    def get(self, request):
        return Response({"user": request.user.get_username()})


class OpenAPIView(APIView):
    authentication_classes = [OAuth2Authentication]
    permission_classes = [TokenMatchesOASRequirements]
    required_alternate_scopes = {"GET": [["read"]], "POST": [["create", "write"], ["admin"]]}

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True})

    def put(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("o/", include("oauth_provider.urls")),
    path("drf/scoped/", ScopedView.as_view()),
    path("drf/rw/", ReadWriteView.as_view()),
    path("drf/resource/", ResourceView.as_view()),
    path("drf/either/", EitherView.as_view()),
    path("drf/oas/", OpenAPIView.as_view()),
]


@pytest.fixture
def base_url(live_server, transactional_db, settings) -> str:
    settings.ROOT_URLCONF = __name__
    return live_server.url


@pytest.fixture
def user():
    return get_user_model().objects.create_user("drf-user", password="pw-12345!")


def bearer(token) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.token}"}


def token_with(user, scope: str, **extra):
    return make_access_token(make_application(user=user), user, scope=scope, **extra)


def test_a_token_with_the_scope_reaches_the_view_as_its_user(base_url, user):
    response = requests.get(f"{base_url}/drf/scoped/", headers=bearer(token_with(user, "scope1 other")))
    assert response.status_code == 200
    assert response.json() == {"user": "drf-user", "scope": "scope1 other"}


def test_a_token_without_the_scope_is_forbidden(base_url, user):
    response = requests.get(f"{base_url}/drf/scoped/", headers=bearer(token_with(user, "other")))
    assert response.status_code == 403


def test_no_token_is_401_with_a_bearer_challenge(base_url):
    response = requests.get(f"{base_url}/drf/scoped/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_an_unknown_or_expired_token_is_401_naming_invalid_token(base_url, user):
    expired = token_with(user, "scope1", expires_in=-10)
    for headers in ({"Authorization": "Bearer not-a-token"}, bearer(expired)):
        response = requests.get(f"{base_url}/drf/scoped/", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="api",error="invalid_token"')


def test_with_error_response_with_scopes_the_403_lists_the_required_scopes(base_url, user, settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ERROR_RESPONSE_WITH_SCOPES": True}
    response = requests.get(f"{base_url}/drf/scoped/", headers=bearer(token_with(user, "other")))
    assert response.status_code == 403
    assert response.json()["required_scopes"] == ["scope1"]


def test_read_write_scope_follows_the_method(base_url, user):
    read_only = bearer(token_with(user, "read"))
    assert requests.get(f"{base_url}/drf/rw/", headers=read_only).status_code == 200
    assert requests.post(f"{base_url}/drf/rw/", headers=read_only).status_code == 403
    write = bearer(token_with(user, "write"))
    assert requests.post(f"{base_url}/drf/rw/", headers=write).status_code == 200


def test_resource_scope_is_the_resource_with_read_or_write(base_url, user):
    read = bearer(token_with(user, "resource1:read"))
    assert requests.get(f"{base_url}/drf/resource/", headers=read).status_code == 200
    assert requests.post(f"{base_url}/drf/resource/", headers=read).status_code == 403
    write = bearer(token_with(user, "resource1:write"))
    assert requests.post(f"{base_url}/drf/resource/", headers=write).status_code == 200


def test_is_authenticated_or_token_has_scope(base_url, user):
    assert (
        requests.get(f"{base_url}/drf/either/", headers=bearer(token_with(user, "scope1"))).status_code == 200
    )
    assert (
        requests.get(f"{base_url}/drf/either/", headers=bearer(token_with(user, "other"))).status_code == 403
    )
    assert requests.get(f"{base_url}/drf/either/").status_code in (401, 403)


def test_openapi_alternatives_any_one_list_suffices_and_unlisted_methods_are_refused(base_url, user):
    admin = bearer(token_with(user, "admin"))
    assert requests.post(f"{base_url}/drf/oas/", headers=admin).status_code == 200
    assert requests.get(f"{base_url}/drf/oas/", headers=admin).status_code == 403
    both = bearer(token_with(user, "create write read"))
    assert requests.post(f"{base_url}/drf/oas/", headers=both).status_code == 200
    assert requests.get(f"{base_url}/drf/oas/", headers=both).status_code == 200
    assert requests.put(f"{base_url}/drf/oas/", headers=both).status_code == 403
    only_create = bearer(token_with(user, "create"))
    assert requests.post(f"{base_url}/drf/oas/", headers=only_create).status_code == 403


def test_a_revoked_application_token_is_not_accepted(base_url, user):
    token = token_with(user, "scope1")
    token.revoke()
    assert requests.get(f"{base_url}/drf/scoped/", headers=bearer(token)).status_code == 401
