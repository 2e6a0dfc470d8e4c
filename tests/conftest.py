"""Shared fixtures: a real Redis broker and real Celery worker processes.

When ``CELERY_BROKER_URL`` is unset, the suite starts its own Redis server (the same embedded server
the run command uses) for the whole session. Workers are separate processes started with the
``celery`` command line against the test database, so what they do is what production does.
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

if not os.environ.get("CELERY_BROKER_URL"):
    from config.embedded_redis import start_embedded_redis

    _redis = start_embedded_redis(Path(tempfile.mkdtemp(prefix="oauth-tests-redis-")))
    atexit.register(_redis.stop)
    os.environ["CELERY_BROKER_URL"] = _redis.url
    os.environ["CELERY_RESULT_BACKEND"] = _redis.url
    EMBEDDED_REDIS = _redis
else:
    EMBEDDED_REDIS = None
os.environ.setdefault("CELERY_RESULT_BACKEND", os.environ["CELERY_BROKER_URL"])


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test with ``message`` after ``timeout``."""
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


def database_url_for(settings_dict: dict) -> str:
    """A DATABASE_URL naming the database the test process uses right now (the test database)."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    if engine.endswith("postgresql"):
        from urllib.parse import quote

        user = quote(settings_dict.get("USER") or "")
        password = settings_dict.get("PASSWORD") or ""
        auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"
    raise RuntimeError(f"no worker support for database engine {engine}")


class WorkerProcess:
    """A real ``celery worker`` process (its own process group, so SIGKILL reaches the pool too)."""

    def __init__(self, env: dict, logdir: Path, queues: str, concurrency: int) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.logfile = logdir / f"{self.name.split('@')[0]}.log"
        args = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", queues, "-c", str(concurrency), "-n", self.name,
            "--without-gossip", "--without-mingle", "-l", "info", "-E",
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


@pytest.fixture
def worker_factory(transactional_db, celery_app, redis_client, tmp_path):
    """Start real worker processes against the test database; all are stopped at teardown.

    The broker's database is flushed first so no message of an earlier test is delivered.
    """
    from django.db import connection

    redis_client.flushdb()
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for(connection.settings_dict)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env.setdefault("LOG_LEVEL", "INFO")
    workers: list[WorkerProcess] = []

    def start(queues: str = "maintenance,celery", concurrency: int = 1, wait: bool = True) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path, queues, concurrency)
        workers.append(worker)
        if wait:
            worker.wait_ready(celery_app)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    redis_client.flushdb()


@pytest.fixture
def worker(worker_factory) -> WorkerProcess:
    """One running worker on the maintenance and default queues."""
    return worker_factory()
