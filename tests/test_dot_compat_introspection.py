"""Token introspection answers as django-oauth-toolkit does where RFC 7662 leaves it open."""

from __future__ import annotations

import requests
from requests.auth import HTTPBasicAuth

from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
)


def test_introspection_without_a_token_parameter_is_400_invalid_request(base_url):
    client = make_client(authorization_grant_type="client-credentials")
    auth = HTTPBasicAuth(client.client_id, client.secret)
    for response in (
        requests.post(f"{base_url}/o/introspect/", data={}, auth=auth),
        requests.get(f"{base_url}/o/introspect/", auth=auth),
    ):
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_request",
            "error_description": "Token parameter is missing.",
        }
        assert response.headers["Cache-Control"] == "no-store"


def test_an_unknown_token_is_inactive_not_an_error(base_url):
    client = make_client(authorization_grant_type="client-credentials")
    response = requests.post(
        f"{base_url}/o/introspect/",
        data={"token": "not-a-token"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )
    assert response.status_code == 200
    assert response.json() == {"active": False}
