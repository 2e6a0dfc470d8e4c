"""Client authentication as django-oauth-toolkit: a failed HTTP Basic header falls back to the body."""

from __future__ import annotations

import requests
from requests.auth import HTTPBasicAuth

from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
)


def token_request(base_url, **kwargs) -> requests.Response:
    return requests.post(f"{base_url}/o/token/", **kwargs)


def test_a_wrong_basic_header_falls_back_to_the_credentials_in_the_body(base_url):
    client = make_client(authorization_grant_type="client-credentials")
    response = token_request(
        base_url,
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.secret,
        },
        auth=HTTPBasicAuth(client.client_id, "not-the-secret"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_wrong_credentials_in_both_places_are_refused(base_url):
    client = make_client(authorization_grant_type="client-credentials")
    response = token_request(
        base_url,
        data={"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": "wrong"},
        auth=HTTPBasicAuth(client.client_id, "also-wrong"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_a_wrong_basic_header_alone_is_refused(base_url):
    client = make_client(authorization_grant_type="client-credentials")
    response = token_request(
        base_url, data={"grant_type": "client_credentials"}, auth=HTTPBasicAuth(client.client_id, "wrong")
    )
    assert response.status_code == 401


def test_basic_authentication_alone_still_works(base_url):
    client = make_client(authorization_grant_type="client-credentials")
    response = token_request(
        base_url,
        data={"grant_type": "client_credentials"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )
    assert response.status_code == 200
