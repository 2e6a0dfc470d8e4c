"""Shared fixtures: a real Redis broker and real Celery worker processes.

When ``CELERY_BROKER_URL`` is unset, the suite starts its own Redis server (the same embedded server
the run command uses) for the whole session. Workers are separate processes started with the
``celery`` command line against the test database, so what they do is what production does.

The suite runs in several processes (pytest-xdist, ``-n`` in the pytest settings). Each has its own
test database (pytest-django adds a ``_gw0``, ``_gw1``... suffix) and its own Redis: an embedded
server each, or, with ``CELERY_BROKER_URL`` given, the next database numbers of that server (``/12``
gives process ``gw0`` database 12 and ``gw1`` database 13), so no process takes another's messages.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.browser"]  # a real Chromium for the page tests

#: This process's place among pytest-xdist's processes ("gw0", "gw1"...); empty when it runs alone.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def redis_url_for_process(url: str, worker: str) -> str:
    """``url`` with its Redis database number moved up by the index of the xdist process ``worker``.

    Processes of one run must not share a Redis database: each flushes it between tests, and a
    worker started by one would take the tasks another dispatched against its own test database.
    """
    from urllib.parse import urlsplit, urlunsplit

    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    if not index:
        return url
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if parts.scheme not in ("redis", "rediss") or (path and not path.isdigit()):
        raise RuntimeError(f"cannot derive a Redis database for test process {worker} from {url}")
    return urlunsplit(parts._replace(path=f"/{int(path or 0) + index}"))


def _check_redis_database(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ResponseError as exc:
        database = client.connection_pool.connection_kwargs.get("db", 0)
        raise RuntimeError(
            f"test process {XDIST_WORKER} cannot use Redis database {database} ({exc}): give "
            "CELERY_BROKER_URL a lower database number, or run fewer processes (-n)"
        ) from exc
    finally:
        client.close()


if not os.environ.get("CELERY_BROKER_URL"):
    from config.embedded_redis import start_embedded_redis

    _redis = start_embedded_redis(Path(tempfile.mkdtemp(prefix="oauth-tests-redis-")))
    atexit.register(_redis.stop)
    os.environ["CELERY_BROKER_URL"] = _redis.url
    os.environ["CELERY_RESULT_BACKEND"] = _redis.url
    EMBEDDED_REDIS = _redis
else:
    EMBEDDED_REDIS = None
    if XDIST_WORKER:
        for _name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            if os.environ.get(_name):
                os.environ[_name] = redis_url_for_process(os.environ[_name], XDIST_WORKER)
        _check_redis_database(os.environ["CELERY_BROKER_URL"])
os.environ.setdefault("CELERY_RESULT_BACKEND", os.environ["CELERY_BROKER_URL"])


def _django_plugin_active(config) -> bool:
    """False in the installed-wheel run of the existing-project test, which has pytest alone: no
    pytest-django, and no settings of this project to change (its project runs in subprocesses)."""
    return config.pluginmanager.hasplugin("django")


@pytest.fixture(autouse=True, scope="session")
def plain_http_test_server(pytestconfig):
    """The in-process servers of the tests speak plain HTTP on loopback: no redirect to https and
    cookies a client sends back over HTTP. Production keeps the secure defaults of
    ``config/settings.py``; ``tests/test_transport_security.py`` holds them to that.

    Session-wide and autouse, so it is in force before the session's ``live_server`` starts:
    ``SecurityMiddleware`` reads these settings once, when the server loads its middleware.
    """
    if not _django_plugin_active(pytestconfig):
        yield
        return
    from django.test import override_settings

    plain_http = override_settings(
        SECURE_SSL_REDIRECT=False,
        SESSION_COOKIE_SECURE=False,
        CSRF_COOKIE_SECURE=False,
        SECURE_HSTS_SECONDS=0,
    )
    plain_http.enable()
    yield
    plain_http.disable()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until truthy; fail the test with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def broker_url() -> str:
    return os.environ["CELERY_BROKER_URL"]


@pytest.fixture(scope="session")
def celery_app(broker_url):
    from config.celery import app

    app.conf.broker_url = broker_url
    app.conf.result_backend = os.environ["CELERY_RESULT_BACKEND"]
    return app


@pytest.fixture
def redis_client(broker_url):
    import redis

    client = redis.Redis.from_url(broker_url)
    yield client
    client.close()


def database_url_for(settings_dict: dict, name: str | None = None) -> str:
    """A DATABASE_URL naming the database the test process uses right now (the test database),
    or, with ``name``, another database on the same server."""
    from urllib.parse import quote

    engine = settings_dict["ENGINE"]
    name = name or settings_dict["NAME"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{name}"
    schemes = {"postgresql": ("postgres", 5432), "mysql": ("mysql", 3306)}
    vendor = engine.rsplit(".", 1)[-1]
    if vendor not in schemes:
        raise RuntimeError(f"no worker support for database engine {engine}")
    scheme, default_port = schemes[vendor]
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or default_port
    return f"{scheme}://{auth}{host}:{port}/{name}"


def _server_sql(settings_dict: dict, statement: str) -> None:
    """Run one statement on the test database's server, outside any database (CREATE/DROP)."""
    host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT")
    if settings_dict["ENGINE"].endswith("postgresql"):
        import psycopg

        dsn = f"host={host} port={port or 5432} user={settings_dict['USER']} dbname=postgres"
        if settings_dict.get("PASSWORD"):
            dsn += f" password={settings_dict['PASSWORD']}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement)
    else:
        import MySQLdb

        conn = MySQLdb.connect(
            host=host,
            port=int(port or 3306),
            user=settings_dict["USER"],
            passwd=settings_dict["PASSWORD"] or "",
        )
        try:
            conn.cursor().execute(statement)
        finally:
            conn.close()


