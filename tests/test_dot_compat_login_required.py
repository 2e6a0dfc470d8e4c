"""With Django's LoginRequiredMiddleware installed, the endpoints still answer for themselves.

Every endpoint that authenticates by other means (client credentials, bearer tokens, none at all)
is marked ``login_not_required``, as in django-oauth-toolkit; the authorization endpoint sends an
anonymous browser to log in itself and answers ``prompt=none`` with ``login_required``.
"""

from __future__ import annotations

import pytest
import requests
from pytest_django.live_server_helper import LiveServer
from requests.auth import HTTPBasicAuth

from .test_endpoints_support import (
    REDIRECT_URI,
    URLCONF,
    make_client,
    make_staff_user,
    pkce_pair,
    provider_settings,
    query_of,
)


@pytest.fixture(name="base_url")
def login_required_server(transactional_db, settings, monkeypatch):
    """A live server started after LoginRequiredMiddleware is added (a server reads MIDDLEWARE once)."""
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    )
    settings.MIDDLEWARE = middleware
    settings.ROOT_URLCONF = URLCONF
    provider_settings(settings, OIDC_RP_INITIATED_LOGOUT_ENABLED=True)
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    server = LiveServer("localhost")
    server._live_server_modified_settings.enable()
    yield server.url
    server._live_server_modified_settings.disable()
    server.stop()


def test_token_revoke_and_introspect_answer_without_a_login(base_url):
    client = make_client(authorization_grant_type="client-credentials")
    auth = HTTPBasicAuth(client.client_id, client.secret)

    token = requests.post(
        f"{base_url}/o/token/", data={"grant_type": "client_credentials"}, auth=auth, allow_redirects=False
    )
    assert token.status_code == 200, token.text
    access = token.json()["access_token"]

    introspection = requests.post(
        f"{base_url}/o/introspect/", data={"token": access}, auth=auth, allow_redirects=False
    )
    assert introspection.status_code == 200
    assert introspection.json()["active"] is True

    revoked = requests.post(
        f"{base_url}/o/revoke_token/", data={"token": access}, auth=auth, allow_redirects=False
    )
    assert revoked.status_code == 200


@pytest.mark.parametrize("path", ["/o/.well-known/openid-configuration", "/o/.well-known/jwks.json"])
def test_discovery_and_keys_answer_without_a_login(base_url, path):
    response = requests.get(f"{base_url}{path}", allow_redirects=False)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"


def test_userinfo_without_a_token_is_refused_by_the_endpoint_not_sent_to_login(base_url):
    response = requests.get(f"{base_url}/o/userinfo/", allow_redirects=False)
    assert response.status_code in (401, 403)
    assert "Location" not in response.headers


def test_logout_endpoint_answers_without_a_login(base_url):
    response = requests.get(f"{base_url}/o/logout/", allow_redirects=False)
    assert not (response.status_code == 302 and "login" in response.headers.get("Location", ""))


def test_prompt_none_without_a_session_answers_login_required_to_the_client(base_url):
    make_staff_user()
    client = make_client()
    _verifier, challenge = pkce_pair()
    params = {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "prompt": "none",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = requests.get(f"{base_url}/o/authorize/", params=params, allow_redirects=False)

    assert response.status_code == 302
    assert response.headers["Location"].startswith(REDIRECT_URI)
    assert query_of(response.headers["Location"]) == {
        "error": "login_required",
        "state": "xyz",
        "iss": f"{base_url}/o",
    }


def test_authorization_without_a_session_still_goes_to_the_login_page(base_url):
    client = make_client()
    _verifier, challenge = pkce_pair()
    params = {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = requests.get(f"{base_url}/o/authorize/", params=params, allow_redirects=False)

    assert response.status_code == 302
    assert "/login/" in response.headers["Location"]
    assert "next=" in response.headers["Location"]
