"""Self-healing under faults, with the shipped defaults: real workers, a real Redis of the test's own.

Each test starts its own ``redis-server`` on a free port (so it can kill it), dispatches a cleanup
from another process as an operator would (``manage.py cleartokens --async``), builds rows around
the run's frozen cutoff, starts real ``celery worker`` processes with no watchdog setting in their
environment, injects one fault and waits for the run to finish. Each asserts the exact counts and
that every row the rules keep is still there. Waits are bounded polls on the database; how long a
recovery took is printed (``-s``), never asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from config.embedded_redis import start_embedded_redis
from oauth_tasks.models import RunStatus
from tests.conftest import ROOT, WorkerProcess, database_url_for, make_expired_grants, run_status, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

#: The healing target: any single fault recovers (the run's batch number moves again) within this.
RECOVERY_BOUND = 60


@pytest.fixture
def own_redis(tmp_path):
    redis = start_embedded_redis(tmp_path / "redis")
    yield redis
    redis.stop()


@pytest.fixture
def fault_env(own_redis, transactional_db) -> dict[str, str]:
    """The environment of a worker or a command of the product, on the test database and own Redis."""
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for(connection.settings_dict),
        DJANGO_SETTINGS_MODULE="config.settings",
        CELERY_BROKER_URL=own_redis.url,
        CELERY_RESULT_BACKEND=own_redis.url,
        LOG_LEVEL="INFO",
    )
    for name in ("MAINTENANCE_STALL_SECONDS", "MAINTENANCE_WATCHDOG_INTERVAL"):
        env.pop(name, None)  # the shipped defaults
    return env


@pytest.fixture
def start_worker(fault_env, tmp_path):
    workers: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(fault_env, tmp_path, "maintenance,celery", 1)
        workers.append(worker)

        def ready():
            if worker.process.poll() is not None:
                pytest.fail(f"worker exited with {worker.process.returncode}:\n{worker.log_text()}")
            return " ready." in worker.log_text()

        wait_until(ready, timeout=60, message="the worker to be ready")
        return worker

    yield start
    for worker in workers:
        worker.stop()


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def dispatch_from_a_shell(
    env, cleanup_dataset, *, grants: int = 40, batch_size: int = 2, interval: float = 0.5
):
    """``cleartokens --async`` from another process, then rows around the run's cutoff."""
    result = manage(env, "cleartokens", "--async", f"--batch-size={batch_size}", f"--interval={interval}")
    assert result.returncode == 0, result.stderr
    run = run_status(int(result.stdout.strip().splitlines()[-1]))
    ds = cleanup_dataset(now=run.cutoff)
    make_expired_grants(grants, ds.now)
    expected_kept, expected_counts = ds.expected()
    return run, ds, expected_kept, expected_counts


def wait_for_batch_after(run_id: int, number: int, timeout: float = RECOVERY_BOUND) -> float:
    """Wait until batch ``number`` of the run committed; returns when (``time.monotonic()``)."""
    wait_until(
        lambda: run_status(run_id).batch_number > number,
        timeout=timeout,
        interval=0.2,
        message=f"run {run_id} to move past batch {number}",
    )
    return time.monotonic()


def wait_finished(run_id: int, timeout: float = 180):
    return wait_until(
        lambda: (r := run_status(run_id)).status not in (RunStatus.PENDING, RunStatus.RUNNING) and r,
        timeout=timeout,
        message=f"run {run_id} to finish",
    )


def assert_exact(done, ds, expected_kept, expected_counts, fault: str, recovery: float) -> None:
    kept = ds.kept_now()
    wrongful = sum(len(expected_kept[table] - kept[table]) for table in expected_kept)
    missed = sum(len(kept[table] - expected_kept[table]) for table in expected_kept)
    print(
        f"\n{fault}: recovered in {recovery:.1f}s; rows expected {sum(expected_counts.values())}, "
        f"deleted {sum(done.counts.values())}, wrongful {wrongful}, missed {missed}"
    )
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.counts == expected_counts
    assert kept == expected_kept


