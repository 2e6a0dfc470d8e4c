"""CORS on the token endpoint as django-oauth-toolkit: listed origins, with a scheme of ALLOWED_SCHEMES.

oauthlib answers CORS on the authorization code exchange, the request a browser application makes.
"""

from __future__ import annotations

import requests
from requests.auth import HTTPBasicAuth

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


def code_exchange_with_origin(base_url: str, origin: str, username: str = "alice") -> requests.Response:
    user = make_staff_user(username)
    client = make_client(allowed_origins="https://spa.example http://insecure.example")
    browser = browser_login(base_url, user.username)
    verifier, challenge = pkce_pair()
    params = {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = browser.get(f"{base_url}/o/authorize/", params=params, allow_redirects=False)
    code = query_of(consent(browser, page.url).headers["Location"])["code"]
    response = requests.post(
        f"{base_url}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=HTTPBasicAuth(client.client_id, client.secret),
        headers={"Origin": origin},
        allow_redirects=False,
    )
    assert response.status_code == 200, response.text
    return response


def test_a_listed_https_origin_gets_the_cors_header(base_url):
    response = code_exchange_with_origin(base_url, "https://spa.example")
    assert response.headers["Access-Control-Allow-Origin"] == "https://spa.example"


def test_an_unlisted_origin_gets_none(base_url):
    response = code_exchange_with_origin(base_url, "https://other.example")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_an_http_origin_is_refused_unless_allowed_schemes_has_http(base_url, settings):
    response = code_exchange_with_origin(base_url, "http://insecure.example")
    assert "Access-Control-Allow-Origin" not in response.headers

    provider_settings(settings, ALLOWED_SCHEMES=["https", "http"])
    response = code_exchange_with_origin(base_url, "http://insecure.example", username="bob")
    assert response.headers["Access-Control-Allow-Origin"] == "http://insecure.example"
