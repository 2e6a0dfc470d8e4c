"""Paced runs split into lanes, and the per-batch lock timeout, on real workers and databases.

A lane batch feeds the pacer as a run's own chain does: a batch over the target or one that fails
on a lock wait halves the lane's next batch, the reason is recorded on the run's ``pacing``, and a
retried lock wait waits the pacer's pause (or the fixed back-off, when that is longer). On MySQL
and MariaDB a paced batch sets ``innodb_lock_wait_timeout`` for itself and puts the previous value back.
Waits are bounded polls on the database, never timing assertions.
"""

from __future__ import annotations

import re

import pytest
from django.db import OperationalError, connection

from oauth_provider.cleanup import GRANTS
from oauth_provider.models import get_grant_model
from oauth_tasks import engine, lanes, pacing
from oauth_tasks.lock_timeout import batch_lock_timeout, mysql_seconds
from oauth_tasks.models import LaneStatus, MaintenanceLane, RunStatus
from tests.conftest import make_expired_grants, run_status, wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]


def wait_finished(run_id: int, timeout: float = 120):
    def done():
        run = run_status(run_id)
        return run if run.status not in (RunStatus.PENDING, RunStatus.RUNNING) else None

    return wait_until(done, timeout=timeout, message=f"run {run_id} to finish")


def other_connection():
    """A second connection to the test database, outside Django's, in a transaction of its own."""
    params = connection.get_connection_params()
    if connection.vendor == "postgresql":
        import psycopg

        keys = ("host", "port", "user", "password", "dbname")
        return psycopg.connect(**{key: value for key, value in params.items() if key in keys})
    import MySQLdb

    keys = ("host", "port", "user", "passwd", "password", "db", "database", "unix_socket")
    holder = MySQLdb.connect(**{key: value for key, value in params.items() if key in keys})
    holder.autocommit(False)
    return holder


def hold_row_lock(holder, model, pk: int) -> None:
    cursor = holder.cursor()
    cursor.execute(f"SELECT id FROM {model._meta.db_table} WHERE id = %s FOR UPDATE", [pk])
    cursor.fetchall()


def session_lock_wait() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.innodb_lock_wait_timeout")
        return int(cursor.fetchone()[0])


def retry_countdowns(log: str) -> list[float]:
    pattern = r"lane batch retry lane=\d+ batch=\d+ .*countdown=([\d.]+)s"
    return [float(value) for value in re.findall(pattern, log)]


# --- paced lanes on real workers --------------------------------------------------------------


@pytest.mark.worker
def test_a_paced_run_in_two_lanes_on_two_workers_shrinks_its_batches_and_says_why(worker_factory):
    """Every batch is over a target of a microsecond: each lane's size halves down to the minimum,
    and the run's pacing says why, as a run's own chain would."""
    ids = make_expired_grants(60)
    run, _ = engine.dispatch(
        "cleanup",
        {"only": "grants"},
        trigger="test",
        batch_size=16,
        lanes=2,
        pacing={"target_batch_seconds": 1e-6, "min_batch_size": 2, "max_busy_share": 1, "max_replica_lag": 0},
    )
    worker_factory()
    worker_factory()
    finished = wait_finished(run.pk)

    assert finished.status == RunStatus.SUCCEEDED, finished.last_error
    assert finished.total_counts == {GRANTS: len(ids)} == finished.counts
    assert not get_grant_model().objects.filter(pk__in=ids).exists()
    grant_lanes = list(MaintenanceLane.objects.filter(run=finished, phase=GRANTS))
    assert len(grant_lanes) >= 2
    # 16 -> 8 -> 4 -> 2 in every lane that ran three batches or more.
    assert all(lane.batch_size == 2 for lane in grant_lanes if lane.batch_number >= 3)
    assert any(lane.batch_number >= 3 for lane in grant_lanes)
    state = finished.pacing_state()
    assert state["last_slowdown"]["reason"].startswith("over target duration (")
    assert state["slowdowns"] >= 3
    assert "over target duration" in finished.pacing_summary