@pytest.fixture
def fresh_database_url(tmp_path):
    """The URL of a new, empty database on the test database's server (a file for SQLite),
    dropped at teardown."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    name = f"fresh_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    quoted = connection.ops.quote_name(name)
    _server_sql(settings_dict, f"CREATE DATABASE {quoted}")
    try:
        yield database_url_for(settings_dict, name)
    finally:
        force = " WITH (FORCE)" if connection.vendor == "postgresql" else ""
        _server_sql(settings_dict, f"DROP DATABASE IF EXISTS {quoted}{force}")


class WorkerProcess:
    """A real ``celery worker`` process (its own process group, so SIGKILL reaches the pool too)."""

    def __init__(self, env: dict, logdir: Path, queues: str, concurrency: int) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.logfile = logdir / f"{self.name.split('@')[0]}.log"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-n",
            self.name,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
            "-E",
        ]
        self._log = open(self.logfile, "wb")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def hostname(self) -> str:
        import socket

        return self.name.replace("%h", socket.gethostname())

    def wait_ready(self, app, timeout: float = 60.0) -> None:
        def answered():
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log_text()}")
            return app.control.ping(destination=[self.hostname], timeout=0.5)

        wait_until(answered, timeout=timeout, interval=0.2, message=f"worker {self.hostname} to answer ping")

    def log_text(self) -> str:
        self._log.flush()
        return self.logfile.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crash or an OOM kill would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def worker_env() -> dict[str, str]:
    """The environment of a worker process on the test database and the suite's broker."""
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for(connection.settings_dict)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env.setdefault("LOG_LEVEL", "INFO")
    return env


def reset_broker(client) -> None:
    """Empty the broker's database of every message, result and unacknowledged delivery.

    The exchange bindings a running worker declared stay: the worker shared between tests keeps
    receiving control commands (ping, inspect) and events as after its start.
    """
    keys = [key for key in client.scan_iter(count=1000) if not key.startswith(b"_kombu.binding.")]
    if keys:
        client.delete(*keys)


@pytest.fixture
def worker_factory(transactional_db, celery_app, redis_client, tmp_path):
    """Start real worker processes against the test database; all are stopped at teardown.

    For tests that need a worker of their own: one they kill, start late, or start with other
    queues or settings. The broker's database is flushed first so no message of an earlier test is
    delivered.
    """
    redis_client.flushdb()
    env = worker_env()
    workers: list[WorkerProcess] = []

    def start(
        queues: str = "maintenance,celery", concurrency: int = 1, wait: bool = True, **extra_env: str
    ) -> WorkerProcess:
        worker = WorkerProcess({**env, **extra_env}, tmp_path, queues, concurrency)
        workers.append(worker)
        if wait:
            worker.wait_ready(celery_app)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    redis_client.flushdb()


