"""Discovery behind a proxy: with ``OIDC_ISS_ENDPOINT`` set, every URL is on the issuer's host."""

from __future__ import annotations

import requests

from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    provider_settings,
)


def test_endpoints_are_built_from_the_configured_issuer(base_url, settings):
    provider_settings(
        settings, OIDC_ISS_ENDPOINT="https://id.example.com/o", OIDC_RP_INITIATED_LOGOUT_ENABLED=True
    )
    config = requests.get(f"{base_url}/o/.well-known/openid-configuration").json()

    assert config["issuer"] == "https://id.example.com/o"
    for key, path in [
        ("authorization_endpoint", "/o/authorize/"),
        ("token_endpoint", "/o/token/"),
        ("userinfo_endpoint", "/o/userinfo/"),
        ("jwks_uri", "/o/.well-known/jwks.json"),
        ("revocation_endpoint", "/o/revoke_token/"),
        ("introspection_endpoint", "/o/introspect/"),
        ("end_session_endpoint", "/o/logout/"),
    ]:
        assert config[key] == f"https://id.example.com{path}", key


def test_without_an_issuer_the_urls_are_on_the_requests_host(base_url):
    config = requests.get(f"{base_url}/o/.well-known/openid-configuration").json()
    assert config["issuer"] == f"{base_url}/o"
    assert config["token_endpoint"] == f"{base_url}/o/token/"


def test_the_key_set_may_be_served_stale_while_revalidating_or_on_error_as_dot(base_url, settings):
    provider_settings(settings, OIDC_JWKS_MAX_AGE_SECONDS=1800)
    response = requests.get(f"{base_url}/o/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == (
        "public, max-age=1800, stale-while-revalidate=1800, stale-if-error=1800"
    )
