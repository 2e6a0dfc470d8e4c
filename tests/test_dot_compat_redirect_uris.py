"""Redirect URI matching as django-oauth-toolkit: loopback on any port, wildcards when allowed."""

from __future__ import annotations

import logging

import pytest

from oauth_provider.models import (
    _format_uri_mismatch_reasons,
    _loggable_uri,
    check_redirect_to_uri_allowed,
    redirect_to_uri_allowed,
)

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


@pytest.fixture
def provider_log(caplog):
    """caplog on the provider's logger, which does not propagate to the root logger."""
    logger = logging.getLogger("oauth_provider")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_a_refused_redirect_uri_is_logged_at_debug_with_the_reason_and_never_shown(base_url, provider_log):
    caplog = provider_log
    user = make_staff_user()
    client = make_client(redirect_uris="https://app.example/cb https://app.example:8443/cb")
    browser = browser_login(base_url, user.username)

    with caplog.at_level(logging.DEBUG, logger="oauth_provider"):
        page = authorize(base_url, browser, client, "https://app.example/other?x='1'")

    assert page.status_code == 400
    assert "app.example/cb" not in page.text  # the registered URIs stay out of the answer
    [record] = [r for r in caplog.records if "does not match any redirect_uri" in r.getMessage()]
    message = record.getMessage()
    assert record.levelno == logging.DEBUG
    assert repr("https://app.example/other?x='1'") in message
    assert "for client_id " in message
    assert client.client_id not in message  # the project's log redaction keeps credentials out
    assert "'https://app.example/cb': path differs" in message
    assert "'https://app.example:8443/cb': port differs" in message


def test_a_refused_redirect_uri_is_not_logged_above_debug(provider_log):
    caplog = provider_log
    with caplog.at_level(logging.INFO, logger="oauth_provider"):
        assert not redirect_to_uri_allowed("https://a.example/x", ["https://a.example/y"])
    assert caplog.records == []


@pytest.mark.parametrize(
    ("uri", "allowed", "reason"),
    [
        ("https://a.example/cb#f", ["https://a.example/cb"], "fragment"),
        ("https://evil@a.example/cb", ["https://a.example/cb"], "userinfo credentials"),
        ("http://a.example/cb", ["https://a.example/cb"], "scheme differs"),
        ("https://b.example/cb", ["https://a.example/cb"], "hostname differs"),
        ("https://a.example/cb?x=1", ["https://a.example/cb?x=2"], "query string differs"),
        ("https://a.example/cb?", ["https://a.example/cb"], "query component"),
    ],
)
def test_check_redirect_to_uri_allowed_names_what_differs(uri, allowed, reason):
    ok, reasons = check_redirect_to_uri_allowed(uri, allowed)
    assert not ok
    assert reason in reasons[0][1]


def test_many_registered_uris_are_capped_and_long_ones_cut():
    registered = [f"https://a.example/cb{i}" for i in range(25)] + ["https://a.example/" + "b" * 1000]
    _ok, reasons = check_redirect_to_uri_allowed("https://a.example/nope", registered)
    listed = _format_uri_mismatch_reasons(reasons)
    assert listed.count("path differs") == 10
    assert "...and 16 further registered URI(s) not listed" in listed
    assert len(_loggable_uri("https://a.example/" + "x" * 1000)) < 300
    assert (
        _loggable_uri("https://a.example/cb\r\nWARNING forged")
        == "'https://a.example/cb\\r\\nWARNING forged'"
    )
