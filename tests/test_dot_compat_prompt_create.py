"""``prompt=create`` (OpenID Connect Prompt Create 1.0) as django-oauth-toolkit handles it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from .test_endpoints_support import (
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    make_client,
    make_staff_user,
    pkce_pair,
    provider_settings,
)


def authorization_params(client, prompt: str) -> dict[str, str]:
    _verifier, challenge = pkce_pair()
    return {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "prompt": prompt,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def test_without_registration_enabled_prompt_create_is_invalid_request(base_url):
    response = requests.get(
        f"{base_url}/o/authorize/",
        params=authorization_params(make_client(), "create"),
        allow_redirects=False,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_visitor_is_sent_to_registration_and_back_without_create(base_url, settings):
    provider_settings(
        settings,
        OIDC_RP_INITIATED_REGISTRATION_ENABLED=True,
        OIDC_RP_INITIATED_REGISTRATION_URL="/accounts/signup/?source=oidc",
    )
    response = requests.get(
        f"{base_url}/o/authorize/",
        params=authorization_params(make_client(), "create login"),
        allow_redirects=False,
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/accounts/signup/"
    query = parse_qs(location.query)
    assert query["source"] == ["oidc"]
    back = urlsplit(query["next"][0])
    assert back.path == "/o/authorize/"
    assert parse_qs(back.query)["prompt"] == ["login"]


def test_a_signed_in_user_goes_on_to_the_consent_page(base_url, settings):
    provider_settings(
        settings,
        OIDC_RP_INITIATED_REGISTRATION_ENABLED=True,
        OIDC_RP_INITIATED_REGISTRATION_URL="/accounts/signup/",
    )
    user = make_staff_user()
    browser = browser_login(base_url, user.username)
    page = browser.get(
        f"{base_url}/o/authorize/",
        params=authorization_params(make_client(), "create"),
        allow_redirects=False,
    )
    assert page.status_code == 200
    assert 'id="authorizationForm"' in page.text


def test_an_invalid_client_is_refused_before_any_registration(base_url, settings):
    provider_settings(
        settings,
        OIDC_RP_INITIATED_REGISTRATION_ENABLED=True,
        OIDC_RP_INITIATED_REGISTRATION_URL="/accounts/signup/",
    )
    params = authorization_params(make_client(), "create")
    params["client_id"] = "no-such-client"
    response = requests.get(f"{base_url}/o/authorize/", params=params, allow_redirects=False)
    assert response.status_code == 400


def test_discovery_lists_create_only_when_enabled(base_url, settings):
    url = f"{base_url}/o/.well-known/openid-configuration"
    assert "create" not in requests.get(url).json()["prompt_values_supported"]
    provider_settings(
        settings,
        OIDC_RP_INITIATED_REGISTRATION_ENABLED=True,
        OIDC_RP_INITIATED_REGISTRATION_URL="/accounts/signup/",
    )
    assert "create" in requests.get(url).json()["prompt_values_supported"]
