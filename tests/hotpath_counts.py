"""What each hot-path request costs: database queries and Redis round trips, for this project or
django-oauth-toolkit 3.4.1. One implementation for ``tests/test_hotpath_queries.py``,
``tests/test_hotpath_cache_commands.py`` and the hot-path benchmark (``bench/hotpath/run.py``).

    python -m tests.hotpath_counts ours   # DJANGO_SETTINGS_MODULE=config.settings, CACHE_URL on Redis
    python -m tests.hotpath_counts dot    # DJANGO_SETTINGS_MODULE=tests.dot_project.settings

Run as a command, it migrates the database named by ``DATABASE_URL``, registers a resource server
and a client (secrets stored plain) and a user's token, sends each request twice through Django's
test client (this project: its own middleware and, for the protected resource, the URLconf of
``tests/test_endpoints_support.py``) and prints, as JSON, the queries of the second and the Redis
round trips it made (``{"queries": {...}, "redis_round_trips": {...}}``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

#: The requests, by name: introspection authenticated by HTTP Basic and by a bearer token, a
#: protected resource (``ProtectedResourceView``), userinfo, and the token endpoint's grants.
REQUESTS = (
    "introspect_basic",
    "introspect_bearer",
    "protected_resource",
    "userinfo",
    "client_credentials",
    "authorization_code",
    "refresh_token",
)
#: Where the client is registered; ``REDIRECT_URI`` of ``tests/test_endpoints_support.py``.
REDIRECT_URI = "http://localhost:8976/callback"

#: A request ready to be sent: its rows are created by the call that returned it.
Send = Callable[[], Any]


class RedisCommands:
    """Counts what this process sends to Redis while :meth:`counting` is on, by wrapping redis-py's
    connection (the commands a ``redis-cli MONITOR`` would show, and the writes to the socket)."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.commands: list[str] = []
        self.on = False

    def install(self, setattr_: Callable[[Any, str, Any], None] = setattr) -> RedisCommands:
        """Wrap the connection class; ``setattr_`` is ``monkeypatch.setattr`` in a test."""
        import redis.connection

        connection = redis.connection.AbstractConnection
        send_packed, send, pack_commands = (
            connection.send_packed_command,
            connection.send_command,
            connection.pack_commands,
        )

        def counting_send_packed(conn, command, check_health=True):
            if self.on:  # one write to the socket: a command, or a whole pipeline
                self.round_trips += 1
            return send_packed(conn, command, check_health)

        def counting_send(conn, *args, **kwargs):
            if self.on:
                self.commands.append(str(args[0]).upper())
            return send(conn, *args, **kwargs)

        def counting_pack_commands(conn, commands):
            if self.on:
                self.commands.extend(str(command[0]).upper() for command in commands)
            return pack_commands(conn, commands)

        setattr_(connection, "send_packed_command", counting_send_packed)
        setattr_(connection, "send_command", counting_send)
        setattr_(connection, "pack_commands", counting_pack_commands)
        return self

    def measure(self, send: Send) -> Any:
        self.round_trips, self.commands, self.on = 0, [], True
        try:
            return send()
        finally:
            self.on = False


