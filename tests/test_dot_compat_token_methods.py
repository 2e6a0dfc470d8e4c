"""The bearer check consults the access token model's ``is_valid()``, as django-oauth-toolkit does,
so a project's override on its (swapped) model takes effect."""

from __future__ import annotations

import pytest
import requests

from oauth_provider.models import get_access_token_model

from .factories import make_access_token
from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
    make_staff_user,
)


def test_an_is_valid_override_refusing_tokens_is_obeyed(base_url, monkeypatch):
    token = make_access_token(make_client().application, make_staff_user(), scope="read")
    headers = {"Authorization": f"Bearer {token.token}"}
    assert requests.get(f"{base_url}/api/read/", headers=headers).status_code == 200

    # What a project's AccessToken subclass overriding is_valid() does, e.g. to pin tokens to an IP.
    monkeypatch.setattr(get_access_token_model(), "is_valid", lambda self, scopes=None: False)

    assert requests.get(f"{base_url}/api/read/", headers=headers).status_code == 401


def test_an_is_valid_override_extending_scopes_is_obeyed(base_url, monkeypatch):
    token = make_access_token(make_client().application, make_staff_user(), scope="write")
    headers = {"Authorization": f"Bearer {token.token}"}
    assert requests.get(f"{base_url}/api/read/", headers=headers).status_code == 403

    model = get_access_token_model()
    original = model.is_valid
    # An override granting read to every write token.
    monkeypatch.setattr(
        model, "is_valid", lambda self, scopes=None: original(self, [s for s in scopes or [] if s != "read"])
    )

    assert requests.get(f"{base_url}/api/read/", headers=headers).status_code == 200


@pytest.mark.django_db
def test_the_validator_takes_a_stand_in_request_without_headers_as_dots_tests_pass_one():
    """DOT's own tests hand the validator ``MagicMock(wraps=Request)``: the class, no headers."""
    from unittest import mock

    from oauthlib.common import Request

    from oauth_provider.oauth2_validators import OAuth2Validator

    from .factories import make_application, make_user

    token = make_access_token(make_application(), make_user(), scope="read")
    stand_in = mock.MagicMock(wraps=Request)

    assert OAuth2Validator().validate_bearer_token(token.token, ["read"], stand_in)
    assert stand_in.access_token == token
    assert not OAuth2Validator().validate_bearer_token("unknown", ["read"], mock.MagicMock(wraps=Request))