def test_a_worker_killed_mid_batch_is_recovered_by_the_next_worker_within_seconds(
    fault_env, start_worker, cleanup_dataset
):
    from django.db import transaction

    from oauth_tasks.models import MaintenanceRun

    run, ds, expected_kept, expected_counts = dispatch_from_a_shell(fault_env, cleanup_dataset)
    first = start_worker()
    wait_for_batch_after(run.pk, 3)
    # Catch the worker inside a batch: hold the run row's lock until its next batch has started
    # and waits for it, then kill the worker with its batch (and its message) in hand.
    with transaction.atomic():
        held = MaintenanceRun.objects.select_for_update().get(pk=run.pk)
        due = held.next_batch_at.timestamp()
        wait_until(lambda: time.time() > due + 1.0, message="the next batch to start")
        first.kill()
        killed_at = time.monotonic()
    assert run_status(run.pk).batch_number == held.batch_number

    second = start_worker()
    recovered = wait_for_batch_after(run.pk, held.batch_number)
    done = wait_finished(run.pk)

    assert done.requeue_count >= 1  # the second worker's own watchdog re-enqueued the lost batch
    assert second.process.poll() is None
    assert_exact(
        done, ds, expected_kept, expected_counts, "worker SIGKILLed mid-batch", recovered - killed_at
    )


def test_the_worker_survives_a_redis_restart_and_the_run_finishes(
    fault_env, own_redis, start_worker, cleanup_dataset
):
    run, ds, expected_kept, expected_counts = dispatch_from_a_shell(fault_env, cleanup_dataset, interval=1)
    worker = start_worker()
    wait_for_batch_after(run.pk, 3)

    # Killed with a batch waiting for its countdown in the worker (an unacknowledged message), and
    # back three seconds later with nothing: this Redis keeps no data across a restart.
    own_redis.process.kill()
    own_redis.process.wait()
    killed_at = time.monotonic()
    number = run_status(run.pk).batch_number
    time.sleep(3)
    own_redis.restart()

    recovered = wait_for_batch_after(run.pk, number)
    done = wait_finished(run.pk)

    assert worker.process.poll() is None, worker.log_text()
    assert "Unrecoverable error" not in worker.log_text()
    assert_exact(
        done, ds, expected_kept, expected_counts, "Redis killed and restarted", recovered - killed_at
    )


def test_a_message_that_is_not_json_is_dropped_and_the_worker_goes_on(
    fault_env, own_redis, start_worker, cleanup_dataset
):
    import redis

    run, ds, expected_kept, expected_counts = dispatch_from_a_shell(fault_env, cleanup_dataset)
    worker = start_worker()
    wait_for_batch_after(run.pk, 2)

    client = redis.Redis.from_url(own_redis.url)
    number = run_status(run.pk).batch_number
    pushed_at = time.monotonic()
    client.lpush("maintenance", b"\x00\xffnot json", b"not json either", b'{"no": "envelope"}')
    client.close()
    recovered = wait_for_batch_after(run.pk, number)
    done = wait_finished(run.pk)

    assert worker.process.poll() is None, worker.log_text()
    assert worker.log_text().count("dropped an undecodable message") == 3
    assert_exact(done, ds, expected_kept, expected_counts, "non-JSON messages pushed", recovered - pushed_at)


def test_dispatch_with_no_broker_fails_in_one_line_naming_it_and_leaves_no_active_run(fault_env):
    from config.embedded_redis import free_port
    from oauth_tasks.models import MaintenanceRun

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    env = {**fault_env, "CELERY_BROKER_URL": nowhere, "CELERY_RESULT_BACKEND": nowhere}
    for command in (["cleartokens", "--async"], ["revoke_tokens", "--scope", "read"]):
        result = manage(env, *command)
        assert result.returncode != 0, result.stdout
        # One line saying what failed (after any warning the command prints about its settings).
        errors = [line for line in result.stderr.splitlines() if line.startswith("CommandError")]
        assert len(errors) == 1 and nowhere in errors[0], result.stderr
        assert "Traceback" not in result.stderr
    assert not MaintenanceRun.objects.exists()

    # With the broker back, the same command starts the run at once: nothing blocks it.
    result = manage(fault_env, "cleartokens", "--async")
    assert result.returncode == 0 and result.stdout.startswith("Started cleanup run"), result.stderr
    assert MaintenanceRun.objects.active().count() == 1


def test_the_shipped_stall_margin_and_watchdog_interval_are_what_the_workers_use(fault_env):
    """The defaults the timings above depend on, as a worker process reads them."""
    code = (
        "import django; django.setup(); from oauth_tasks.conf import maintenance_settings as s; "
        "print(s.STALL_SECONDS, s.WATCHDOG_INTERVAL_SECONDS)"
    )
    shipped = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=fault_env, capture_output=True, text=True, check=True
    )
    assert shipped.stdout.split() == ["15", "10"]
    tuned = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**fault_env, "MAINTENANCE_STALL_SECONDS": "5", "MAINTENANCE_WATCHDOG_INTERVAL": "2.5"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert tuned.stdout.split() == ["5.0", "2.5"]
    bad = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**fault_env, "MAINTENANCE_STALL_SECONDS": "soon"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "MAINTENANCE_STALL_SECONDS must be a non-negative number" in bad.stderr
