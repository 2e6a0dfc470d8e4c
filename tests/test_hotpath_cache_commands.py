"""The hot path makes one round trip to the shared cache (Redis) per request.

Each request is sent twice through Django's full stack, with the cache on the test process's real
Redis database as ``CACHE_URL`` configures it, and the commands the second sends on the wire are
counted by a wrapper around redis-py's connection (``tests/hotpath_counts.py``; what a
``redis-cli MONITOR`` would show). The rate-limit counters, read before any client secret is
checked, and the revocation watermarks' generation are read in one ``MGET``; a request checking
several tokens reads the generation once.
"""

from __future__ import annotations

import contextvars
from datetime import timedelta

import pytest
from django.core.cache import caches

from oauth_provider.models import RevocationWatermark
from oauth_provider.revocation import RevocationTarget, record_watermark
from oauth_provider.watermark_cache import (
    GENERATION_KEY,
    generation_key_to_read_with,
    generation_read,
    request_scope,
)
from tests.hotpath_counts import RedisCommands, hot_path_requests
from tests.test_endpoints_support import URLCONF
from tests.test_hotpath_queries import provider_models, shared_cache_settings


@pytest.fixture
def world(settings, monkeypatch, broker_url, request):
    """The hot path's requests (``tests/hotpath_counts.py``) on a Redis cache, and a counter."""
    settings.ROOT_URLCONF = URLCONF
    settings.CACHES = shared_cache_settings(broker_url, f"commands-{request.node.name}")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    token, prepare = hot_path_requests(provider_models())
    redis_commands = RedisCommands().install(monkeypatch.setattr)

    def measure(name: str):
        """The second of two requests, counted."""
        prepare[name]()()
        return redis_commands.measure(prepare[name]())

    send = {name: (lambda name=name: prepare[name]()()) for name in prepare}
    return token, send, measure, redis_commands


#: Before: introspection by Basic sent MGET (rate limit) and GET (generation); by bearer three GETs
#: (the caller's token checked by the middleware and the view, then the introspected token); the
#: code and refresh grants MGET and GET.
EXPECTED = {
    "introspect_basic": ["MGET"],  # the rate-limit counters and the generation
    "introspect_bearer": ["GET"],  # the generation, once for both tokens
    "client_credentials": ["MGET"],
    "authorization_code": ["MGET"],
    "refresh_token": ["MGET"],
    "protected_resource": ["GET"],
    "userinfo": ["GET"],
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", EXPECTED)
def test_a_hot_path_request_makes_one_cache_round_trip(world, name):
    token, send, measure, redis_commands = world
    response = measure(name)
    assert response.status_code == 200, response.content
    assert redis_commands.commands == EXPECTED[name]
    assert redis_commands.round_trips == 1


@pytest.mark.django_db(transaction=True)
def test_a_revocation_is_in_force_on_the_request_after_the_one_that_read_the_generation(world):
    token, send, measure, redis_commands = world
    assert measure("introspect_basic").json()["active"] is True
    record_watermark(RevocationTarget(user_id=token.user_id))
    assert send["introspect_basic"]().json() == {"active": False}
    assert send["introspect_bearer"]().status_code == 401  # the caller's own token is revoked too


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["introspect_basic", "introspect_bearer"])
def test_a_generation_set_by_another_process_is_read_by_the_next_request(world, name):
    """Another process revokes: a watermark row this process got no signal of, then a new
    generation in Redis. The request before read the old one (in its MGET or GET); the next one
    must not reuse it."""
    token, send, measure, redis_commands = world
    record_watermark(RevocationTarget(user_id=token.user_id), at=token.created - timedelta(hours=1))
    assert measure(name).status_code == 200
    RevocationWatermark.objects.filter(user_id=token.user_id).update(
        not_before=token.created + timedelta(seconds=1)
    )
    if name == "introspect_basic":
        assert send[name]().json()["active"] is True  # this process's copy: nobody said it changed
    caches["default"].set(GENERATION_KEY, "set-by-another-process", timeout=None)
    response = send[name]()
    if name == "introspect_basic":
        assert response.json() == {"active": False}
    else:
        assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_rate_limit_and_watermarks_in_different_caches_are_read_apart(world, settings, broker_url):
    token, send, measure, redis_commands = world
    settings.CACHES = {
        **settings.CACHES,
        "limits": {
            **settings.CACHES["default"],
            "KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"] + "-rl",
        },
    }
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "RATE_LIMIT_CACHE": "limits"}
    response = measure("introspect_basic")
    assert response.json()["active"] is True
    assert redis_commands.commands == ["MGET", "GET"]
    record_watermark(RevocationTarget(application_id=token.application_id))
    assert send["introspect_basic"]().json() == {"active": False}


@pytest.mark.django_db
def test_requests_interleaving_on_one_thread_each_read_their_own_generation(world):
    """Under ASGI the sync code of several requests runs, interleaved, on one thread: what one
    request read must not stand in for another's read."""
    first, second = contextvars.copy_context(), contextvars.copy_context()
    scope_of_first, scope_of_second = request_scope(), request_scope()
    first.run(scope_of_first.__enter__)
    first.run(generation_read, "read-by-the-first")
    second.run(scope_of_second.__enter__)
    assert second.run(generation_key_to_read_with, "default") == GENERATION_KEY
    first.run(scope_of_first.__exit__, None, None, None)
    assert second.run(generation_key_to_read_with, "default") == GENERATION_KEY
    second.run(scope_of_second.__exit__, None, None, None)
    assert generation_key_to_read_with("default") is None  # outside a request nothing is kept