class SharedWorker:
    """One worker process of this test process, lent to each test that asks for ``worker``.

    A worker takes a few seconds to start; most worker tests need one running from their first line
    and nothing else from it. Between two tests it holds nothing: after a test the broker's database
    is emptied, and a worker still running a task, or holding one for later (a batch's countdown),
    is stopped, as is one that died; the next test then gets a new one. It runs only from one
    worker test to the next: a test that does not ask for it finds no worker taking its messages
    or re-enqueueing its stalled runs (``_no_shared_worker_unless_asked``).
    """

    #: The instance of this test process, once a test asked for it.
    current: SharedWorker | None = None

    def __init__(self, celery_app, logdir: Path) -> None:
        self.app = celery_app
        self.logdir = logdir
        self.process: WorkerProcess | None = None

    def acquire(self) -> WorkerProcess:
        if self.process is not None and self.process.process.poll() is not None:
            self.stop()
        if self.process is None:
            self.process = WorkerProcess(worker_env(), self.logdir, "maintenance,celery", 1)
            self.process.wait_ready(self.app)
        return self.process

    def holds_nothing(self) -> bool:
        """True when the worker answers and runs, reserves and schedules no task."""
        worker = self.process
        if worker is None or worker.process.poll() is not None:
            return False
        inspect = self.app.control.inspect(destination=[worker.hostname], timeout=2)
        for held in (inspect.active(), inspect.reserved(), inspect.scheduled()):
            if not held or held.get(worker.hostname):
                return False
        return True

    def release(self, redis_client) -> None:
        if not self.holds_nothing():
            self.stop()
        reset_broker(redis_client)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(scope="session")
def shared_worker(django_db_setup, celery_app, tmp_path_factory):
    """The worker process the tests asking for ``worker`` take turns with (see :class:`SharedWorker`).

    After the test database's setup, so it is stopped before that database is dropped.
    """
    shared = SharedWorker.current = SharedWorker(celery_app, tmp_path_factory.mktemp("shared-worker"))
    yield shared
    shared.stop()
    SharedWorker.current = None


@pytest.fixture(autouse=True)
def _no_shared_worker_unless_asked(request):
    """Stop the shared worker before a test that does not ask for it (autouse: before its fixtures)."""
    if SharedWorker.current is not None and "worker" not in request.fixturenames:
        SharedWorker.current.stop()


@pytest.fixture
def worker(shared_worker, transactional_db, redis_client) -> WorkerProcess:
    """One running worker on the maintenance and default queues, against an empty broker.

    Shared with other tests (it starts once, not per test); a test that kills its worker, or needs
    one started later or with other settings, uses ``worker_factory``.
    """
    reset_broker(redis_client)
    yield shared_worker.acquire()
    shared_worker.release(redis_client)


#: Fixtures that start a Celery worker process; a test using one is marked ``worker``.
WORKER_FIXTURES = {"worker", "worker_factory", "shared_worker", "start_worker", "json_worker_factory"}


def pytest_collection_modifyitems(config, items):
    """Mark ``worker`` every test that starts a Celery worker, so ``-m "not worker"`` runs without one."""
    for item in items:
        if WORKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.worker)


# --------------------------------------------------------------------------------------------
# Cleanup dataset: rows that hit every rule of django-oauth-toolkit's clear_expired() and its edges,
# with the expected outcome computed independently, in Python, from the rows' attributes.


