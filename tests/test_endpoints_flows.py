"""End-to-end OAuth2 flows against the provider over HTTP, driven by requests-oauthlib."""

from __future__ import annotations

import secrets

import pytest
import requests
from oauthlib.oauth2 import BackendApplicationClient, LegacyApplicationClient
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from oauth_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from .test_endpoints_support import (
    PASSWORD,
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    consent,
    make_client,
    make_staff_user,
    provider_settings,
    query_of,
)


def authorization_code_token(base_url: str, client, browser, pkce: str = "S256", scope=("read", "write")):
    if pkce == "S256":
        oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=list(scope), pkce="S256")
        url, state = oauth.authorization_url(f"{base_url}/o/authorize/")
        extra = {}
    else:
        # requests-oauthlib only sends S256 challenges; a plain challenge is the verifier itself.
        oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=list(scope))
        verifier = secrets.token_urlsafe(48)
        url, state = oauth.authorization_url(
            f"{base_url}/o/authorize/", code_challenge=verifier, code_challenge_method="plain"
        )
        extra = {"code_verifier": verifier}
    redirect = consent(browser, url)
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert location.startswith(REDIRECT_URI)
    assert query_of(location)["state"] == state
    token = oauth.fetch_token(
        f"{base_url}/o/token/", authorization_response=location, client_secret=client.secret, **extra
    )
    return oauth, token


@pytest.mark.parametrize("pkce", ["S256", "plain"])
def test_authorization_code_with_pkce_through_the_consent_form(base_url, settings, pkce):
    # plain is off by default (the S256-only default is tested in test_security_defaults).
    provider_settings(settings, PKCE_CODE_CHALLENGE_METHODS=["S256", "plain"])
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)

    oauth, token = authorization_code_token(base_url, client, browser, pkce=pkce)

    assert token["token_type"] == "Bearer"
    assert set(token["scope"]) == {"read", "write"}
    assert token["refresh_token"]
    stored = get_access_token_model().lookup(token["access_token"])
    assert stored.user == user and stored.application == client.application
    # The code was consumed: kept, marked, until it expires, so that a replay is recognised.
    assert get_grant_model().objects.get().consumed is not None
    # The token opens protected views: class-based, scoped, and the decorator.
    assert oauth.get(f"{base_url}/api/whoami/").json() == {"user": user.username}
    assert oauth.get(f"{base_url}/api/write/").json() == {"ok": True}
    assert oauth.get(f"{base_url}/api/read/").json() == {"scope": "read write"}
    # The middleware authenticates the project's own views by the token, without a session.
    assert oauth.get(f"{base_url}/api/me/").json() == {"user": user.username}


def test_denying_consent_redirects_access_denied(base_url):
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read"], pkce="S256")
    url, state = oauth.authorization_url(f"{base_url}/o/authorize/")

    redirect = consent(browser, url, allow=False)

    assert redirect.status_code == 302
    assert query_of(redirect.headers["Location"]) == {
        "error": "access_denied",
        "state": state,
        "iss": f"{base_url}/o",
    }
    assert get_grant_model().objects.count() == 0


def test_authorize_requires_login(base_url):
    client = make_client()
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read"], pkce="S256")
    url, _state = oauth.authorization_url(f"{base_url}/o/authorize/")

    response = requests.get(url, allow_redirects=False)

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/accounts/login/?next=")


def test_skip_authorization_application_never_sees_the_form(base_url):
    user = make_staff_user()
    client = make_client(skip_authorization=True)
    browser = browser_login(base_url, user.username)
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read"], pkce="S256")
    url, _state = oauth.authorization_url(f"{base_url}/o/authorize/")

    response = browser.get(url, allow_redirects=False)

    assert response.status_code == 302
    assert "code" in query_of(response.headers["Location"])


def test_auto_approval_skips_the_form_only_when_a_live_token_covers_the_scopes(base_url, settings):
    provider_settings(settings, REQUEST_APPROVAL_PROMPT="auto")
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    authorization_code_token(base_url, client, browser, scope=("read",))

    again = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read"], pkce="S256")
    url, _ = again.authorization_url(f"{base_url}/o/authorize/")
    skipped = browser.get(url, allow_redirects=False)
    assert skipped.status_code == 302 and "code" in query_of(skipped.headers["Location"])

    wider = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read", "write"], pkce="S256")
    url, _ = wider.authorization_url(f"{base_url}/o/authorize/")
    shown = browser.get(url, allow_redirects=False)
    assert shown.status_code == 200 and 'id="authorizationForm"' in shown.text


def test_force_approval_always_shows_the_form(base_url):
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    authorization_code_token(base_url, client, browser, scope=("read",))

    again = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read"], pkce="S256")
    url, _ = again.authorization_url(f"{base_url}/o/authorize/")
    assert 'id="authorizationForm"' in browser.get(url, allow_redirects=False).text


