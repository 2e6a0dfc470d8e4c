"""django-oauth-toolkit's ``validators`` and ``utils`` modules, and application checks built on them."""

from __future__ import annotations

import pytest
import requests
from django.core.exceptions import ValidationError

from oauth_provider import utils
from oauth_provider.models import get_application_model
from oauth_provider.validators import AllowedURIValidator

from .factories import make_access_token
from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
    make_staff_user,
    provider_settings,
)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bEaReR abc", "abc"),
        ("Bearer \t abc  ", "abc"),
        ("BearerX abc", None),
        ("Bearer abc extra", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_bearer_token(header, token):
    assert utils.parse_bearer_token(header) == token


def test_a_bearer_header_with_two_values_authenticates_nothing(base_url, settings):
    provider_settings(settings, RESOURCE_SERVER_BEARER_CHALLENGE=True)
    client = make_client()
    token = make_access_token(client.application, make_staff_user(), scope="read")
    headers = {"Authorization": f"Bearer {token.token} {token.token}"}

    assert requests.get(f"{base_url}/api/read/", headers=headers).status_code == 401
    ok = requests.get(f"{base_url}/api/read/", headers={"Authorization": f"Bearer {token.token}"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("uri", "cause"),
    [
        ("ftp://example.com/cb", "invalid_scheme"),
        ("https://example.com/cb?x=1", "query string not allowed"),
        ("https://example.com/cb#f", "fragment not allowed"),
        ("https:/example.com", "missing host"),
        ("https://*.example.com/cb", "Enter a valid URL"),
    ],
)
def test_allowed_uri_validator_names_the_cause(uri, cause):
    validator = AllowedURIValidator(["https"], "redirect uri", allow_path=True)
    with pytest.raises(ValidationError) as raised:
        validator(uri)
    assert cause in str(raised.value)
    assert uri in str(raised.value)


def test_allowed_uri_validator_accepts_private_use_schemes_and_wildcards_when_asked():
    AllowedURIValidator(["com.example.app"], "redirect uri", allow_path=True)("com.example.app:/cb")
    wildcard = AllowedURIValidator(["https"], "origin", allow_hostname_wildcard=True)
    wildcard("https://*.example.com")
    wildcard("https://*--site.netlify.app")
    for bad in ("https://*.com", "https://a.*.example.com", "https://**.example.com"):
        with pytest.raises(ValidationError):
            wildcard(bad)


@pytest.mark.django_db
def test_application_clean_reports_each_bad_uri_on_its_field(settings):
    provider_settings(settings, ALLOW_URI_WILDCARDS=True)
    application = get_application_model()(
        name="app",
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris="https://*.example.com/cb https://*/cb invalid",
        allowed_origins="http://example.com",
    )
    with pytest.raises(ValidationError) as raised:
        application.clean()
    errors = raised.value.message_dict
    assert set(errors) == {"redirect_uris", "allowed_origins"}
    assert len(errors["redirect_uris"]) == 2
    assert "top level or second level domain" in errors["redirect_uris"][0]
    assert "invalid_scheme: invalid" in errors["redirect_uris"][1]
