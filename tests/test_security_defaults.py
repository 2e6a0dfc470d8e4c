"""Defaults stricter than django-oauth-toolkit's, each attacked over HTTP against the live server."""

from __future__ import annotations

import json
import time
from urllib.parse import urljoin

import requests
from django.contrib.sessions.backends.db import SessionStore
from jwcrypto import jwk, jwt
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from oauth_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from .test_endpoints_errors import exchange, get_code, issue, logged_in
from .test_endpoints_support import (
    PASSWORD,
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    consent,
    form_fields,
    make_client,
    pkce_pair,
    query_of,
)


def authorize(browser: requests.Session, base_url: str, client, **params) -> requests.Response:
    query = {"response_type": "code", "client_id": client.client_id, "redirect_uri": REDIRECT_URI}
    query.update(params)
    return browser.get(f"{base_url}/o/authorize/", params=query, allow_redirects=False)


def test_pkce_plain_is_refused_by_default_and_only_s256_is_advertised(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    verifier = pkce_pair()[0]

    plain = authorize(browser, base_url, client, code_challenge=verifier, code_challenge_method="plain")
    # A challenge without a method means plain (RFC 7636 4.3).
    implicit_plain = authorize(browser, base_url, client, code_challenge=verifier, state="s1")

    for response in (plain, implicit_plain):
        assert response.status_code == 302
        params = query_of(response.headers["Location"])
        assert params["error"] == "invalid_request"
        assert "S256" in params["error_description"]
        assert "code" not in params
    assert query_of(implicit_plain.headers["Location"])["state"] == "s1"
    assert get_grant_model().objects.count() == 0
    discovery = requests.get(f"{base_url}/o/.well-known/openid-configuration").json()
    assert discovery["code_challenge_methods_supported"] == ["S256"]


def test_a_failed_pkce_verification_burns_the_code(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge)

    guess = exchange(base_url, client, code, verifier=pkce_pair()[0])
    right = exchange(base_url, client, code, verifier)

    assert guess.status_code == 400 and guess.json()["error"] == "invalid_grant"
    # The right verifier comes too late: the code had one chance.
    assert right.status_code == 400 and right.json()["error"] == "invalid_grant"
    assert get_access_token_model().objects.count() == 0
    assert not get_grant_model().objects.filter(code=code).exists()


def test_userinfo_is_not_cacheable(base_url):
    _user, browser = logged_in(base_url)
    client = make_client(algorithm="RS256")
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge, scope="openid read")
    token = exchange(base_url, client, code, verifier).json()["access_token"]

    info = requests.get(f"{base_url}/o/userinfo/", headers={"Authorization": f"Bearer {token}"})

    assert info.status_code == 200 and info.json()["sub"]
    assert info.headers["Cache-Control"] == "no-store"


def test_userinfo_with_a_token_lacking_openid_is_403_insufficient_scope(base_url):
    _user, browser = logged_in(base_url)
    client = make_client()
    token = issue(base_url, browser, client)["access_token"]  # scopes read write, no openid

    for method in (requests.get, requests.post):
        response = method(f"{base_url}/o/userinfo/", headers={"Authorization": f"Bearer {token}"})

        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ") and 'error="insufficient_scope"' in challenge
        assert 'scope="openid"' in challenge


def test_a_wrong_secret_sent_with_basic_gets_a_basic_challenge(base_url):
    client = make_client(authorization_grant_type="client-credentials", redirect_uris="")
    wrong = HTTPBasicAuth(client.client_id, client.secret + "x")

    token = requests.post(f"{base_url}/o/token/", data={"grant_type": "client_credentials"}, auth=wrong)
    revoke = requests.post(f"{base_url}/o/revoke_token/", data={"token": "whatever"}, auth=wrong)

    for response in (token, revoke):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_a_missing_grant_type_is_invalid_request(base_url):
    client = make_client(authorization_grant_type="client-credentials", redirect_uris="")

    response = requests.post(
        f"{base_url}/o/token/", data={"scope": "read"}, auth=HTTPBasicAuth(client.client_id, client.secret)
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "Missing grant_type parameter.",
    }
    assert get_access_token_model().objects.count() == 0


def test_authorization_responses_name_the_issuer(base_url):
    """RFC 9207: success and error redirects carry ``iss``, and discovery says so."""
    _user, browser = logged_in(base_url)
    client = make_client(skip_authorization=True)
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read"], pkce="S256")
    url, state = oauth.authorization_url(f"{base_url}/o/authorize/")

    granted = query_of(browser.get(url, allow_redirects=False).headers["Location"])
    refused = query_of(authorize(browser, base_url, client, scope="nonexistent").headers["Location"])

    discovery = requests.get(f"{base_url}/o/.well-known/openid-configuration").json()
    assert discovery["authorization_response_iss_parameter_supported"] is True
    assert granted["code"] and granted["state"] == state
    assert refused["error"]
    for params in (granted, refused):
        assert params["iss"] == discovery["issuer"] == f"{base_url}/o"


