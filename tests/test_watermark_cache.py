"""A revocation is in force on every process at once, though each process keeps the watermarks.

The copy a process keeps (``oauth_provider.watermark_cache``) is used only while the generation in
the shared cache is the one it was read under; every write of a watermark sets a new one on commit.
These tests revoke while a process holds a copy that says "no watermark", and check the very next
request is refused: in the writing process, in another gunicorn process, after writes that send no
signals, and with the cache down.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
import redis
import requests
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from config import run
from config.embedded_redis import record_broker_url
from oauth_provider.models import RevocationWatermark
from oauth_provider.revocation import RevocationTarget, is_revoked_by_watermark, record_watermark
from oauth_provider.watermark_cache import watermarks_changed
from tests.factories import make_access_token, make_user
from tests.gunicorn_server import Gunicorn
from tests.test_dispatch_api import ALL, staff
from tests.test_endpoints_support import URLCONF, make_client
from tests.test_hotpath_queries import shared_cache_settings


def basic_auth(client) -> str:
    return "Basic " + base64.b64encode(f"{client.client_id}:{client.secret}".encode()).decode()


@pytest.fixture
def world(settings, monkeypatch, broker_url, request):
    """A resource server and a token of the "leaky" application, on a shared Redis cache."""
    settings.ROOT_URLCONF = URLCONF
    settings.CACHES = shared_cache_settings(broker_url, f"watermarks-{request.node.name}")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    resource_server = make_client(authorization_grant_type="client-credentials", hash_client_secret=False)
    leaky = make_client(name="leaky").application
    token = make_access_token(leaky, make_user("alice"), scope="read")
    client = Client()

    def introspect() -> dict:
        response = client.post(
            "/o/introspect/", {"token": token.token}, HTTP_AUTHORIZATION=basic_auth(resource_server)
        )
        assert response.status_code == 200
        return response.json()

    return token, introspect


def held(introspect) -> None:
    """Introspect twice: the second answer comes from this process's copy of the watermarks."""
    assert introspect()["active"] is True
    with CaptureQueriesContext(connection) as queries:
        assert introspect()["active"] is True
    assert "revocationwatermark" not in " ".join(q["sql"] for q in queries.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_a_revocation_is_in_force_at_once_in_the_process_that_wrote_it(world):
    token, introspect = world
    held(introspect)
    record_watermark(RevocationTarget(application_id=token.application_id))
    assert introspect() == {"active": False}


@pytest.mark.django_db(transaction=True)
def test_a_watermark_written_in_an_open_transaction_is_seen_by_that_transaction(world):
    token, introspect = world
    held(introspect)
    with transaction.atomic():
        record_watermark(RevocationTarget(user_id=token.user_id))
        assert is_revoked_by_watermark(token)
    assert introspect() == {"active": False}


@pytest.mark.django_db(transaction=True)
def test_a_deleted_watermark_stops_refusing_at_once(world):
    token, introspect = world
    mark = record_watermark(RevocationTarget(application_id=token.application_id))
    assert introspect() == {"active": False}
    assert introspect() == {"active": False}
    mark.delete()
    assert introspect()["active"] is True


@pytest.mark.django_db(transaction=True)
def test_a_write_without_signals_is_in_force_after_watermarks_changed_or_a_lost_generation(world, broker_url):
    token, introspect = world
    record_watermark(
        RevocationTarget(application_id=token.application_id), at=token.created - timedelta(hours=1)
    )
    held(introspect)
    later = RevocationWatermark.objects.filter(application_id=token.application_id)

    later.update(not_before=token.created + timedelta(seconds=1))  # no signal: the copy is stale
    assert introspect()["active"] is True
    watermarks_changed()
    assert introspect() == {"active": False}

    later.update(not_before=token.created - timedelta(hours=1))
    watermarks_changed()
    held(introspect)
    later.update(not_before=token.created + timedelta(seconds=1))
    # The cache restarted empty (or evicted the generation): a missing generation is a change.
    redis.Redis.from_url(broker_url).flushdb()
    assert introspect() == {"active": False}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_a_cache_that_is_down_means_reading_the_database_never_no_watermark(world, settings):
    token, introspect = world
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "watermarks": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        },
    }
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "REVOCATION_WATERMARK_CACHE": "watermarks"}
    assert introspect()["active"] is True
    with CaptureQueriesContext(connection) as queries:
        assert introspect()["active"] is True
    assert "revocationwatermark" in queries.captured_queries[-1]["sql"]
    record_watermark(RevocationTarget(application_id=token.application_id))
    assert introspect() == {"active": False}


@pytest.fixture
def two_web_processes(transactional_db, tmp_path, broker_url, redis_client):
    """Two gunicorn processes, one worker each, sharing the test database and a Redis cache."""
    cache_url = broker_url  # this test process's own Redis database
    redis.Redis.from_url(cache_url).flushdb()
    servers = []
    for name in ("a", "b"):
        server = Gunicorn(
            tmp_path / f"gunicorn-{name}.log",
            {"CACHE_URL": cache_url, "WEB_WORKERS": "1", **run.plain_http_defaults("127.0.0.1")},
        )
        servers.append(server)
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_a_revocation_through_one_process_is_in_force_on_another_at_once(two_web_processes):
    """The attack: a stolen token keeps working on the process that had looked it up before."""
    process_a, process_b = two_web_processes
    operator = staff("operator", *ALL)
    operator_token = make_access_token(make_client().application, operator, scope="maintenance")
    resource_server = make_client(authorization_grant_type="client-credentials", hash_client_secret=False)
    leaky = make_client(name="leaky").application
    stolen = make_access_token(leaky, make_user("victim"), scope="read")

    def introspect_on_b() -> dict:
        response = requests.post(
            f"{process_b.url}/o/introspect/",
            data={"token": stolen.token},
            headers={"Authorization": basic_auth(resource_server)},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()

    # B has looked the token up, twice: its copy of the watermarks says none covers it.
    assert introspect_on_b()["active"] is True
    assert introspect_on_b()["active"] is True

    revoked = requests.post(
        f"{process_a.url}/maintenance/api/runs/",
        json={"kind": "revoke", "params": {"application": leaky.client_id}},
        headers={"Authorization": f"Bearer {operator_token.token}"},
        timeout=30,
    )
    assert revoked.status_code == 202, revoked.text

    assert introspect_on_b() == {"active": False}


def test_a_command_from_another_shell_shares_the_run_commands_cache(tmp_path):
    """``revoke_tokens`` in another shell must reach the copies of the run command's processes."""
    record_broker_url("redis://127.0.0.1:6399/0", tmp_path)
    env = run.child_env({"DATA_DIR": str(tmp_path)})
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL", "DATABASE_URL"):
        env.pop(name, None)
    shown = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.CACHES['default'])"],
        cwd=run.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "RedisCache" in shown.stdout and "redis://127.0.0.1:6399/2" in shown.stdout
