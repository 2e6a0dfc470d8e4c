"""OpenID Connect RP-Initiated Logout over HTTP, with ID tokens from the real token endpoint."""

from __future__ import annotations

import secrets
import time

import pytest
import requests
from django.contrib.sessions.models import Session
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from oauth_provider.models import get_refresh_token_model
from oauth_tasks.models import MaintenanceRun

from .test_endpoints_support import (
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    consent,
    form_fields,
    make_client,
    make_staff_user,
    provider_settings,
    query_of,
)

LOGGED_OUT_URI = "http://localhost:8976/logged-out"


def openid_tokens(base_url: str, browser: requests.Session, client) -> dict:
    """Tokens (with an ID token) of the browser's user for ``client``, by the code flow."""
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["openid", "read"], pkce="S256")
    url, _state = oauth.authorization_url(f"{base_url}/o/authorize/", nonce=secrets.token_urlsafe(16))
    redirect = consent(browser, url)
    return oauth.fetch_token(
        f"{base_url}/o/token/",
        authorization_response=redirect.headers["Location"],
        client_secret=client.secret,
    )


def session_user(base_url: str, browser: requests.Session):
    return browser.get(f"{base_url}/api/me/").json()["user"]


def bearer_status(base_url: str, access_token: str) -> int:
    return requests.get(
        f"{base_url}/api/whoami/", headers={"Authorization": f"Bearer {access_token}"}
    ).status_code


def enable_logout(settings, **values) -> None:
    provider_settings(settings, OIDC_RP_INITIATED_LOGOUT_ENABLED=True, **values)


def logged_in_with_token(base_url: str, **client_fields):
    client = make_client(algorithm="RS256", post_logout_redirect_uris=LOGGED_OUT_URI, **client_fields)
    user = make_staff_user()
    browser = browser_login(base_url, user.username)
    token = openid_tokens(base_url, browser, client)
    return client, user, browser, token


def test_disabled_endpoint_is_404_and_not_in_discovery(base_url):
    assert requests.get(f"{base_url}/o/logout/").status_code == 404
    assert requests.post(f"{base_url}/o/logout/").status_code == 404
    config = requests.get(f"{base_url}/o/.well-known/openid-configuration").json()
    assert "end_session_endpoint" not in config


def test_discovery_lists_end_session_endpoint_when_enabled(base_url, settings):
    enable_logout(settings)
    config = requests.get(f"{base_url}/o/.well-known/openid-configuration").json()
    assert config["end_session_endpoint"] == f"{base_url}/o/logout/"


def test_confirmed_logout_ends_session_redirects_with_state_and_revokes_that_apps_tokens(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    other = make_client(algorithm="RS256")
    other_token = openid_tokens(base_url, browser, other)
    second_token = openid_tokens(base_url, browser, client)
    session_key = browser.cookies["sessionid"]
    assert session_user(base_url, browser) == user.username

    params = {"id_token_hint": token["id_token"], "post_logout_redirect_uri": LOGGED_OUT_URI, "state": "s-42"}
    page = browser.get(f"{base_url}/o/logout/", params=params, allow_redirects=False)
    assert page.status_code == 200
    assert 'id="logoutForm"' in page.text
    assert session_user(base_url, browser) == user.username  # nothing happens before the confirmation

    fields = form_fields(page.text)
    fields["allow"] = "on"
    response = browser.post(f"{base_url}/o/logout/", data=fields, allow_redirects=False)

    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(LOGGED_OUT_URI + "?")
    assert query_of(location) == {"state": "s-42"}
    assert session_user(base_url, browser) is None
    assert not Session.objects.filter(session_key=session_key).exists()

    # Refused at once; the rows go through a revocation run of the maintenance worker.
    run = MaintenanceRun.objects.get()
    assert (run.kind, run.trigger) == ("revoke", "logout")
    assert run.params == {"user": user.pk, "application": client.application.pk}
    for issued in (token, second_token):
        assert bearer_status(base_url, issued["access_token"]) == 401
        refreshed = requests.post(
            f"{base_url}/o/token/",
            data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]},
            auth=HTTPBasicAuth(client.client_id, client.secret),
        )
        assert refreshed.status_code == 400
        assert refreshed.json()["error"] == "invalid_grant"

    # The other application's tokens of the same user are untouched.
    assert bearer_status(base_url, other_token["access_token"]) == 200
    assert get_refresh_token_model().objects.get(application=other.application).revoked is None


