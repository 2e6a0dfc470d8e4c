"""Dispatch, the run row and the job registry, driven in process (batches run here, not on a worker)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from oauth_provider.cleanup import GRANTS, PHASES
from oauth_tasks import engine
from oauth_tasks.jobs import all_jobs, get_job, register_migration, unregister_job
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import make_expired_grants


def drive(run: MaintenanceRun, limit: int = 1000) -> MaintenanceRun:
    """Run batches in process until the run finishes, as the worker would."""
    for _ in range(limit):
        run.refresh_from_db()
        if not run.is_active:
            return run
        engine.run_batch(run.pk, run.batch_number)
    raise AssertionError("the run did not finish")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"kind": "nope"}, "kind"),
        ({"params": {"user": 3}}, "user"),
        ({"params": ["x"]}, "params"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 100_001}, "batch_size"),
        ({"batch_size": "many"}, "batch_size"),
        ({"interval": -0.5}, "interval"),
        ({"interval": 3601}, "interval"),
        ({"trigger": ""}, "trigger"),
        ({"dry_run": "yes"}, "dry_run"),
    ],
)
def test_bad_dispatch_input_is_refused_naming_the_field_and_creates_nothing(kwargs, field):
    call = {"kind": "cleanup", "params": {}, "trigger": "test", **kwargs}
    kind, params = call.pop("kind"), call.pop("params")
    with pytest.raises(ValidationError) as excinfo:
        engine.dispatch(kind, params, **call)
    assert field in excinfo.value.message_dict
    assert not MaintenanceRun.objects.exists()


@pytest.mark.django_db
def test_the_database_allows_one_active_run_per_job_and_parameters():
    run, _ = engine.dispatch("cleanup", {}, trigger="test")
    clone = {
        f.attname: getattr(run, f.attname) for f in MaintenanceRun._meta.concrete_fields if not f.primary_key
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        MaintenanceRun.objects.create(**clone)
    # Once the run is over, the same work may start again.
    engine.cancel(run)
    again, created = engine.dispatch("cleanup", {}, trigger="test")
    assert created and again.pk != run.pk


@pytest.mark.django_db
def test_a_run_in_process_counts_per_phase_and_finishes(cleanup_dataset):
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=2)
    ds = cleanup_dataset(now=run.cutoff)
    expected_kept, expected_counts = ds.expected()
    run = drive(run)
    assert run.status == RunStatus.SUCCEEDED
    assert run.counts == expected_counts
    assert ds.kept_now() == expected_kept
    assert run.progress()["total"] == sum(expected_counts.values())


@pytest.mark.django_db
def test_a_run_with_nothing_to_do_takes_one_batch():
    run, _ = engine.dispatch("cleanup", {}, trigger="test")
    report = engine.run_batch(run.pk, 0)
    run.refresh_from_db()
    assert report.outcome == "finished"
    assert (run.status, run.batch_number) == (RunStatus.SUCCEEDED, 1)
    assert run.counts == dict.fromkeys(PHASES, 0)


@pytest.mark.django_db
def test_a_stale_batch_number_does_nothing():
    make_expired_grants(3)
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=1)
    engine.run_batch(run.pk, 0)
    run.refresh_from_db()
    snapshot = (run.batch_number, run.counts, run.cursor, run.phase)
    for number in (0, 5):
        assert engine.run_batch(run.pk, number).outcome == "stale"
    run.refresh_from_db()
    assert (run.batch_number, run.counts, run.cursor, run.phase) == snapshot
    assert engine.run_batch(10**9, 0).outcome == "missing"


@pytest.mark.django_db
def test_a_failed_run_records_the_error_and_resumes_from_its_cursor():
    ids = make_expired_grants(4)
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=1)
    for _ in range(3):
        run.refresh_from_db()
        engine.run_batch(run.pk, run.batch_number)
    run.refresh_from_db()
    assert engine.mark_failed(run.pk, run.batch_number, RuntimeError("disk full"))
    assert not engine.mark_failed(run.pk, run.batch_number, "twice")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "disk full" in run.last_error
    cursor_before = run.cursor

    resumed = engine.resume(run)
    assert resumed.status == RunStatus.RUNNING and resumed.cursor == cursor_before
    done = drive(resumed)
    assert done.status == RunStatus.SUCCEEDED and done.counts[GRANTS] == len(ids)
    with pytest.raises(ValueError):
        engine.resume(done)


@pytest.mark.django_db
def test_resuming_into_an_active_duplicate_is_a_conflict():
    run, _ = engine.dispatch("cleanup", {}, trigger="test")
    engine.cancel(run)
    other, _ = engine.dispatch("cleanup", {}, trigger="test")
    with pytest.raises(engine.RunConflict) as excinfo:
        engine.resume(run)
    assert excinfo.value.run.pk == other.pk


@pytest.mark.django_db
def test_the_watchdog_finds_only_overdue_active_runs():
    from datetime import timedelta

    run, _ = engine.dispatch("cleanup", {}, trigger="test")
    assert not engine.find_stalled_runs(60).exists()
    MaintenanceRun.objects.filter(pk=run.pk).update(
        next_batch_at=timezone.now() - timedelta(minutes=5),
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    assert list(engine.find_stalled_runs(60)) == [run]
    assert engine.requeue_stalled_runs(60) == [run.pk]
    run.refresh_from_db()
    # Still stalled (no batch committed), but the copy just sent gets a full margin before another.
    assert run.requeue_count == 1 and list(engine.find_stalled_runs(60)) == [run]
    assert engine.requeue_stalled_runs(60) == []
    engine.cancel(run)
    MaintenanceRun.objects.filter(pk=run.pk).update(next_batch_at=timezone.now() - timedelta(minutes=5))
    assert engine.requeue_stalled_runs(60) == []


@pytest.mark.django_db
def test_the_stall_margin_comes_from_the_settings(settings):
    from datetime import timedelta

    run, _ = engine.dispatch("cleanup", {}, trigger="test")
    MaintenanceRun.objects.filter(pk=run.pk).update(
        next_batch_at=timezone.now() - timedelta(seconds=30),
        heartbeat_at=timezone.now() - timedelta(seconds=30),
    )
    settings.OAUTH_MAINTENANCE = {"STALL_SECONDS": 60}
    assert engine.requeue_stalled_runs() == []
    settings.OAUTH_MAINTENANCE = {"STALL_SECONDS": 20}
    assert engine.requeue_stalled_runs() == [run.pk]
    settings.OAUTH_MAINTENANCE = {"STALL_SECONDS": -1}
    with pytest.raises(ImproperlyConfigured, match="STALL_SECONDS"):
        engine.requeue_stalled_runs()


@pytest.mark.django_db(transaction=True)
def test_the_watchdog_leaves_alone_an_overdue_run_whose_batch_holds_the_row_lock():
    """A batch in flight holds the run row's lock: however late, it is not a lost batch."""
    import threading
    from datetime import timedelta

    from django.db import connection

    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite: a batch in flight holds the write lock and the watchdog waits for it")
    run, _ = engine.dispatch("cleanup", {}, trigger="test")
    past = timezone.now() - timedelta(minutes=5)
    MaintenanceRun.objects.filter(pk=run.pk).update(next_batch_at=past, heartbeat_at=past)
    locked, release = threading.Event(), threading.Event()

    def batch_in_flight():
        with transaction.atomic():
            MaintenanceRun.objects.select_for_update().get(pk=run.pk)
            locked.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=batch_in_flight)
    thread.start()
    try:
        assert locked.wait(30)
        assert engine.requeue_stalled_runs(0) == []
    finally:
        release.set()
        thread.join()
    assert engine.requeue_stalled_runs(0) == [run.pk]


