"""OpenID Connect claims as django-oauth-toolkit: only ``sub`` by default, and DOT's two forms of
``get_additional_claims`` (values for a request, or callables declared without one)."""

from __future__ import annotations

import requests

from oauth_provider.oauth2_validators import OAuth2Validator

from .test_endpoints_oidc import openid_login
from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
    provider_settings,
)


class CallableClaimsValidator(OAuth2Validator):
    def get_additional_claims(self):
        return {"email": lambda request: request.user.email, "nickname": lambda request: "nick"}


class RequestClaimsValidator(OAuth2Validator):
    oidc_claim_scope = None  # every claim, whatever the scopes

    def get_additional_claims(self, request):
        return {"username": request.user.get_username()}


def userinfo(base_url: str, scope=("openid", "read")) -> tuple[dict, object]:
    token, _nonce, user = openid_login(base_url, make_client(algorithm="RS256"), scope=scope)
    response = requests.get(
        f"{base_url}/o/userinfo/", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert response.status_code == 200, response.text
    return response.json(), user


def discovery_claims(base_url: str) -> list[str]:
    return requests.get(f"{base_url}/o/.well-known/openid-configuration").json()["claims_supported"]


def test_by_default_only_sub_is_released_and_advertised(base_url):
    info, user = userinfo(base_url)
    assert info == {"sub": str(user.pk)}
    assert discovery_claims(base_url) == ["sub"]


def test_callable_claims_are_released_per_scope_and_advertised(base_url, settings):
    provider_settings(
        settings,
        OAUTH2_VALIDATOR_CLASS=f"{__name__}.CallableClaimsValidator",
        ALWAYS_RELOAD_OAUTHLIB_CORE=True,
        SCOPES={**settings.OAUTH2_PROVIDER["SCOPES"], "email": "Your email address"},
    )
    assert discovery_claims(base_url) == ["sub", "email", "nickname"]

    info, user = userinfo(base_url, scope=("openid", "email"))
    # email is in oidc_claim_scope under "email"; nickname is mapped to no scope, so not released.
    assert info == {"sub": str(user.pk), "email": user.email}


def test_request_claims_are_released_without_being_advertised(base_url, settings):
    provider_settings(
        settings,
        OAUTH2_VALIDATOR_CLASS=f"{__name__}.RequestClaimsValidator",
        ALWAYS_RELOAD_OAUTHLIB_CORE=True,
    )
    info, user = userinfo(base_url)
    assert info == {"sub": str(user.pk), "username": user.get_username()}
    assert discovery_claims(base_url) == ["sub"]


def test_a_naive_last_login_is_read_in_time_zone_as_django_keeps_it_without_use_tz(settings):
    from datetime import datetime
    from unittest import mock
    from zoneinfo import ZoneInfo

    from django.test import RequestFactory
    from oauthlib.common import Request

    from oauth_provider.oauth2_validators import OAuth2Validator

    settings.USE_TZ = False
    settings.TIME_ZONE = "Europe/Rome"
    request = Request("/", headers=RequestFactory().get("/").META)
    request.scopes = ["openid"]
    request.client = mock.MagicMock()
    request.user = mock.MagicMock(pk=1, last_login=datetime(2026, 1, 1, 12, 0, 0))

    claims, _expires = OAuth2Validator().get_id_token_dictionary(None, None, request)

    assert claims["auth_time"] == int(datetime(2026, 1, 1, 12, 0, tzinfo=ZoneInfo("Europe/Rome")).timestamp())
