"""What the provider refuses, and how: RFC 6749 / 6750 / 7009 errors over HTTP."""

from __future__ import annotations

from datetime import timedelta

import requests
from django.utils import timezone
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from oauth_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from .test_endpoints_support import (
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    consent,
    make_client,
    make_staff_user,
    pkce_pair,
    provider_settings,
    query_of,
)


def get_code(
    base_url: str, client, browser, challenge: str | None, method: str = "S256", scope: str = "read write"
) -> str:
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": "xyz",
    }
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method=method)
    url = requests.Request("GET", f"{base_url}/o/authorize/", params=params).prepare().url
    redirect = consent(browser, url)
    assert redirect.status_code == 302
    return query_of(redirect.headers["Location"])["code"]


def exchange(base_url: str, client, code: str, verifier: str | None, secret: str | None = None, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    return requests.post(
        f"{base_url}/o/token/", data=data, auth=HTTPBasicAuth(client.client_id, secret or client.secret)
    )


def logged_in(base_url):
    user = make_staff_user()
    return user, browser_login(base_url, user.username)


def test_wrong_secret_is_invalid_client(base_url):
    client = make_client(authorization_grant_type="client-credentials", redirect_uris="")

    basic = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "client_credentials"},
        auth=HTTPBasicAuth(client.client_id, client.secret + "x"),
    )
    body = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": "nope"},
    )

    for response in (basic, body):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response.headers["Content-Type"].startswith("application/json")
    assert get_access_token_model().objects.count() == 0


def test_wrong_redirect_uri_is_shown_not_redirected(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    _verifier, challenge = pkce_pair()
    for uri in (
        REDIRECT_URI + "/evil",
        "http://localhost:8976/callback?x=1",
        "https://evil.example/callback",
    ):
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        response = browser.get(f"{base_url}/o/authorize/", params=params, allow_redirects=False)
        assert response.status_code == 400, uri
        assert "Location" not in response.headers
        assert "redirect" in response.text.lower()


def test_redirect_uri_scheme_outside_the_allowed_list_is_refused(base_url, settings):
    _user, browser = logged_in(base_url)
    client = make_client()
    provider_settings(settings, ALLOWED_REDIRECT_URI_SCHEMES=["https"])
    _verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = browser.get(f"{base_url}/o/authorize/", params=params, allow_redirects=False)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_token_request_with_a_different_redirect_uri_is_invalid_grant(base_url):
    _user, browser = logged_in(base_url)
    client = make_client(redirect_uris=f"{REDIRECT_URI} http://localhost:8976/other")
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge)

    response = exchange(base_url, client, code, verifier, redirect_uri="http://localhost:8976/other")

    # RFC 6749 5.2: the code "does not match the redirection URI used in the authorization request".
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "redirect_uri" in response.json()["error_description"]
    assert get_access_token_model().objects.count() == 0


def test_missing_pkce_challenge_is_refused_when_pkce_is_required(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read"])
    url, _state = oauth.authorization_url(f"{base_url}/o/authorize/")

    response = browser.get(url, allow_redirects=False)

    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_pkce_required_can_be_decided_per_client(base_url, settings):
    _user, browser = logged_in(base_url)
    client = make_client()
    provider_settings(settings, PKCE_REQUIRED=lambda client_id: client_id != client.client_id)

    code = get_code(base_url, client, browser, challenge=None)

    assert exchange(base_url, client, code, verifier=None).status_code == 200


def test_missing_or_wrong_pkce_verifier_is_refused(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    verifier, challenge = pkce_pair()
    missing = exchange(base_url, client, get_code(base_url, client, browser, challenge), verifier=None)
    code = get_code(base_url, client, browser, challenge)
    wrong = exchange(base_url, client, code, verifier=pkce_pair()[0])

    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert get_access_token_model().objects.count() == 0


def test_expired_code_is_invalid_grant(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge)
    get_grant_model().objects.filter(code=code).update(expires=timezone.now() - timedelta(seconds=1))

    response = exchange(base_url, client, code, verifier)

    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_reused_code_is_invalid_grant(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge)

    assert exchange(base_url, client, code, verifier).status_code == 200
    again = exchange(base_url, client, code, verifier)

    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # The replay also revoked what the first exchange issued (see test_security_defaults).
    assert get_access_token_model().objects.count() == 0


def test_code_of_another_client_is_invalid_grant(base_url):
    _user, browser = logged_in(base_url)
    client, other = make_client(), make_client()
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge)

    response = exchange(base_url, other, code, verifier)

    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def issue(base_url, browser, client) -> dict:
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge)
    response = exchange(base_url, client, code, verifier)
    assert response.status_code == 200
    return response.json()


