"""Failed client authentications and password checks are rate limited per address and per client.

The attacks run over HTTP against the live server, with the counters in the suite's Redis through
Django's ``RedisCache``, as in production.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from django.contrib.auth import get_user_model
from requests.auth import HTTPBasicAuth

from oauth_provider.models import get_access_token_model

from .test_endpoints_support import (
    PASSWORD,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
    provider_settings,
)


@pytest.fixture
def redis_cache(settings, broker_url, redis_client):
    """``CACHES`` on the suite's Redis, under a prefix of this test; its keys are removed after."""
    prefix = f"ratelimit-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": broker_url,
            "KEY_PREFIX": prefix,
        }
    }
    yield prefix
    for key in redis_client.scan_iter(f"{prefix}:*"):
        redis_client.delete(key)


def client_credentials(base_url: str, client_id: str, secret: str, **headers) -> requests.Response:
    return requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "client_credentials"},
        auth=HTTPBasicAuth(client_id, secret),
        headers=headers,
    )


def assert_rate_limited(response: requests.Response, window: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "too_many_requests"
    assert 1 <= int(response.headers["Retry-After"]) <= window


def cc_client():
    return make_client(authorization_grant_type="client-credentials", redirect_uris="")


def test_wrong_secrets_from_one_address_are_answered_429_with_retry_after(
    base_url, settings, redis_cache, redis_client
):
    provider_settings(
        settings,
        RATE_LIMIT_FAILURES_PER_ADDRESS=3,
        RATE_LIMIT_FAILURES_PER_CLIENT=100,
        RATE_LIMIT_WINDOW_SECONDS=600,
    )
    victim, other = cc_client(), cc_client()

    guesses = [client_credentials(base_url, victim.client_id, f"guess-{i}") for i in range(3)]
    assert [r.status_code for r in guesses] == [401, 401, 401]

    # The address is spent: even the right secret, and another client, wait for the window to end.
    assert_rate_limited(client_credentials(base_url, victim.client_id, "guess-4"), 600)
    assert_rate_limited(client_credentials(base_url, victim.client_id, victim.secret), 600)
    assert_rate_limited(client_credentials(base_url, other.client_id, other.secret), 600)
    revoke = requests.post(
        f"{base_url}/o/revoke_token/", data={"token": "x"}, auth=HTTPBasicAuth(other.client_id, other.secret)
    )
    assert_rate_limited(revoke, 600)
    introspect = requests.post(
        f"{base_url}/o/introspect/", data={"token": "x"}, auth=HTTPBasicAuth(other.client_id, other.secret)
    )
    assert_rate_limited(introspect, 600)
    assert get_access_token_model().objects.count() == 0
    # The counts are in Redis, shared by every web process.
    assert list(redis_client.scan_iter(f"{redis_cache}:*"))


def test_wrong_secrets_for_one_client_are_limited_from_any_address(base_url, settings, redis_cache):
    provider_settings(
        settings,
        RATE_LIMIT_FAILURES_PER_ADDRESS=100,
        RATE_LIMIT_FAILURES_PER_CLIENT=3,
        RATE_LIMIT_ADDRESS_HEADER="HTTP_X_FORWARDED_FOR",
    )
    victim, bystander = cc_client(), cc_client()

    for i in range(3):
        response = client_credentials(
            base_url, victim.client_id, f"guess-{i}", **{"X-Forwarded-For": f"198.51.100.{i}"}
        )
        assert response.status_code == 401

    elsewhere = {"X-Forwarded-For": "203.0.113.9"}
    assert_rate_limited(client_credentials(base_url, victim.client_id, "guess-9", **elsewhere), 300)
    # Other clients from the same addresses are not affected.
    assert client_credentials(base_url, bystander.client_id, bystander.secret, **elsewhere).status_code == 200


def test_a_forged_forwarded_header_does_not_escape_the_limit_by_default(base_url, settings, redis_cache):
    provider_settings(settings, RATE_LIMIT_FAILURES_PER_ADDRESS=2, RATE_LIMIT_FAILURES_PER_CLIENT=100)
    clients = [cc_client() for _ in range(3)]

    statuses = [
        client_credentials(base_url, c.client_id, "wrong", **{"X-Forwarded-For": f"192.0.2.{i}"}).status_code
        for i, c in enumerate(clients)
    ]

    assert statuses == [401, 401, 429]


def test_behind_proxies_the_address_is_the_one_the_outermost_trusted_proxy_saw(
    base_url, settings, redis_cache
):
    provider_settings(
        settings,
        RATE_LIMIT_FAILURES_PER_ADDRESS=2,
        RATE_LIMIT_FAILURES_PER_CLIENT=100,
        RATE_LIMIT_ADDRESS_HEADER="HTTP_X_FORWARDED_FOR",
        RATE_LIMIT_TRUSTED_PROXIES=2,
    )
    clients = [cc_client() for _ in range(3)]

    # The attacker forges the leftmost entries; the two proxies append the real hops.
    statuses = [
        client_credentials(
            base_url, c.client_id, "wrong", **{"X-Forwarded-For": f"192.0.2.{i}, 198.51.100.7, 10.0.0.2"}
        ).status_code
        for i, c in enumerate(clients)
    ]

    assert statuses == [401, 401, 429]


def test_wrong_passwords_at_the_password_grant_are_limited(base_url, settings, redis_cache):
    provider_settings(settings, RATE_LIMIT_FAILURES_PER_ADDRESS=3, RATE_LIMIT_FAILURES_PER_CLIENT=100)
    user = get_user_model().objects.create_user(username="bob", password=PASSWORD)
    client = make_client(authorization_grant_type="password", redirect_uris="")

    def login(password: str) -> requests.Response:
        return requests.post(
            f"{base_url}/o/token/",
            data={"grant_type": "password", "username": user.username, "password": password},
            auth=HTTPBasicAuth(client.client_id, client.secret),
        )

    assert [login(f"guess-{i}").status_code for i in range(3)] == [400, 400, 400]
    assert_rate_limited(login(PASSWORD), 300)
    assert get_access_token_model().objects.count() == 0


def test_the_limit_can_be_switched_off(base_url, settings, redis_cache):
    provider_settings(settings, RATE_LIMIT_FAILURES_PER_ADDRESS=None, RATE_LIMIT_FAILURES_PER_CLIENT=0)
    client = cc_client()

    statuses = {client_credentials(base_url, client.client_id, f"guess-{i}").status_code for i in range(4)}

    assert statuses == {401}
    assert client_credentials(base_url, client.client_id, client.secret).status_code == 200


def test_the_limit_is_on_by_default(base_url, redis_cache):
    client = cc_client()

    statuses = [client_credentials(base_url, client.client_id, f"guess-{i}").status_code for i in range(21)]

    assert statuses == [401] * 20 + [429]
