"""The hot path makes one round trip to the shared cache (Redis) per request.

Each request is sent twice through Django's full stack, with the cache on the test process's real
Redis database as ``CACHE_URL`` configures it, and the commands the second sends on the wire are
counted by a wrapper around redis-py's connection (what a ``redis-cli MONITOR`` would show). The
rate-limit counters, read before any client secret is checked, and the revocation watermarks'
generation are read in one ``MGET``; a request checking several tokens reads the generation once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis.connection
from django.core.cache import caches
from django.test import Client

from oauth_provider.models import RevocationWatermark
from oauth_provider.revocation import RevocationTarget, record_watermark
from oauth_provider.watermark_cache import GENERATION_KEY
from tests.factories import make_access_token, make_grant, make_refresh_token, make_user
from tests.test_endpoints_support import REDIRECT_URI, URLCONF, make_client
from tests.test_hotpath_queries import shared_cache_settings


class RedisCommands:
    """Counts what this process sends to Redis while :meth:`measure` runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.round_trips = 0
        self.commands: list[str] = []
        self.counting = False
        connection = redis.connection.AbstractConnection
        send_packed, send, pack_commands = (
            connection.send_packed_command,
            connection.send_command,
            connection.pack_commands,
        )

        def counting_send_packed(conn, command, check_health=True):
            if self.counting:  # one write to the socket: a command, or a whole pipeline
                self.round_trips += 1
            return send_packed(conn, command, check_health)

        def counting_send(conn, *args, **kwargs):
            if self.counting:
                self.commands.append(str(args[0]).upper())
            return send(conn, *args, **kwargs)

        def counting_pack_commands(conn, commands):
            if self.counting:
                self.commands.extend(str(command[0]).upper() for command in commands)
            return pack_commands(conn, commands)

        monkeypatch.setattr(connection, "send_packed_command", counting_send_packed)
        monkeypatch.setattr(connection, "send_command", counting_send)
        monkeypatch.setattr(connection, "pack_commands", counting_pack_commands)

    def measure(self, send: Callable[[], object]):
        """Send once to warm the process (connection, watermark copy), then count the second."""
        send()
        self.round_trips, self.commands, self.counting = 0, [], True
        try:
            return send()
        finally:
            self.counting = False


def basic_auth(client) -> str:
    return "Basic " + base64.b64encode(f"{client.client_id}:{client.secret}".encode()).decode()


@pytest.fixture
def world(settings, monkeypatch, broker_url, request):
    """A resource server, a client, a user's token, and each hot-path request, on a Redis cache."""
    settings.ROOT_URLCONF = URLCONF
    settings.CACHES = shared_cache_settings(broker_url, f"commands-{request.node.name}")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    user = make_user("alice")
    resource_server = make_client(authorization_grant_type="client-credentials", hash_client_secret=False)
    app = make_client(hash_client_secret=False)
    token = make_access_token(app.application, user, scope="openid read write introspection")
    client = Client()

    def authorization_code():
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        grant = make_grant(
            app.application,
            user,
            scope="read",
            redirect_uri=REDIRECT_URI,
            code_challenge=challenge.decode(),
            code_challenge_method="S256",
        )
        data = {
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        return client.post("/o/token/", data, HTTP_AUTHORIZATION=basic_auth(app))

    def refresh_token():
        refresh = make_refresh_token(
            app.application, user, access_token=make_access_token(app.application, user, scope="read")
        )
        data = {"grant_type": "refresh_token", "refresh_token": refresh.token}
        return client.post("/o/token/", data, HTTP_AUTHORIZATION=basic_auth(app))

    send = {
        "introspect_basic": lambda: client.post(
            "/o/introspect/", {"token": token.token}, HTTP_AUTHORIZATION=basic_auth(resource_server)
        ),
        "introspect_bearer": lambda: client.post(
            "/o/introspect/", {"token": token.token}, HTTP_AUTHORIZATION=f"Bearer {token.token}"
        ),
        "client_credentials": lambda: client.post(
            "/o/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic_auth(resource_server)
        ),
        "authorization_code": authorization_code,
        "refresh_token": refresh_token,
        "protected_resource": lambda: client.get("/api/whoami/", HTTP_AUTHORIZATION=f"Bearer {token.token}"),
    }
    return token, send, RedisCommands(monkeypatch)


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
}


@pytest.mark.django_db
@pytest.mark.parametrize("name", EXPECTED)
def test_a_hot_path_request_makes_one_cache_round_trip(world, name):
    token, send, redis_commands = world
    response = redis_commands.measure(send[name])
    assert response.status_code == 200, response.content
    assert redis_commands.commands == EXPECTED[name]
    assert redis_commands.round_trips == 1


@pytest.mark.django_db(transaction=True)
def test_a_revocation_is_in_force_on_the_request_after_the_one_that_read_the_generation(world):
    token, send, redis_commands = world
    assert redis_commands.measure(send["introspect_basic"]).json()["active"] is True
    record_watermark(RevocationTarget(user_id=token.user_id))
    assert send["introspect_basic"]().json() == {"active": False}
    assert send["introspect_bearer"]().status_code == 401  # the caller's own token is revoked too


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["introspect_basic", "introspect_bearer"])
def test_a_generation_set_by_another_process_is_read_by_the_next_request(world, name):
    """Another process revokes: a watermark row this process got no signal of, then a new
    generation in Redis. The request before read the old one (in its MGET or GET); the next one
    must not reuse it."""
    token, send, redis_commands = world
    record_watermark(RevocationTarget(user_id=token.user_id), at=token.created - timedelta(hours=1))
    assert redis_commands.measure(send[name]).status_code == 200
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
    token, send, redis_commands = world
    settings.CACHES = {
        **settings.CACHES,
        "limits": {
            **settings.CACHES["default"],
            "KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"] + "-rl",
        },
    }
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "RATE_LIMIT_CACHE": "limits"}
    response = redis_commands.measure(send["introspect_basic"])
    assert response.json()["active"] is True
    assert redis_commands.commands == ["MGET", "GET"]
    record_watermark(RevocationTarget(application_id=token.application_id))
    assert send["introspect_basic"]().json() == {"active": False}