@pytest.mark.worker
def test_a_lane_batch_that_meets_a_held_row_lock_records_lock_wait_and_halves(worker_factory):
    """PostgreSQL (lock_timeout) or MariaDB/MySQL (innodb_lock_wait_timeout): another connection
    holds a lock on a row of one lane's range. That lane's batch gives up after the lock timeout,
    its retry waits the pause the run recorded (the pacer's, or the back-off when longer), gets
    half the rows, the run says "lock wait", and it finishes once the lock is released."""
    if connection.vendor not in ("postgresql", "mysql"):
        pytest.skip("SQLite has no row locks to wait on")
    ids = sorted(make_expired_grants(40))
    run, _ = engine.dispatch(
        "cleanup",
        {"only": "grants"},
        trigger="test",
        batch_size=20,
        interval=0.05,
        lanes=2,
        enqueue=False,
        pacing={
            "lock_timeout_seconds": 0.2,
            "min_batch_size": 1,
            "max_replica_lag": 0,
            # A lock wait of 0.2 s is followed by at least 1.8 s of rest, times the lanes running.
            "max_busy_share": 0.1,
            "target_batch_seconds": 300,
        },
    )
    engine.run_batch(run.pk, 0, chain=False)  # the empty phases, then the grants split in two
    upper = MaintenanceLane.objects.get(run=run, phase=GRANTS, index=1)
    # Inside the upper lane's range, away from its lower edge: on MariaDB the lower lane's last
    # statement reads (and waits for) the first row past its own range.
    locked_id = [pk for pk in ids if pk > upper.lo][10]
    holder = other_connection()
    try:
        hold_row_lock(holder, get_grant_model(), locked_id)
        worker = worker_factory()
        engine.resume(run.pk)  # the lanes' first batches go to the worker

        def backed_off():
            state = run_status(run.pk).pacing_state()
            return (state.get("last_slowdown") or {}).get("reason") == "lock wait"

        wait_until(backed_off, timeout=60, message="the lane to back off on the lock")
        upper.refresh_from_db()
        waiting = run_status(run.pk)
        assert upper.batch_size == 10  # halved by the lock wait
        assert upper.counts.get(GRANTS, 0) == 0  # nothing of its range deleted while the lock is held
        assert waiting.pacing_state()["batch_size"] == 10
        assert "lock wait" in waiting.pacing_summary
        recorded_pause = round(waiting.pacing_state()["pause"], 2)
        assert get_grant_model().objects.filter(pk=locked_id).exists()
    finally:
        holder.rollback()
        holder.close()
    finished = wait_finished(run.pk)

    assert finished.status == RunStatus.SUCCEEDED, finished.last_error
    assert finished.total_counts == {GRANTS: len(ids)}
    assert not get_grant_model().objects.filter(pk__in=ids).exists()
    countdowns = retry_countdowns(worker.log_text())
    assert countdowns, worker.log_text()[-3000:]
    # The retry waited what the run recorded: the pacer's pause, or the back-off when that is longer.
    assert recorded_pause in countdowns, (recorded_pause, countdowns)
    assert all(1.8 <= countdown <= pacing.MAX_RETRY_PAUSE for countdown in countdowns), countdowns


def test_a_lane_batch_error_halves_the_lane_only_while_it_expects_that_batch(db):
    make_expired_grants(30)
    run, _ = engine.dispatch(
        "cleanup",
        {"only": "grants"},
        trigger="test",
        batch_size=8,
        interval=0.5,
        lanes=2,
        enqueue=False,
        pacing={"min_batch_size": 1, "max_replica_lag": 0, "max_busy_share": 0.5},
    )
    engine.run_batch(run.pk, 0, chain=False)
    lane = MaintenanceLane.objects.filter(run=run, phase=GRANTS).first()
    error = OperationalError("canceling statement due to lock timeout")

    pause = lanes.record_lane_batch_error(lane.pk, 0, error, 2, failed_seconds=1.0)
    # The duty-cycle pause after a batch of 1 s at a share of 0.5 (1 s), times the 2 lanes running.
    assert pause == pytest.approx(2.0)
    lane.refresh_from_db()
    state = run_status(run.pk).pacing_state()
    assert lane.batch_size == 4 and state["batch_size"] == 4 and state["reason"] == "lock wait"
    assert state["last_slowdown"]["reason"] == "lock wait"
    assert lanes.record_lane_batch_error(lane.pk, 7, error, 2) is None  # a batch it no longer expects
    assert pacing.retry_pause(pacing.PacingSettings(enabled=True), 1000, chains=4) == pacing.MAX_RETRY_PAUSE

    unpaced, _ = engine.dispatch(
        "cleanup", {}, trigger="test", batch_size=8, lanes=2, enqueue=False, pacing=False, dry_run=True
    )
    engine.run_batch(unpaced.pk, 0, chain=False)
    unpaced_lane = MaintenanceLane.objects.filter(run=unpaced, status=LaneStatus.RUNNING).first()
    assert unpaced_lane is not None
    # Pacing off: nothing recorded, the caller keeps its fixed back-off.
    assert lanes.record_lane_batch_error(unpaced_lane.pk, 0, error, 2) is None