@pytest.mark.django_db
def test_a_project_registers_its_own_migration_job_and_the_engine_runs_it():
    from oauth_provider.models import get_grant_model

    grant_model = get_grant_model()
    ids = make_expired_grants(7)

    def rename_scope(rows, params):
        return rows.update(scope=params["to"])

    register_migration(
        "test_rename_grant_scope",
        queryset=lambda params: grant_model.objects.filter(scope=params["from"]),
        batch=rename_scope,
        params_schema={
            "type": "object",
            "properties": {
                "from": {"type": "string", "minLength": 1},
                "to": {"type": "string", "minLength": 1},
            },
            "required": ["from", "to"],
            "additionalProperties": False,
        },
        batch_size=3,
    )
    try:
        assert "test_rename_grant_scope" in all_jobs()
        schema = get_job("test_rename_grant_scope").describe()["params_schema"]
        assert schema["required"] == ["from", "to"]
        with pytest.raises(ValidationError) as excinfo:
            engine.dispatch("test_rename_grant_scope", {"from": ""}, trigger="test")
        assert "from" in excinfo.value.message_dict
        with pytest.raises(ValidationError) as excinfo:
            engine.dispatch("test_rename_grant_scope", {"from": "a"}, trigger="test")
        assert "to" in excinfo.value.message_dict

        grant_model.objects.filter(pk__in=ids).update(scope="x")
        run, _ = engine.dispatch(
            "test_rename_grant_scope", {"from": "x", "to": "read"}, trigger="test", dry_run=True
        )
        run = drive(run)
        assert run.counts == {"rows": 7} and set(grant_model.objects.values_list("scope", flat=True)) == {"x"}
        run, _ = engine.dispatch("test_rename_grant_scope", {"from": "x", "to": "read"}, trigger="test")
        run = drive(run)
        assert run.status == RunStatus.SUCCEEDED and run.counts == {"rows": 7}
        assert run.batch_number == 3
        assert set(grant_model.objects.values_list("scope", flat=True)) == {"read"}
    finally:
        unregister_job("test_rename_grant_scope")


def test_every_job_publishes_a_parameter_schema_and_bounds():
    described = {name: job.describe() for name, job in all_jobs().items()}
    assert "cleanup" in described
    for name, info in described.items():
        assert info["params_schema"]["type"] == "object"
        expected_max = 500 if name == "hash_client_secrets" else 100_000
        assert info["batch_size"]["maximum"] == expected_max and info["interval"]["maximum"] == 3600
