"""Redirect URI matching as django-oauth-toolkit: loopback on any port, wildcards when allowed."""

from __future__ import annotations

import pytest

from oauth_provider.models import redirect_to_uri_allowed

from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    consent,
    make_client,
    make_staff_user,
    pkce_pair,
    provider_settings,
    query_of,
)


def authorize(base_url, browser, client, redirect_uri):
    _verifier, challenge = pkce_pair()
    params = {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "state": "s1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return browser.get(f"{base_url}/o/authorize/", params=params, allow_redirects=False)


def test_a_native_app_on_an_ephemeral_loopback_port_gets_its_code(base_url):
    user = make_staff_user()
    client = make_client(redirect_uris="http://127.0.0.1/callback")
    browser = browser_login(base_url, user.username)

    page = authorize(base_url, browser, client, "http://127.0.0.1:51234/callback")
    assert page.status_code == 200
    redirect = consent(browser, page.url)

    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert location.startswith("http://127.0.0.1:51234/callback?")
    assert query_of(location)["state"] == "s1"


def test_another_path_on_the_loopback_is_refused_without_redirecting(base_url):
    user = make_staff_user()
    client = make_client(redirect_uris="http://127.0.0.1/callback")
    browser = browser_login(base_url, user.username)

    page = authorize(base_url, browser, client, "http://127.0.0.1:51234/elsewhere")
    assert page.status_code == 400
    assert "Location" not in page.headers


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("http://127.0.0.1:8000/cb", True),
        ("http://[::1]:9999/cb", True),
        ("https://127.0.0.1:8000/cb", False),  # scheme differs
        ("http://127.0.0.1:8000/cb?x=1", False),  # query differs
        ("http://localhost:8000/cb", False),  # localhost only with ALLOW_LOCALHOST_LOOPBACK
        ("https://app.example/cb", True),
        ("https://app.example:444/cb", False),  # ports are exact off the loopback
        ("https://app.example/cb#frag", False),
        ("https://evil@app.example/cb", False),
    ],
)
def test_redirect_to_uri_allowed(uri, allowed):
    registered = ["http://127.0.0.1/cb", "http://[::1]/cb", "https://app.example/cb"]
    assert redirect_to_uri_allowed(uri, registered) is allowed


def test_localhost_is_a_loopback_with_allow_localhost_loopback(settings):
    assert not redirect_to_uri_allowed("http://localhost:5000/cb", ["http://localhost/cb"])
    provider_settings(settings, ALLOW_LOCALHOST_LOOPBACK=True)
    assert redirect_to_uri_allowed("http://localhost:5000/cb", ["http://localhost/cb"])


def test_wildcard_hosts_only_with_allow_uri_wildcards(settings):
    registered = ["https://*.preview.example/cb"]
    assert not redirect_to_uri_allowed("https://pr-12.preview.example/cb", registered)
    provider_settings(settings, ALLOW_URI_WILDCARDS=True)
    assert redirect_to_uri_allowed("https://pr-12.preview.example/cb", registered)
    assert not redirect_to_uri_allowed("https://pr-12.preview.example.evil/cb", registered)
    assert not redirect_to_uri_allowed("https://pr-12.preview.example/other", registered)


def test_allowed_uris_must_be_a_list():
    with pytest.raises(ValueError, match="must be a list"):
        redirect_to_uri_allowed("https://app.example/cb", "https://app.example/cb")