# --- MySQL / MariaDB: innodb_lock_wait_timeout per batch -------------------------------------------


def _mysql_only():
    if connection.vendor != "mysql":
        pytest.skip("innodb_lock_wait_timeout is MySQL's and MariaDB's (run with DATABASE_URL=mysql://...)")


def test_the_mysql_lock_wait_is_whole_seconds_and_at_least_one():
    assert [mysql_seconds(value) for value in (0.2, 1, 1.5, 2.0, 30)] == [1, 1, 2, 2, 30]


def test_a_paced_batch_on_mysql_sets_the_lock_wait_and_puts_the_previous_back_after_an_error(db):
    _mysql_only()
    settings = pacing.PacingSettings(enabled=True, lock_timeout_seconds=1.5)
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 37")
    with batch_lock_timeout(settings):
        assert session_lock_wait() == 2
    assert session_lock_wait() == 37
    with pytest.raises(ZeroDivisionError), batch_lock_timeout(settings):
        assert session_lock_wait() == 2
        1 / 0
    assert session_lock_wait() == 37
    with batch_lock_timeout(pacing.PacingSettings(enabled=False, lock_timeout_seconds=1.5)):
        assert session_lock_wait() == 37  # pacing off: the server's own wait


def test_a_batch_on_mysql_that_meets_a_held_row_lock_fails_fast_halves_and_finishes_after(db):
    """MariaDB/MySQL: the batch gives up after the pacing setting's lock wait (1 s, not the
    server's 50 s), the pacer records "lock wait" and halves, the session's setting is back to what
    it was, and the run finishes once the lock is released."""
    _mysql_only()
    ids = sorted(make_expired_grants(20))
    run, _ = engine.dispatch(
        "cleanup",
        {"only": "grants"},
        trigger="test",
        batch_size=8,
        enqueue=False,
        pacing={"lock_timeout_seconds": 1, "min_batch_size": 1, "max_replica_lag": 0},
    )
    before = session_lock_wait()
    holder = other_connection()
    try:
        hold_row_lock(holder, get_grant_model(), ids[0])
        with pytest.raises(OperationalError) as caught:
            engine.run_batch(run.pk, 0, chain=False)
        assert pacing.error_reason(caught.value) == "lock wait"
        assert session_lock_wait() == before
        assert engine.record_batch_error(run.pk, 0, caught.value, 2, failed_seconds=1.0) is not None
        state = run_status(run.pk).pacing_state()
        assert state["batch_size"] == 4 and state["last_slowdown"]["reason"] == "lock wait"
        assert get_grant_model().objects.filter(pk__in=ids).count() == 20
    finally:
        holder.rollback()
        holder.close()
    number = 0
    while True:
        report = engine.run_batch(run.pk, number, chain=False)
        number = report.batch_number
        if report.outcome == "finished":
            break
    finished = run_status(run.pk)
    assert finished.status == RunStatus.SUCCEEDED and finished.counts == {GRANTS: 20}
    assert session_lock_wait() == before


@pytest.mark.worker
def test_a_paced_run_on_mysql_backs_off_a_held_row_lock_on_the_worker_and_finishes(worker):
    _mysql_only()
    ids = make_expired_grants(30)
    holder = other_connection()
    try:
        hold_row_lock(holder, get_grant_model(), min(ids))
        run, _ = engine.dispatch(
            "cleanup",
            {"only": "grants"},
            trigger="test",
            batch_size=20,
            pacing={"lock_timeout_seconds": 1, "min_batch_size": 1, "max_replica_lag": 0},
        )

        def backed_off():
            state = run_status(run.pk).pacing_state()
            return (state.get("last_slowdown") or {}).get("reason") == "lock wait"

        wait_until(backed_off, timeout=60, message="the run to back off on the lock")
        waiting = run_status(run.pk)
        assert waiting.pacing_state()["batch_size"] == 10
        assert waiting.total_counts.get(GRANTS, 0) == 0
    finally:
        holder.rollback()
        holder.close()
    finished = wait_finished(run.pk)
    assert finished.status == RunStatus.SUCCEEDED, finished.last_error
    assert finished.counts == {GRANTS: len(ids)}
    assert not get_grant_model().objects.filter(pk__in=ids).exists()