class CleanupDataset:
    """Tokens, ID tokens and grants around a frozen ``now``, plus what a cleanup must leave behind.

    ``expected(grace=..., expire=..., reuse=...)`` applies the six rules to the rows in memory, in
    phase order, and returns the ids each table keeps and the count each phase deletes.
    """

    def __init__(self, now, *, grace: int = 0, expire: int = 86400, prefix: str = "ds", users=None):
        from datetime import timedelta

        from django.contrib.auth import get_user_model

        from oauth_provider.models import (
            get_access_token_model,
            get_application_model,
            get_grant_model,
            get_id_token_model,
            get_refresh_token_model,
        )

        self.now = now
        user_model = get_user_model()
        self.user = user_model.objects.create(username=f"{prefix}-user-{uuid.uuid4().hex[:6]}")
        self.app = get_application_model().objects.create(
            name=f"{prefix}-app",
            client_type="confidential",
            authorization_grant_type="authorization-code",
            redirect_uris="https://example.com/cb",
        )
        AT, RT, IT, GR = (
            get_access_token_model(),
            get_refresh_token_model(),
            get_id_token_model(),
            get_grant_model(),
        )
        self.models = {"access": AT, "refresh": RT, "id": IT, "grant": GR}
        s = timedelta(seconds=1)
        g = timedelta(seconds=grace)
        e = timedelta(seconds=expire)
        self._n = 0

        def idt(expires):
            return IT.objects.create(user=self.user, application=self.app, expires=expires)

        def at(expires, id_token=None, source=None):
            self._n += 1
            return AT.objects.create(
                user=self.user,
                application=self.app,
                token=f"{prefix}-at-{self._n}-{uuid.uuid4().hex}",
                expires=expires,
                id_token=id_token,
                source_refresh_token=source,
            )

        def rt(access=None, revoked=None):
            self._n += 1
            return RT.objects.create(
                user=self.user,
                application=self.app,
                token=f"{prefix}-rt-{self._n}-{uuid.uuid4().hex}",
                access_token=access,
                revoked=revoked,
            )

        def grant(expires):
            self._n += 1
            return GR.objects.create(
                user=self.user,
                application=self.app,
                code=f"{prefix}-code-{self._n}-{uuid.uuid4().hex}",
                expires=expires,
                redirect_uri="https://example.com/cb",
            )

        far = now + timedelta(days=30)
        # Access tokens and their refresh tokens.
        live_at = at(far)
        rt(access=live_at)  # live pair
        at(now - s)  # expired, no refresh token
        at(now)  # expires exactly now: not expired (rule 4 is strict)
        at(now + s)
        at(now - timedelta(days=400))
        for offset in (s, -s, 0 * s):
            # Access tokens expired around the refresh expiry cutoff, each with a live refresh token.
            rt(access=at(now - e + offset))
        rt(access=at(now - s))  # recently expired access token with a live refresh token
        rt(access=at(far))
        # Orphans: not revoked, no access token, whatever their age.
        rt()
        rt()
        # Revoked refresh tokens around the grace / expiry cutoffs.
        revoked_points = {now, now - s, now + s, now - g, now - g + s, now - g - s, now - e, now - e + s}
        revoked_points |= {now - e - s, now - timedelta(days=500)}
        revoked_tokens = [rt(revoked=point) for point in sorted(revoked_points)]
        # A revoked refresh token that still names an expired access token: deleting the refresh
        # token frees the access token for rule 4.
        rt(access=at(now - timedelta(hours=2)), revoked=now - timedelta(days=500))
        rt(access=at(far), revoked=now - timedelta(days=500))
        # Rotation: live access tokens minted from revoked refresh tokens (SET NULL on delete).
        for source in revoked_tokens[:3] + revoked_tokens[-3:]:
            at(far, source=source)
        # ID tokens.
        idt(now - s)  # expired, no access token
        idt(now)  # expires exactly now
        idt(far)
        at(far, id_token=idt(now - s))  # expired ID token of a live access token
        at(now - s, id_token=idt(now - s))  # expired pair: access token goes, then its ID token
        rt(access=at(now - s, id_token=idt(now - timedelta(days=3))))  # held by a live refresh token
        rt(access=at(now - e - s, id_token=idt(now - e - s)))  # freed by rule 3 when expiry is set
        # Grants.
        for offset in (-timedelta(days=2), -s, 0 * s, s):
            grant(now + offset)

    def snapshot(self) -> dict:
        """Every row of the four tables, with the columns the rules read."""
        return {
            "access": {
                row["pk"]: row
                for row in self.models["access"]
                .objects.values("pk", "expires", "id_token_id", "source_refresh_token_id")
                .order_by("pk")
            },
            "refresh": {
                row["pk"]: row
                for row in self.models["refresh"]
                .objects.values("pk", "revoked", "access_token_id")
                .order_by("pk")
            },
            "id": {
                row["pk"]: row for row in self.models["id"].objects.values("pk", "expires").order_by("pk")
            },
            "grant": {
                row["pk"]: row for row in self.models["grant"].objects.values("pk", "expires").order_by("pk")
            },
        }

    def expected(self, *, grace=0, expire=None, reuse=None, snapshot=None, now=None) -> tuple[dict, dict]:
        """(ids kept per table, count deleted per phase) by applying the rules to a snapshot.

        ``reuse`` defaults to the configured ``REFRESH_TOKEN_REUSE_PROTECTION`` (on by default),
        which a worker process reads from the same settings.

        ``now`` defaults to the dataset's; a cleanup that takes its own "now" later than that is
        predicted exactly by any ``now`` in the same gap between rows (rows sit within a second of
        the dataset's ``now`` or a month after it).
        """
        from datetime import timedelta

        from oauth_provider.settings import oauth2_settings

        if reuse is None:
            reuse = oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION
        snap = snapshot or self.snapshot()
        now = now or self.now
        access = dict(snap["access"])
        refresh = dict(snap["refresh"])
        ids = dict(snap["id"])
        grants = dict(snap["grant"])
        counts = {}

        revoked_cutoff = now - timedelta(seconds=grace) if grace else now
        expire_cutoff = now - timedelta(seconds=expire) if expire else None
        if reuse:
            revoked_cutoff = expire_cutoff

        def drop(table, keys):
            for key in keys:
                del table[key]
            return len(keys)

        counts["revoked_refresh_tokens"] = drop(
            refresh,
            [
                k
                for k, r in refresh.items()
                if revoked_cutoff and r["revoked"] and r["revoked"] <= revoked_cutoff
            ],
        )
        counts["orphaned_refresh_tokens"] = drop(
            refresh, [k for k, r in refresh.items() if r["revoked"] is None and r["access_token_id"] is None]
        )
        counts["expired_refresh_tokens"] = drop(
            refresh,
            [
                k
                for k, r in refresh.items()
                if expire_cutoff
                and r["revoked"] is None
                and r["access_token_id"] in access
                and access[r["access_token_id"]]["expires"] <= expire_cutoff
            ],
        )
        held = {r["access_token_id"] for r in refresh.values()}
        counts["access_tokens"] = drop(
            access, [k for k, a in access.items() if k not in held and a["expires"] < now]
        )
        held_ids = {a["id_token_id"] for a in access.values()}
        counts["id_tokens"] = drop(
            ids, [k for k, i in ids.items() if k not in held_ids and i["expires"] < now]
        )
        counts["grants"] = drop(grants, [k for k, gr in grants.items() if gr["expires"] < now])
        kept = {"access": set(access), "refresh": set(refresh), "id": set(ids), "grant": set(grants)}
        return kept, counts

    def kept_now(self) -> dict:
        snap = self.snapshot()
        return {table: set(rows) for table, rows in snap.items()}