def basic_auth(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def hot_path_requests(models: dict[str, Any]) -> tuple[Any, dict[str, Callable[[], Send]]]:
    """Register the clients and a user's token; return the token and, by request name, a function
    that creates what one request needs (a grant, a refresh token) and returns its sender."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    Application, AccessToken = models["Application"], models["AccessToken"]
    Grant, RefreshToken = models["Grant"], models["RefreshToken"]
    user = get_user_model().objects.create_user("alice", password=secrets.token_urlsafe(12))
    server_secret, client_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    resource_server = Application.objects.create(
        name="resource server",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=server_secret,
        hash_client_secret=False,
    )
    client_app = Application.objects.create(
        name="client",
        user=user,
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris=REDIRECT_URI,
        client_secret=client_secret,
        hash_client_secret=False,
    )

    def access_token(scope: str) -> Any:
        return AccessToken.objects.create(
            user=user,
            application=client_app,
            token=secrets.token_urlsafe(24),
            expires=timezone.now() + timedelta(hours=1),
            scope=scope,
        )

    token = access_token("openid read write introspection")
    server_basic = basic_auth(resource_server.client_id, server_secret)
    client_basic = basic_auth(client_app.client_id, client_secret)
    bearer = f"Bearer {token.token}"
    client = Client()

    def authorization_code() -> Send:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        grant = Grant.objects.create(
            application=client_app,
            user=user,
            code=secrets.token_urlsafe(16),
            expires=timezone.now() + timedelta(minutes=1),
            redirect_uri=REDIRECT_URI,
            scope="read",
            code_challenge=challenge.decode(),
            code_challenge_method="S256",
        )
        data = {
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        return lambda: client.post("/o/token/", data, HTTP_AUTHORIZATION=client_basic)

    def refresh_token() -> Send:
        refresh = RefreshToken.objects.create(
            user=user,
            application=client_app,
            token=secrets.token_urlsafe(24),
            access_token=access_token("read"),
        )
        data = {"grant_type": "refresh_token", "refresh_token": refresh.token}
        return lambda: client.post("/o/token/", data, HTTP_AUTHORIZATION=client_basic)

    prepare = {
        "introspect_basic": lambda: (
            lambda: client.post("/o/introspect/", {"token": token.token}, HTTP_AUTHORIZATION=server_basic)
        ),
        "introspect_bearer": lambda: (
            lambda: client.post("/o/introspect/", {"token": token.token}, HTTP_AUTHORIZATION=bearer)
        ),
        "protected_resource": lambda: lambda: client.get("/api/whoami/", HTTP_AUTHORIZATION=bearer),
        "userinfo": lambda: lambda: client.get("/o/userinfo/", HTTP_AUTHORIZATION=bearer),
        "client_credentials": lambda: (
            lambda: client.post(
                "/o/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=server_basic
            )
        ),
        "authorization_code": authorization_code,
        "refresh_token": refresh_token,
    }
    return token, prepare


#: Transaction control, which some backends send as statements (SQLite's BEGIN) and others not.
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def captured(
    prepare: Callable[[], Send], redis_commands: RedisCommands | None = None
) -> tuple[list[str], Any]:
    """Send a request twice (the first warms the process: connections, watermark copy, verified
    secret) and return the SQL of the second; Redis is counted by ``redis_commands``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    prepare()()
    send = prepare()
    with CaptureQueriesContext(connection) as queries:
        response = redis_commands.measure(send) if redis_commands else send()
    return [query["sql"] for query in queries.captured_queries], response


def count(prepare: Callable[[], Send], redis_commands: RedisCommands | None = None) -> tuple[int, Any]:
    """The queries of the second of two requests, as :func:`captured`."""
    sql, response = captured(prepare, redis_commands)
    return len(sql), response


def statements(sql: list[str]) -> list[str]:
    """``sql`` without transaction control."""
    return [query for query in sql if not query.upper().startswith(TRANSACTION_CONTROL)]


def main() -> None:
    project = sys.argv[1] if len(sys.argv) > 1 else ""
    if project not in ("ours", "dot"):
        raise SystemExit("usage: python -m tests.hotpath_counts ours|dot")
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    os.environ.setdefault(
        "DJANGO_SETTINGS_MODULE", "config.settings" if project == "ours" else "tests.dot_project.settings"
    )
    import django
    from django.conf import settings

    django.setup()
    from django.core.management import call_command

    if project == "ours":
        settings.ROOT_URLCONF = "tests.test_endpoints_support"
        settings.ALLOWED_HOSTS = ["testserver"]
        from oauth_provider import models as m

        models = {
            "Application": m.get_application_model(),
            "AccessToken": m.get_access_token_model(),
            "Grant": m.get_grant_model(),
            "RefreshToken": m.get_refresh_token_model(),
        }
    else:
        from oauth2_provider import models as m

        models = {
            "Application": m.Application,
            "AccessToken": m.AccessToken,
            "Grant": m.Grant,
            "RefreshToken": m.RefreshToken,
        }
    call_command("migrate", verbosity=0)
    _token, prepare = hot_path_requests(models)
    redis_commands = RedisCommands().install()
    queries, round_trips = {}, {}
    for name in REQUESTS:
        queries[name], response = count(prepare[name], redis_commands)
        if response.status_code != 200:
            raise SystemExit(f"{project} {name}: answered {response.status_code}: {response.content[:300]!r}")
        round_trips[name] = redis_commands.round_trips
    print(json.dumps({"queries": queries, "redis_round_trips": round_trips}))


if __name__ == "__main__":
    main()
