"""A worker keeps its database connection from one batch to the next when the deployment asks.

Celery's Django fixup closes every connection around every task, whatever ``CONN_MAX_AGE`` says.
A run is hundreds of short batch tasks, and a new connection costs about 8 ms on PostgreSQL, so
the project lets Django's own rules decide instead (``oauth_tasks/worker_connections.py``). The
worker here is real and runs with ``tests/connection_log_settings.py``, which writes down the
process of every connection opened; the test counts those of the pool process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection

from oauth_tasks import engine
from oauth_tasks.models import RunStatus
from tests.conftest import make_expired_grants, run_status, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def start_logged_worker(worker_factory, log: Path, max_age: str):
    log.write_text("")
    return worker_factory(
        DJANGO_SETTINGS_MODULE="tests.connection_log_settings",
        CONNECTION_LOG=str(log),
        DATABASE_CONN_MAX_AGE=max_age,
    )


def pool_connections(log: Path, worker) -> int:
    """Connections opened by the worker's pool process (the main process runs the watchdog)."""
    return sum(1 for pid in log.read_text().split() if int(pid) != worker.process.pid)


def wait_finished(run_id: int, timeout: float = 60):
    return wait_until(
        lambda: (run := run_status(run_id)).status not in (RunStatus.PENDING, RunStatus.RUNNING) and run,
        timeout=timeout,
        message=f"run {run_id} to finish",
    )


@pytest.mark.parametrize("max_age", ["0", "60"])
def test_batches_reuse_the_pool_process_connection_only_with_a_conn_max_age(
    worker_factory, tmp_path, max_age
):
    make_expired_grants(16)
    log = tmp_path / "connections.log"
    worker = start_logged_worker(worker_factory, log, max_age)
    run, created = engine.dispatch("cleanup", {}, trigger="test", batch_size=2, interval=0)
    assert created
    run = wait_finished(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert run.counts.get("grants") == 16
    assert run.batch_number >= 8

    opened = pool_connections(log, worker)
    if max_age == "0":
        # Django's default: a connection lives for one task, as with Celery's own handling.
        assert opened >= run.batch_number
    else:
        assert opened == 1, f"{opened} connections for {run.batch_number} batches"


def _drop_other_connections() -> int:
    """Close, from the server's side, every connection to this database except this test's."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cur.fetchone()[0]
        cur.execute(
            "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
        ids = [row[0] for row in cur.fetchall()]
        for ident in ids:
            cur.execute(f"KILL CONNECTION {int(ident)}")
        return len(ids)


def test_a_kept_connection_the_database_dropped_between_batches_is_replaced_without_a_retry(
    worker_factory, tmp_path
):
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("a database server closes the connection; SQLite has none")
    make_expired_grants(6)
    log = tmp_path / "connections.log"
    worker = start_logged_worker(worker_factory, log, "60")
    run, created = engine.dispatch("cleanup", {}, trigger="test", batch_size=2, interval=2)
    assert created
    wait_until(lambda: run_status(run.pk).batch_number >= 1, timeout=60, message="the first batch")
    assert pool_connections(log, worker) == 1
    assert _drop_other_connections() >= 1  # the pool process's kept connection, idle until the next batch

    run = wait_finished(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert run.counts.get("grants") == 6
    # The next batch found the connection dead before its first query and opened another; a
    # dead connection used by the batch would have failed it and shown as a retry.
    assert pool_connections(log, worker) == 2
    assert "retry" not in worker.log_text()