@pytest.fixture
def cleanup_dataset(db):
    """Build a :class:`CleanupDataset` around a given ``now`` (keyword arguments as its constructor)."""

    def build(now=None, **kwargs) -> CleanupDataset:
        from django.utils import timezone

        return CleanupDataset(now or timezone.now(), **kwargs)

    return build


def make_expired_grants(count: int, now=None, *, prefix: str = "bulk") -> list[int]:
    """``count`` grants that expired a minute before ``now``, bulk-inserted; returns their ids."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from oauth_provider.models import get_application_model, get_grant_model

    now = now or timezone.now()
    user = get_user_model().objects.create(username=f"{prefix}-{uuid.uuid4().hex[:8]}")
    app = get_application_model().objects.create(
        name=f"{prefix}-app",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="https://example.com/cb",
    )
    grant_model = get_grant_model()
    grant_model.objects.bulk_create(
        grant_model(
            user=user,
            application=app,
            code=f"{prefix}-{uuid.uuid4().hex}",
            expires=now - timedelta(minutes=1),
            redirect_uri="https://example.com/cb",
        )
        for _ in range(count)
    )
    return list(grant_model.objects.filter(user=user).values_list("pk", flat=True))


def run_status(run_id: int):
    """The run as the database has it right now (a worker process writes it)."""
    from oauth_tasks.models import MaintenanceRun

    return MaintenanceRun.objects.get(pk=run_id)


@pytest.fixture(autouse=True)
def _fresh_cache(request):
    """Each test starts with an empty local cache, so failed logins of one test do not rate limit the next.

    Tests of the rate limit on Redis point ``CACHES`` at the suite's Redis themselves.
    """
    if not _django_plugin_active(request.config):
        return
    settings = request.getfixturevalue("settings")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"test-{uuid.uuid4().hex}",
        }
    }