def test_expired_token_on_a_protected_view_is_401_invalid_token(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    token = issue(base_url, browser, client)
    get_access_token_model().objects.filter(token=token["access_token"]).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    for path in ("/api/whoami/", "/api/read/", "/o/userinfo/"):
        response = requests.get(f"{base_url}{path}", headers=headers)
        assert response.status_code == 401, path
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"], path
    assert requests.get(f"{base_url}/api/me/", headers=headers).json() == {"user": None}


def test_revoked_token_on_a_protected_view_is_401(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    token = issue(base_url, browser, client)
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert requests.get(f"{base_url}/api/whoami/", headers=headers).status_code == 200

    revoked = requests.post(
        f"{base_url}/o/revoke_token/",
        data={"token": token["access_token"]},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )

    assert revoked.status_code == 200
    response = requests.get(f"{base_url}/api/whoami/", headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_missing_token_and_insufficient_scope(base_url):
    client = make_client(authorization_grant_type="client-credentials", redirect_uris="")
    read_only = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    ).json()["access_token"]

    anonymous = requests.get(f"{base_url}/api/whoami/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error=" not in anonymous.headers["WWW-Authenticate"]

    scoped = requests.get(f"{base_url}/api/write/", headers={"Authorization": f"Bearer {read_only}"})
    assert scoped.status_code == 403
    assert 'error="insufficient_scope"' in scoped.headers["WWW-Authenticate"]
    assert 'scope="write"' in scoped.headers["WWW-Authenticate"]


def test_another_client_cannot_revoke_a_token(base_url):
    _user, browser = logged_in(base_url)
    client, other = make_client(), make_client()
    token = issue(base_url, browser, client)

    response = requests.post(
        f"{base_url}/o/revoke_token/",
        data={"token": token["access_token"]},
        auth=HTTPBasicAuth(other.client_id, other.secret),
    )

    assert response.status_code == 200  # RFC 7009 2.2: no disclosure
    assert get_access_token_model().lookup(token["access_token"]) is not None


def test_revocation_needs_client_authentication(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    token = issue(base_url, browser, client)

    response = requests.post(
        f"{base_url}/o/revoke_token/",
        data={"token": token["access_token"]},
        auth=HTTPBasicAuth(client.client_id, "wrong"),
    )

    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert get_access_token_model().lookup(token["access_token"]) is not None


def test_refresh_replayed_after_the_grace_period_fails(base_url, settings):
    provider_settings(settings, REFRESH_TOKEN_GRACE_PERIOD_SECONDS=60, REFRESH_TOKEN_REUSE_PROTECTION=False)
    _user, browser = logged_in(base_url)
    client = make_client()
    first = issue(base_url, browser, client)
    auth = HTTPBasicAuth(client.client_id, client.secret)

    def refresh(raw: str) -> requests.Response:
        return requests.post(
            f"{base_url}/o/token/", data={"grant_type": "refresh_token", "refresh_token": raw}, auth=auth
        )

    second = refresh(first["refresh_token"])
    assert second.status_code == 200
    # Move the rotation back beyond the grace period instead of waiting for it.
    get_refresh_token_model().objects.filter(revoked__isnull=False).update(
        revoked=timezone.now() - timedelta(seconds=61)
    )

    replay = refresh(first["refresh_token"])

    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # Without reuse protection the live successor is untouched.
    assert refresh(second.json()["refresh_token"]).status_code == 200


def test_refresh_without_grace_period_refuses_any_replay(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    first = issue(base_url, browser, client)
    auth = HTTPBasicAuth(client.client_id, client.secret)
    data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}

    assert requests.post(f"{base_url}/o/token/", data=data, auth=auth).status_code == 200
    replay = requests.post(f"{base_url}/o/token/", data=data, auth=auth)

    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_refresh_token_reuse_revokes_the_whole_family_by_default(base_url):
    """REFRESH_TOKEN_REUSE_PROTECTION is on unless turned off (off in django-oauth-toolkit)."""
    _user, browser = logged_in(base_url)
    client = make_client()
    first = issue(base_url, browser, client)
    auth = HTTPBasicAuth(client.client_id, client.secret)

    def refresh(raw: str) -> requests.Response:
        return requests.post(
            f"{base_url}/o/token/", data={"grant_type": "refresh_token", "refresh_token": raw}, auth=auth
        )

    second = refresh(first["refresh_token"]).json()
    assert refresh(first["refresh_token"]).status_code == 400  # the replay

    # The attacker's (or victim's) live successor is dead too, and so is its access token.
    assert refresh(second["refresh_token"]).json()["error"] == "invalid_grant"
    who = requests.get(
        f"{base_url}/api/whoami/", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert who.status_code == 401
    assert not get_refresh_token_model().objects.filter(revoked__isnull=True).exists()


def test_refresh_token_of_another_client_is_refused(base_url):
    _user, browser = logged_in(base_url)
    client, other = make_client(), make_client()
    first = issue(base_url, browser, client)

    response = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=HTTPBasicAuth(other.client_id, other.secret),
    )

    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_grant_type_not_allowed_for_the_application(base_url):
    client = make_client()  # authorization-code application

    response = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "client_credentials"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )

    assert response.status_code in (400, 401) and response.json()["error"] == "unauthorized_client"


def test_public_client_needs_the_pkce_verifier(base_url):
    _user, browser = logged_in(base_url)
    client = make_client(client_type="public")
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": client.client_id,
    }

    ok = requests.post(f"{base_url}/o/token/", data={**data, "code_verifier": verifier})
    assert ok.status_code == 200, ok.text
    # Without the verifier the code is refused (and burnt, see test_security_defaults).
    code = get_code(base_url, client, browser, challenge)
    missing = requests.post(f"{base_url}/o/token/", data={**data, "code": code})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
