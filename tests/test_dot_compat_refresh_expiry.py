"""``REFRESH_TOKEN_EXPIRE_SECONDS`` read as django-oauth-toolkit reads it: 0 and None mean "never"."""

from __future__ import annotations

from io import StringIO

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from requests.auth import HTTPBasicAuth

from oauth_provider.models import refresh_token_expire_timedelta

from .factories import make_access_token, make_refresh_token
from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
    make_staff_user,
    provider_settings,
)


def refresh_after_the_access_token_expired(base_url: str) -> requests.Response:
    user = make_staff_user()
    client = make_client()
    access = make_access_token(client.application, user, expires_in=-3600)
    refresh = make_refresh_token(client.application, user, access_token=access)
    return requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": refresh.token},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )


@pytest.mark.parametrize("value", [0, None])
def test_refresh_tokens_never_expire_with_0_or_none(base_url, settings, value):
    provider_settings(settings, REFRESH_TOKEN_EXPIRE_SECONDS=value)
    response = refresh_after_the_access_token_expired(base_url)
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_a_refresh_token_past_its_lifetime_is_refused(base_url, settings):
    provider_settings(settings, REFRESH_TOKEN_EXPIRE_SECONDS=60)
    response = refresh_after_the_access_token_expired(base_url)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("value", [10**20, -1, "A"])
def test_a_value_out_of_range_is_a_clear_configuration_error(settings, value):
    provider_settings(settings, REFRESH_TOKEN_EXPIRE_SECONDS=value)
    with pytest.raises(ImproperlyConfigured, match="REFRESH_TOKEN_EXPIRE_SECONDS"):
        refresh_token_expire_timedelta()


@pytest.mark.django_db
@pytest.mark.parametrize("value", [0, None])
def test_cleartokens_warns_that_refresh_tokens_never_expire(settings, value):
    provider_settings(settings, REFRESH_TOKEN_EXPIRE_SECONDS=value)
    stderr = StringIO()
    call_command("cleartokens", stdout=StringIO(), stderr=stderr)
    assert "REFRESH_TOKEN_EXPIRE_SECONDS is not set (or is 0)" in stderr.getvalue()


@pytest.mark.django_db
def test_cleartokens_does_not_warn_when_refresh_tokens_expire(settings):
    provider_settings(settings, REFRESH_TOKEN_EXPIRE_SECONDS=3600)
    stderr = StringIO()
    call_command("cleartokens", stdout=StringIO(), stderr=stderr)
    assert "REFRESH_TOKEN_EXPIRE_SECONDS" not in stderr.getvalue()