def test_cancelled_logout_keeps_the_session_and_tokens(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    page = browser.get(f"{base_url}/o/logout/", params={"id_token_hint": token["id_token"]})
    fields = form_fields(page.text)

    response = browser.post(f"{base_url}/o/logout/", data=fields, allow_redirects=False)

    # The form posted without "allow": django-oauth-toolkit's logout_denied, a 400.
    assert response.status_code == 400
    assert 'id="logoutCancelled"' in response.text
    assert session_user(base_url, browser) == user.username
    assert bearer_status(base_url, token["access_token"]) == 200


def test_confirmation_without_csrf_token_is_refused(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    data = {"confirm": "1", "allow": "on", "id_token_hint": token["id_token"]}

    response = browser.post(f"{base_url}/o/logout/", data=data, allow_redirects=False)

    assert response.status_code == 403
    assert session_user(base_url, browser) == user.username


def test_a_posted_logout_request_that_needs_confirmation_is_refused_as_logout_denied(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)

    response = browser.post(
        f"{base_url}/o/logout/",
        data={"id_token_hint": token["id_token"]},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "logout_denied"
    assert session_user(base_url, browser) == user.username
    assert bearer_status(base_url, token["access_token"]) == 200


def test_expired_hint_accepted_when_configured(base_url, settings):
    enable_logout(settings, ID_TOKEN_EXPIRE_SECONDS=0, OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=False)
    client, user, browser, token = logged_in_with_token(base_url)
    time.sleep(1.1)  # past the ID token's exp, which is its issue second
    params = {"id_token_hint": token["id_token"], "post_logout_redirect_uri": LOGGED_OUT_URI}

    # The hint's user is the one signed in and prompting is not forced: logged out at once.
    response = browser.get(f"{base_url}/o/logout/", params=params, allow_redirects=False)

    assert response.status_code == 302
    assert response.headers["Location"] == LOGGED_OUT_URI
    assert session_user(base_url, browser) is None
    assert bearer_status(base_url, token["access_token"]) == 401


def test_expired_hint_refused_when_configured(base_url, settings):
    enable_logout(
        settings,
        ID_TOKEN_EXPIRE_SECONDS=0,
        OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS=False,
        OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=False,
    )
    client, user, browser, token = logged_in_with_token(base_url)
    time.sleep(1.1)  # past the ID token's exp, which is its issue second

    response = browser.get(
        f"{base_url}/o/logout/",
        params={"id_token_hint": token["id_token"]},
        headers={"Accept": "application/json"},
        allow_redirects=False,
    )

    assert response.status_code == 400
    assert response.json()["parameter"] == "id_token_hint"
    assert session_user(base_url, browser) == user.username
    assert bearer_status(base_url, token["access_token"]) == 200


def test_unregistered_post_logout_redirect_uri_is_400_naming_it(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    params = {"id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://evil.example/"}

    page = browser.get(f"{base_url}/o/logout/", params=params, allow_redirects=False)
    assert page.status_code == 400
    assert "post_logout_redirect_uri" in page.text
    assert 'id="logoutForm"' not in page.text

    as_json = browser.get(
        f"{base_url}/o/logout/", params=params, headers={"Accept": "application/json"}, allow_redirects=False
    )
    assert as_json.status_code == 400
    assert as_json.json()["parameter"] == "post_logout_redirect_uri"
    assert session_user(base_url, browser) == user.username


def test_garbage_hint_is_400(base_url, settings):
    enable_logout(settings)
    headers = {"Accept": "application/json"}
    for hint in ("not-a-jwt", "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0."):
        response = requests.get(f"{base_url}/o/logout/", params={"id_token_hint": hint}, headers=headers)
        assert response.status_code == 400
        assert response.json()["parameter"] == "id_token_hint"


def test_client_id_not_matching_the_hint_is_400(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    other = make_client(algorithm="RS256")

    response = browser.get(
        f"{base_url}/o/logout/",
        params={"id_token_hint": token["id_token"], "client_id": other.client_id},
        headers={"Accept": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["parameter"] == "client_id"


@pytest.mark.parametrize("strict", [True, False])
def test_a_post_logout_redirect_uri_needs_a_client(base_url, settings, strict):
    enable_logout(settings, OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS=strict)
    make_client(algorithm="RS256", post_logout_redirect_uris=LOGGED_OUT_URI)
    headers = {"Accept": "application/json"}

    response = requests.get(
        f"{base_url}/o/logout/",
        params={"post_logout_redirect_uri": LOGGED_OUT_URI},
        headers=headers,
        allow_redirects=False,
    )

    # Registered on some client, but none is named: refused, never redirected to.
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.json()["error"] == "invalid_request"
    assert response.json()["parameter"] == "post_logout_redirect_uri"
