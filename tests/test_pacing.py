"""Adaptive pacing: the pacer's arithmetic, its settings, and paced runs on a real worker and database.

A paced run's batch size follows AIMD toward a target batch duration, its pause a duty cycle, and
its batches back off on lock waits; the decisions live on the run row. With pacing off, the batch
size and interval are the fixed ones, as in django-oauth-toolkit.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import OperationalError

from oauth_tasks import engine, pacing
from oauth_tasks.conf import maintenance_settings
from oauth_tasks.models import MaintenanceRun
from tests.conftest import make_expired_grants, run_status, wait_until

SETTINGS = pacing.PacingSettings(
    enabled=True,
    target_batch_seconds=0.5,
    max_busy_share=0.25,
    min_batch_size=100,
    max_batch_size=5000,
    batch_size_step=500,
)


# --- the arithmetic -------------------------------------------------------------------------


def test_a_batch_under_the_target_grows_the_next_one_by_the_step():
    decision = pacing.after_batch(SETTINGS, 1000, 0.2)
    assert decision.batch_size == 1500
    assert decision.reason == ""


def test_a_batch_over_the_target_halves_the_next_one_and_says_why():
    decision = pacing.after_batch(SETTINGS, 1000, 0.8)
    assert decision.batch_size == 500
    assert decision.reason == "over target duration (0.800 s > 0.5 s)"


def test_the_size_stays_within_its_bounds_and_the_jobs_maximum():
    assert pacing.after_batch(SETTINGS, 150, 2.0).batch_size == 100  # never below the minimum
    assert pacing.after_batch(SETTINGS, 4800, 0.1).batch_size == 5000  # never above the maximum
    assert pacing.after_batch(SETTINGS, 400, 0.1, job_max=500).batch_size == 500  # nor the job's


def test_the_pause_keeps_batches_within_their_share_of_wall_time():
    # share 0.25: a batch of 0.3 s is followed by 0.9 s of rest, so batches fill a quarter of the time.
    assert pacing.after_batch(SETTINGS, 1000, 0.3).pause == pytest.approx(0.9)
    assert pacing.duty_cycle_pause(0.4, 0.5) == pytest.approx(0.4)
    assert pacing.duty_cycle_pause(0.4, 1.0) == 0.0
    # The run's fixed interval is the shortest pause.
    assert pacing.after_batch(SETTINGS, 1000, 0.1, interval=2.0).pause == 2.0


def test_a_failed_batch_halves_the_next_one_with_the_failures_reason():
    decision = pacing.after_error(SETTINGS, 1000, "lock wait")
    assert (decision.batch_size, decision.reason) == (500, "lock wait")


def test_database_errors_are_named_for_what_they_say_about_the_database():
    import psycopg.errors

    def wrapped(cause):
        exc = OperationalError(str(cause))
        exc.__cause__ = cause
        return exc

    assert pacing.error_reason(wrapped(psycopg.errors.LockNotAvailable("canceling statement"))) == "lock wait"
    assert pacing.error_reason(wrapped(psycopg.errors.DeadlockDetected("deadlock detected"))) == "deadlock"
    assert pacing.error_reason(OperationalError(1205, "Lock wait timeout exceeded")) == "lock wait"
    assert pacing.error_reason(OperationalError(1213, "Deadlock found")) == "deadlock"
    assert pacing.error_reason(OperationalError("database is locked")) == "lock wait"
    assert pacing.error_reason(OperationalError("server closed the connection")) == (
        "database error (OperationalError)"
    )


def test_replica_lag_reason_names_the_lag_and_the_limit():
    assert pacing.lag_reason(12.34, 5) == "replica lag 12.3 s > 5 s"


# --- settings and per-run overrides ----------------------------------------------------------


def test_pacing_is_off_by_default_and_a_run_parameter_turns_it_on():
    assert pacing.resolve(None).enabled is False
    assert pacing.resolve(True).enabled is True
    custom = pacing.resolve({"target_batch_seconds": 1, "max_replica_lag": 2})
    assert custom.enabled is True  # asking for pacing settings means pacing
    assert (custom.target_batch_seconds, custom.max_replica_lag) == (1.0, 2.0)
    assert pacing.resolve({"enabled": False, "min_batch_size": 10}).enabled is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"target": 1}, "pacing.target: unknown setting"),
        ({"target_batch_seconds": 0}, "pacing.target_batch_seconds must be above 0"),
        ({"max_busy_share": 1.5}, "pacing.max_busy_share must be above 0 and at most 1, got 1.5"),
        ({"min_batch_size": 2.5}, "pacing.min_batch_size must be an integer, got 2.5"),
        ({"min_batch_size": 500, "max_batch_size": 100}, "pacing.min_batch_size (500) must not exceed"),
        ({"max_replica_lag": "5s"}, "pacing.max_replica_lag must be a number, got '5s'"),
        ({"enabled": "yes"}, "pacing.enabled must be true or false, got 'yes'"),
        ("fast", "pacing must be true, false or an object of pacing settings"),
    ],
)
def test_a_bad_pacing_parameter_is_refused_naming_the_setting(override, message):
    with pytest.raises(ValidationError) as caught:
        pacing.resolve(override)
    assert message in caught.value.message_dict["pacing"][0]


def test_bad_pacing_settings_are_improperly_configured_naming_the_key(settings):
    settings.OAUTH_MAINTENANCE = {"PACING_MAX_BUSY_SHARE": 0}
    with pytest.raises(ImproperlyConfigured, match=r"OAUTH_MAINTENANCE\['PACING_MAX_BUSY_SHARE'\] must be"):
        _ = maintenance_settings.PACING_MAX_BUSY_SHARE
    settings.OAUTH_MAINTENANCE = {"PACING_MIN_BATCH_SIZE": 20_000}
    with pytest.raises(ImproperlyConfigured, match=r"'PACING_MIN_BATCH_SIZE'\] \(20000\) must not exceed"):
        _ = maintenance_settings.PACING_MIN_BATCH_SIZE
    settings.OAUTH_MAINTENANCE = {"PACING_MIN_BATCH_SIZE": 20_000, "PACING_MAX_BATCH_SIZE": 30_000}
    assert maintenance_settings.PACING_MIN_BATCH_SIZE == 20_000
    settings.OAUTH_MAINTENANCE = {"REPLICA_DATABASES": ["nowhere"]}
    with pytest.raises(ImproperlyConfigured, match="names 'nowhere', which is not in DATABASES"):
        _ = maintenance_settings.REPLICA_DATABASES


def test_the_settings_give_the_defaults_of_every_new_run(settings, db):
    settings.OAUTH_MAINTENANCE = {"PACING": True, "PACING_TARGET_BATCH_SECONDS": 2, "MAX_REPLICA_LAG": 0}
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=700, enqueue=False)
    stored = run.pacing["settings"]
    assert (stored["enabled"], stored["target_batch_seconds"], stored["max_replica_lag"]) == (True, 2.0, 0.0)
    assert run.pacing_state()["batch_size"] == 700  # the run's batch size is the first batch's


@pytest.mark.django_db
def test_a_dispatch_with_bad_pacing_writes_nothing():
    with pytest.raises(ValidationError) as caught:
        engine.dispatch("cleanup", {}, trigger="test", pacing={"min_batch_size": 0}, enqueue=False)
    assert "pacing.min_batch_size must be between 1 and 100000, got 0" in caught.value.message_dict["pacing"]
    assert not MaintenanceRun.objects.exists()


# --- runs, in process --------------------------------------------------------------------------


def _run_here(run: MaintenanceRun) -> list[dict]:
    """Run every batch of ``run`` in this process; the pacing state after each batch."""
    states, number = [], run.batch_number
    while True:
        report = engine.run_batch(run.pk, number, chain=False)
        assert report.outcome in ("ran", "finished"), report
        states.append(run_status(run.pk).pacing_state())
        number = report.batch_number
        if report.outcome == "finished":
            return states


@pytest.mark.django_db(transaction=True)
def test_without_pacing_the_batch_size_and_interval_are_the_fixed_ones():
    ids = make_expired_grants(25)
    run, _ = engine.dispatch("cleanup", {"only": "grants"}, trigger="test", batch_size=10, enqueue=False)
    first = engine.run_batch(run.pk, 0, chain=False)
    stored = run_status(run.pk)
    assert first.counts == {"grants": 10}  # DOT's batch size, exactly
    assert stored.batch_size == 10 and stored.pacing_state() == {"enabled": False}
    assert stored.pacing_summary == "fixed"
    _run_here(stored)
    finished = run_status(run.pk)
    assert finished.counts == {"grants": len(ids)} and finished.batch_number == 3


@pytest.mark.django_db(transaction=True)
def test_a_paced_run_grows_its_batches_while_they_stay_under_the_target():
    make_expired_grants(60)
    run, _ = engine.dispatch(
        "cleanup",
        {"only": "grants"},
        trigger="test",
        batch_size=5,
        enqueue=False,
        pacing={
            "target_batch_seconds": 300,
            "min_batch_size": 1,
            "batch_size_step": 10,
            "max_replica_lag": 0,
        },
    )
    states = _run_here(run)
    # 5 rows, then 15, then 25: additive increase while batches are under the target.
    assert [state["batch_size"] for state in states[:2]] == [15, 25]
    assert run_status(run.pk).counts == {"grants": 60}
    assert all(state["reason"] == "" for state in states)


# --- runs on a real worker -----------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_batches_over_the_target_duration_shrink_the_batch_size_on_the_worker(worker):
    """Every batch takes longer than a target of a microsecond: the size halves down to the minimum."""
    ids = make_expired_grants(40)
    run, _ = engine.dispatch(
        "cleanup",
        {"only": "grants"},
        trigger="test",
        batch_size=16,
        pacing={"target_batch_seconds": 1e-6, "min_batch_size": 2, "max_busy_share": 1, "max_replica_lag": 0},
    )
    wait_until(
        lambda: run_status(run.pk).status == "succeeded", timeout=60, message="the paced run to finish"
    )
    finished = run_status(run.pk)
    state = finished.pacing_state()
    assert finished.counts == {"grants": len(ids)}
    assert state["batch_size"] == 2  # 16 -> 8 -> 4 -> 2, and it stays there
    assert state["last_slowdown"]["reason"].startswith("over target duration (")
    assert state["slowdowns"] == finished.batch_number
    assert finished.batch_size == 16  # the run's configured size is kept; the pace is beside it


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_row_lock_held_by_another_connection_halves_the_batch_and_records_lock_wait(worker):
    """A live transaction holds a lock on a row the cleanup must delete: the batch gives up after
    the lock timeout, the retry gets half the rows, the run says "lock wait" and finishes once the
    lock is released."""
    import psycopg
    from django.db import connection

    from oauth_provider.models import get_grant_model

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL lock_timeout; MySQL and MariaDB: tests/test_lanes_pacing.py")
    ids = make_expired_grants(30)
    table = get_grant_model()._meta.db_table
    params = connection.get_connection_params()
    holder = psycopg.connect(
        **{
            key: value
            for key, value in params.items()
            if key in ("host", "port", "user", "password", "dbname")
        }
    )
    try:
        holder.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [min(ids)])
        run, _ = engine.dispatch(
            "cleanup",
            {"only": "grants"},
            trigger="test",
            batch_size=20,
            # the retry's pause is the pacer's: 0.2 s of lock wait at a tenth of the time, 1.8 s
            pacing={
                "lock_timeout_seconds": 0.2,
                "min_batch_size": 1,
                "max_replica_lag": 0,
                "max_busy_share": 0.1,
            },
        )

        def backed_off():
            state = run_status(run.pk).pacing_state()
            return (state.get("last_slowdown") or {}).get("reason") == "lock wait"

        wait_until(backed_off, timeout=60, message="the run to back off on the lock")
        waiting = run_status(run.pk)
        assert waiting.pacing_state()["batch_size"] == 10  # halved by the lock wait
        assert waiting.counts.get("grants", 0) == 0  # nothing deleted while the lock is held
        assert "lock wait" in waiting.pacing_summary
    finally:
        holder.rollback()
        holder.close()
    wait_until(lambda: run_status(run.pk).status == "succeeded", timeout=90, message="the run to finish")
    finished = run_status(run.pk)
    assert finished.counts == {"grants": len(ids)}
    assert not get_grant_model().objects.filter(pk__in=ids).exists()


# --- where the pace is shown -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_admin_run_page_the_dashboard_and_the_api_show_the_pace_and_why_it_slowed(client):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    make_expired_grants(12)
    run, _ = engine.dispatch(
        "cleanup",
        {"only": "grants"},
        trigger="test",
        batch_size=8,
        enqueue=False,
        pacing={"target_batch_seconds": 1e-6, "min_batch_size": 2, "max_busy_share": 1, "max_replica_lag": 0},
    )
    engine.run_batch(run.pk, 0, chain=False)  # over a target of a microsecond: 8 -> 4
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw-12345!"))

    page = client.get(reverse("admin:oauth_tasks_maintenancerun_change", args=[run.pk])).content.decode()
    assert "4 rows, pause 0.00 s, slowed: over target duration (" in page

    poll = client.get(reverse("admin:oauth_tasks_dashboard_poll")).json()
    [row] = [row for row in poll["runs"] if row["run_id"] == run.pk]
    assert row["pacing"]["batch_size"] == 4 and row["pacing"]["reason"].startswith("over target duration")
    assert row["pace"].startswith("4 rows, pause 0.00 s, slowed: over target duration")
    dashboard = client.get(reverse("admin:oauth_tasks_maintenancedashboard_changelist")).content.decode()
    assert "paced: 4 rows" in dashboard

    document = client.get(reverse("oauth_tasks:api-run", args=[run.pk])).json()
    assert document["pacing"]["enabled"] is True and document["pacing"]["batch_size"] == 4
    assert document["pacing"]["last_slowdown"]["batch_number"] == 0

    # The decision lives on the row: the next batch, in any process, takes the paced size.
    assert engine.run_batch(run.pk, 1, chain=False).processed == 4