def test_a_replayed_code_revokes_the_tokens_of_its_first_exchange(base_url):
    """RFC 6749 4.1.2: the first exchange may have been the attacker's; its tokens die with the replay."""
    _user, browser = logged_in(base_url)
    client = make_client()
    verifier, challenge = pkce_pair()
    code = get_code(base_url, client, browser, challenge)
    auth = HTTPBasicAuth(client.client_id, client.secret)
    first = exchange(base_url, client, code, verifier).json()
    # The first holder refreshes: the family goes on with a new pair.
    rotated = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=auth,
    ).json()

    replay = exchange(base_url, client, code, verifier)

    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    for access_token in (first["access_token"], rotated["access_token"]):
        who = requests.get(f"{base_url}/api/whoami/", headers={"Authorization": f"Bearer {access_token}"})
        assert who.status_code == 401
    again = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]},
        auth=auth,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert not get_refresh_token_model().objects.filter(revoked__isnull=True).exists()
    assert get_access_token_model().objects.count() == 0


def age_session(browser: requests.Session, seconds: int) -> None:
    """Pretend the browser's sign-in happened ``seconds`` ago (the session row in the database)."""
    from oauth_provider.authentication import SESSION_KEY

    store = SessionStore(session_key=browser.cookies["sessionid"])
    store[SESSION_KEY] = int(time.time()) - seconds
    store.save()


def sign_in_again(browser: requests.Session, base_url: str, login_url: str, username: str) -> str:
    """Fill the login page the provider sent the browser to; returns where it sends the browser next."""
    page = browser.get(urljoin(base_url, login_url))
    assert page.status_code == 200 and 'name="password"' in page.text
    fields = form_fields(page.text)
    fields.update(username=username, password=PASSWORD)
    response = browser.post(page.url, data=fields, allow_redirects=False)
    assert response.status_code == 302, response.text[:300]
    return response.headers["Location"]


def id_token_auth_time(base_url: str, client, browser, authorize_url: str, verifier: str) -> int:
    code = query_of(consent(browser, authorize_url).headers["Location"])["code"]
    id_token = exchange(base_url, client, code, verifier).json()["id_token"]
    keys = jwk.JWKSet.from_json(requests.get(f"{base_url}/o/.well-known/jwks.json").text)
    return json.loads(jwt.JWT(jwt=id_token, key=keys, algs=["RS256"]).claims)["auth_time"]


def openid_authorize_url(base_url: str, client, challenge: str, **extra) -> str:
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid read",
        "state": "st",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return requests.Request("GET", f"{base_url}/o/authorize/", params=params).prepare().url


def hour_old_session(base_url: str):
    """A browser signed in an hour ago, an RS256 client and a PKCE pair."""
    user, browser = logged_in(base_url)
    age_session(browser, 3600)
    return user, browser, make_client(algorithm="RS256"), *pkce_pair()


def test_prompt_login_makes_a_signed_in_user_sign_in_again(base_url):
    user, browser, client, verifier, challenge = hour_old_session(base_url)

    response = browser.get(
        openid_authorize_url(base_url, client, challenge, prompt="login"), allow_redirects=False
    )

    # Not the consent page: the session is over and the login page asks for the password.
    assert response.status_code == 302
    login_url = response.headers["Location"]
    assert "/login/" in login_url and "prompt" not in query_of(query_of(login_url)["next"])
    assert browser.get(f"{base_url}/api/me/").json() == {"user": None}
    signed_in_at = int(time.time())
    back_to = sign_in_again(browser, base_url, login_url, user.username)
    auth_time = id_token_auth_time(base_url, client, browser, urljoin(base_url, back_to), verifier)
    assert auth_time >= signed_in_at  # the new sign-in, not the hour-old one


def test_max_age_passed_forces_sign_in_or_login_required(base_url):
    user, browser, client, verifier, challenge = hour_old_session(base_url)

    silent = browser.get(
        openid_authorize_url(base_url, client, challenge, max_age="600", prompt="none"), allow_redirects=False
    )
    recent_enough = browser.get(openid_authorize_url(base_url, client, challenge, max_age="7200"))
    stale = browser.get(
        openid_authorize_url(base_url, client, challenge, max_age="600"), allow_redirects=False
    )

    assert query_of(silent.headers["Location"]) == {
        "error": "login_required",
        "state": "st",
        "iss": f"{base_url}/o",
    }
    assert recent_enough.status_code == 200 and 'id="authorizationForm"' in recent_enough.text
    assert stale.status_code == 302 and "/login/" in stale.headers["Location"]
    signed_in_at = int(time.time())
    back_to = sign_in_again(browser, base_url, stale.headers["Location"], user.username)
    assert id_token_auth_time(base_url, client, browser, urljoin(base_url, back_to), verifier) >= signed_in_at