def test_client_credentials_with_basic_and_body_authentication(base_url):
    client_app = make_client(authorization_grant_type="client-credentials", redirect_uris="")
    oauth = OAuth2Session(client=BackendApplicationClient(client_id=client_app.client_id))

    token = oauth.fetch_token(
        f"{base_url}/o/token/", client_id=client_app.client_id, client_secret=client_app.secret
    )
    assert "refresh_token" not in token
    assert get_access_token_model().lookup(token["access_token"]).user is None
    assert oauth.get(f"{base_url}/api/whoami/").json() == {"user": None}

    body = requests.post(
        f"{base_url}/o/token/",
        data={
            "grant_type": "client_credentials",
            "client_id": client_app.client_id,
            "client_secret": client_app.secret,
            "scope": "read",
        },
    )
    assert body.status_code == 200, body.text
    assert body.json()["scope"] == "read"
    assert body.headers["Cache-Control"] == "no-store"


def test_password_grant(base_url):
    user = make_staff_user()
    client = make_client(authorization_grant_type="password", redirect_uris="")
    oauth = OAuth2Session(client=LegacyApplicationClient(client_id=client.client_id))

    token = oauth.fetch_token(
        f"{base_url}/o/token/",
        username=user.username,
        password=PASSWORD,
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )

    assert oauth.get(f"{base_url}/api/whoami/").json() == {"user": user.username}
    assert token["refresh_token"]


def test_refresh_rotates_and_a_replay_within_the_grace_period_returns_the_same_pair(base_url, settings):
    provider_settings(settings, REFRESH_TOKEN_GRACE_PERIOD_SECONDS=600)
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    oauth, first = authorization_code_token(base_url, client, browser)
    auth = HTTPBasicAuth(client.client_id, client.secret)

    second = oauth.refresh_token(f"{base_url}/o/token/", refresh_token=first["refresh_token"], auth=auth)
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    # The old access token died with the rotation; the new one works.
    assert get_access_token_model().lookup(first["access_token"]) is None
    assert oauth.get(f"{base_url}/api/whoami/").status_code == 200

    replay = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=auth,
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["access_token"] == second["access_token"]
    assert replay.json()["refresh_token"] == second["refresh_token"]
    old, new = (
        get_refresh_token_model().lookup(first["refresh_token"]),
        get_refresh_token_model().lookup(second["refresh_token"]),
    )
    assert old.revoked is not None and new.revoked is None
    assert old.token_family == new.token_family


def test_refresh_without_rotation_keeps_the_refresh_token(base_url, settings):
    provider_settings(settings, ROTATE_REFRESH_TOKEN=False)
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    oauth, first = authorization_code_token(base_url, client, browser)

    second = oauth.refresh_token(
        f"{base_url}/o/token/",
        refresh_token=first["refresh_token"],
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )

    assert second["refresh_token"] == first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert get_access_token_model().lookup(second["access_token"]) is not None


def test_revocation_then_introspection_shows_inactive(base_url):
    user = make_staff_user()
    client = make_client()
    resource_server = make_client(authorization_grant_type="client-credentials", redirect_uris="")
    browser = browser_login(base_url, user.username)
    _oauth, token = authorization_code_token(base_url, client, browser)
    rs_auth = HTTPBasicAuth(resource_server.client_id, resource_server.secret)

    active = requests.post(f"{base_url}/o/introspect/", data={"token": token["access_token"]}, auth=rs_auth)
    assert active.status_code == 200
    info = active.json()
    assert info["active"] is True
    assert info["client_id"] == client.client_id
    assert info["username"] == user.username
    assert set(info["scope"].split()) == {"read", "write"}
    refresh_info = requests.post(
        f"{base_url}/o/introspect/",
        data={"token": token["refresh_token"], "token_type_hint": "refresh_token"},
        auth=rs_auth,
    ).json()
    assert refresh_info["active"] is True

    revoked = requests.post(
        f"{base_url}/o/revoke_token/",
        data={"token": token["access_token"], "token_type_hint": "access_token"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )
    assert revoked.status_code == 200

    for raw in (token["access_token"], token["refresh_token"]):
        after = requests.post(f"{base_url}/o/introspect/", data={"token": raw}, auth=rs_auth)
        assert after.status_code == 200
        assert after.json() == {"active": False}
    refreshed = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_introspection_with_a_bearer_token_needs_the_introspection_scope(base_url):
    client = make_client(authorization_grant_type="client-credentials", redirect_uris="")

    def bearer(scope: str) -> str:
        response = requests.post(
            f"{base_url}/o/token/",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=HTTPBasicAuth(client.client_id, client.secret),
        )
        return response.json()["access_token"]

    subject = bearer("read")
    allowed = requests.post(
        f"{base_url}/o/introspect/",
        data={"token": subject},
        headers={"Authorization": f"Bearer {bearer('introspection')}"},
    )
    assert allowed.status_code == 200 and allowed.json()["active"] is True
    refused = requests.post(
        f"{base_url}/o/introspect/",
        data={"token": subject},
        headers={"Authorization": f"Bearer {bearer('read')}"},
    )
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    anonymous = requests.post(f"{base_url}/o/introspect/", data={"token": subject})
    assert anonymous.status_code == 401


def test_revoking_a_refresh_token_kills_its_access_token(base_url):
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    oauth, token = authorization_code_token(base_url, client, browser)

    response = requests.post(
        f"{base_url}/o/revoke_token/",
        data={"token": token["refresh_token"], "token_type_hint": "refresh_token"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )

    assert response.status_code == 200
    assert oauth.get(f"{base_url}/api/whoami/").status_code == 401
