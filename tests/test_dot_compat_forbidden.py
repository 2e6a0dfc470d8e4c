"""Refused protected-resource requests: a bare 403 as django-oauth-toolkit, RFC 6750 as an opt-in.

``RESOURCE_SERVER_BEARER_CHALLENGE`` (off by default, on in this project's settings) chooses
between DOT's bare 403 and RFC 6750's 401 with a ``WWW-Authenticate`` challenge.
"""

from __future__ import annotations

import pytest
import requests

from .factories import make_access_token
from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
    make_staff_user,
    provider_settings,
)

PROTECTED = ["/api/whoami/", "/api/read/", "/o/introspect/"]


@pytest.fixture
def dot_answers(settings):
    provider_settings(settings, RESOURCE_SERVER_BEARER_CHALLENGE=False)


@pytest.mark.usefixtures("dot_answers")
@pytest.mark.parametrize("path", PROTECTED)
def test_without_credentials_the_answer_is_a_bare_403(base_url, path):
    response = requests.post(f"{base_url}{path}", data={"token": "x"}) if "introspect" in path else None
    response = response or requests.get(f"{base_url}{path}")
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers
    assert response.content == b""


@pytest.mark.usefixtures("dot_answers")
def test_an_invalid_or_underscoped_token_is_a_bare_403(base_url):
    user = make_staff_user()
    client = make_client()
    no_read = make_access_token(client.application, user, scope="write")
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {no_read.token}"}):
        response = requests.get(f"{base_url}/api/read/", headers=headers)
        assert response.status_code == 403
        assert "WWW-Authenticate" not in response.headers


@pytest.mark.usefixtures("dot_answers")
def test_a_good_token_still_reaches_the_view(base_url):
    user = make_staff_user()
    token = make_access_token(make_client().application, user, scope="read")
    response = requests.get(f"{base_url}/api/read/", headers={"Authorization": f"Bearer {token.token}"})
    assert response.status_code == 200


def test_opted_in_the_answer_is_rfc6750s_401_with_a_challenge(base_url, settings):
    provider_settings(settings, RESOURCE_SERVER_BEARER_CHALLENGE=True)
    response = requests.get(f"{base_url}/api/whoami/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    invalid = requests.get(f"{base_url}/api/whoami/", headers={"Authorization": "Bearer nope"})
    assert invalid.status_code == 401
    assert 'error="invalid_token"' in invalid.headers["WWW-Authenticate"]


@pytest.mark.usefixtures("dot_answers")
def test_userinfo_answers_rfc_6750_whatever_the_setting_as_dot(base_url, settings):
    provider_settings(settings, OIDC_ENABLED=True)
    user = make_staff_user()
    client = make_client()
    without_openid = make_access_token(client.application, user, scope="read")

    missing = requests.get(f"{base_url}/o/userinfo/")
    bad = requests.get(f"{base_url}/o/userinfo/", headers={"Authorization": "Bearer not-a-real-token"})
    underscoped = requests.get(
        f"{base_url}/o/userinfo/", headers={"Authorization": f"Bearer {without_openid.token}"}
    )

    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    assert underscoped.status_code == 403
    assert 'error="insufficient_scope"' in underscoped.headers["WWW-Authenticate"]
    for response in (missing, bad, underscoped):
        assert response.headers["Cache-Control"] == "no-store"
