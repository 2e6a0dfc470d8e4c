"""Lanes: one run split into disjoint key ranges, each its own fenced chain, on real workers.

Each test checks the result against rows whose fate is computed independently
(``CleanupDataset.expected``) and checks that the lanes of every phase tile its keys exactly: no key
in two lanes, none in no lane. Waits are bounded polls on the database, never timing assertions.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from oauth_provider.cleanup import ACCESS_TOKENS, GRANTS, ID_TOKENS
from oauth_provider.models import get_access_token_model, get_grant_model, get_id_token_model
from oauth_tasks import engine
from oauth_tasks.conf import maintenance_settings
from oauth_tasks.models import LaneStatus, MaintenanceLane, MaintenanceRun, RunStatus
from tests.conftest import make_expired_grants, run_status, wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]


def wait_finished(run_id: int, timeout: float = 90) -> MaintenanceRun:
    def done():
        run = run_status(run_id)
        return run if run.status not in (RunStatus.PENDING, RunStatus.RUNNING) else None

    return wait_until(done, timeout=timeout, message=f"run {run_id} to finish")


def assert_lanes_tile_their_phases(run: MaintenanceRun) -> None:
    """Per phase, the lanes' ranges ``(lo, hi]`` follow each other with no gap and no overlap."""
    phases = set(MaintenanceLane.objects.filter(run=run).values_list("phase", flat=True))
    for phase in phases:
        lanes = list(MaintenanceLane.objects.filter(run=run, phase=phase))
        ordered = sorted(lanes, key=lambda lane: -1 if lane.lo is None else lane.lo)
        assert ordered[0].lo is None, phase
        assert ordered[-1].hi is None, phase
        for below, above in zip(ordered, ordered[1:], strict=False):
            assert below.hi == above.lo, (phase, [(lane.lo, lane.hi) for lane in ordered])
        assert all(lane.status == LaneStatus.DONE for lane in lanes)
        assert sum(lane.processed for lane in lanes) >= run.total_counts.get(phase, 0)
    if run.status == RunStatus.SUCCEEDED:
        # Every phase ended, so every lane's counts were folded into the run row, each once.
        assert not MaintenanceLane.objects.filter(run=run, folded=False).exists()
        assert run.counts == run.total_counts


def dispatch_before_rows(cleanup_dataset, **kwargs):
    run, created = engine.dispatch("cleanup", {}, trigger="test", **kwargs)
    assert created
    return run, cleanup_dataset(now=run.cutoff)


@pytest.mark.worker
def test_two_workers_and_two_lanes_delete_exactly_what_the_rules_select(worker_factory, cleanup_dataset):
    run, ds = dispatch_before_rows(cleanup_dataset, batch_size=2, interval=0, lanes=2)
    grant_ids = make_expired_grants(30, ds.now)
    expected_kept, expected_counts = ds.expected()
    worker_factory()
    worker_factory()
    run = wait_finished(run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert run.lanes == 2
    assert run.total_counts == expected_counts
    assert ds.kept_now() == expected_kept
    assert not get_grant_model().objects.filter(pk__in=grant_ids).exists()
    assert MaintenanceLane.objects.filter(run=run, phase=GRANTS).count() >= 2
    assert_lanes_tile_their_phases(run)


@pytest.mark.worker
def test_a_laned_dry_run_counts_every_row_once(worker_factory, cleanup_dataset):
    # A dry run deletes nothing, so a row walked by two lanes would be counted twice.
    run, ds = dispatch_before_rows(cleanup_dataset, batch_size=2, interval=0, lanes=3, dry_run=True)
    make_expired_grants(25, ds.now)
    _, expected_counts = ds.expected()
    before = ds.snapshot()
    worker_factory()
    worker_factory()
    run = wait_finished(run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert run.total_counts == expected_counts
    assert ds.snapshot() == before
    assert_lanes_tile_their_phases(run)


@pytest.mark.worker
def test_a_lane_that_finishes_early_makes_another_split_its_range(worker_factory):
    # The lower half of the grants' keys is live, the upper half expired: the first lane has
    # nothing to do and finishes at once, the second has every row.
    ids = sorted(make_expired_grants(40))
    get_grant_model().objects.filter(pk__in=ids[:20]).update(
        expires=engine.timezone.now() + timedelta(days=1)
    )
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=1, interval=0.05, lanes=2)
    worker_factory()
    worker_factory()
    run = wait_finished(run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert run.total_counts[GRANTS] == 20
    assert set(get_grant_model().objects.filter(pk__in=ids).values_list("pk", flat=True)) == set(ids[:20])
    splits = MaintenanceLane.objects.filter(run=run, phase=GRANTS, split_from__isnull=False)
    assert splits.exists(), list(MaintenanceLane.objects.filter(run=run).values())
    assert_lanes_tile_their_phases(run)


@pytest.mark.worker
def test_a_worker_killed_mid_run_leaves_a_lane_the_watchdog_hands_to_the_other(
    worker_factory, celery_app, cleanup_dataset
):
    run, ds = dispatch_before_rows(cleanup_dataset, batch_size=1, interval=0.2, lanes=2)
    grant_ids = make_expired_grants(40, ds.now)
    expected_kept, expected_counts = ds.expected()
    first = worker_factory()
    second = worker_factory()
    wait_until(
        lambda: MaintenanceLane.objects.filter(run=run, phase=GRANTS, batch_number__gte=3).count() >= 2,
        timeout=90,
        message="the grants' lanes to be under way",
    )
    first.kill()
    assert run_status(run.pk).status == RunStatus.RUNNING, "the run finished before the kill"

    def overdue():
        now = engine.timezone.now()
        return MaintenanceLane.objects.filter(
            run=run, status=LaneStatus.RUNNING, next_batch_at__lt=now
        ).exists()

    wait_until(overdue, message="a lane to be overdue")
    celery_app.send_task("oauth_tasks.watchdog", kwargs={"stale_after": 0}).get(timeout=30)
    done = wait_finished(run.pk)

    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.total_counts == expected_counts
    assert ds.kept_now() == expected_kept
    assert not get_grant_model().objects.filter(pk__in=grant_ids).exists()
    assert second.process.poll() is None
    assert_lanes_tile_their_phases(done)


@pytest.mark.worker
def test_cancel_stops_every_lane(worker_factory):
    ids = make_expired_grants(60)
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=1, interval=0.3, lanes=3)
    worker_factory()
    wait_until(
        lambda: MaintenanceLane.objects.filter(run=run, phase=GRANTS, batch_number__gte=1).count() >= 2,
        timeout=60,
        message="the lanes to be under way",
    )
    engine.cancel(run.pk, by="test")
    wait_until(
        lambda: not MaintenanceLane.objects.filter(run=run, status=LaneStatus.RUNNING).exists(),
        message="every lane to stop",
    )
    cancelled = run_status(run.pk)
    left = get_grant_model().objects.filter(pk__in=ids).count()

    assert cancelled.status == RunStatus.CANCELLED
    assert 0 < left < 60
    assert cancelled.total_counts[GRANTS] == 60 - left
    assert set(MaintenanceLane.objects.filter(run=run).values_list("status", flat=True)) <= {
        LaneStatus.STOPPED,
        LaneStatus.DONE,
    }


@pytest.mark.parametrize(
    "value, fragment",
    [
        (0, "lanes must be a whole number from 1 to 64, got 0"),
        (65, "got 65"),
        ("two", "got 'two'"),
        (True, "got True"),
        (2.5, "got 2.5"),
    ],
)
def test_bad_lanes_values_are_refused_naming_the_option_and_nothing_is_written(value, fragment):
    with pytest.raises(ValidationError) as caught:
        engine.dispatch("cleanup", {}, trigger="test", lanes=value, enqueue=False)
    assert fragment in caught.value.message_dict["lanes"][0]
    assert not MaintenanceRun.objects.exists()
    assert not MaintenanceLane.objects.exists()


def test_lanes_with_a_limit_or_on_a_job_without_lanes_are_refused():
    with pytest.raises(ValidationError) as caught:
        engine.dispatch("cleanup", {"limit": 10}, trigger="test", lanes=2, enqueue=False)
    assert "lanes cannot be combined with limit" in caught.value.message_dict["lanes"][0]
    with pytest.raises(ValidationError) as caught:
        engine.dispatch("hash_client_secrets", {}, trigger="test", lanes=2, enqueue=False)
    assert "do not support lanes" in caught.value.message_dict["lanes"][0]
    assert not MaintenanceRun.objects.exists()


def test_the_api_refuses_bad_lanes_with_a_400_naming_the_field(admin_client):
    response = admin_client.post(
        "/maintenance/api/runs/",
        data=json.dumps({"kind": "cleanup", "lanes": 0}),
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["field"] == "lanes", body
    assert "lanes must be a whole number" in body["detail"]
    assert not MaintenanceRun.objects.exists()


def test_a_bad_lanes_setting_is_improperly_configured(settings):
    settings.OAUTH_MAINTENANCE = {"LANES": 0}
    with pytest.raises(ImproperlyConfigured, match=r"OAUTH_MAINTENANCE\['LANES'\]"):
        maintenance_settings.LANES


def test_the_lanes_setting_is_the_default_of_a_cleanup_and_ignored_by_jobs_without_lanes(settings):
    settings.OAUTH_MAINTENANCE = {"LANES": 4}
    cleanup_run, _ = engine.dispatch("cleanup", {}, trigger="test", enqueue=False)
    limited, _ = engine.dispatch("cleanup", {"limit": 5}, trigger="test", enqueue=False)
    assert cleanup_run.lanes == 4
    assert limited.lanes == 1


def test_a_run_with_an_overdue_lane_is_stalled_everywhere_and_its_lanes_finish_it(db):
    from oauth_tasks import lanes
    from oauth_tasks.health import check_runs

    ids = make_expired_grants(30)
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=2, interval=0, lanes=2, enqueue=False)
    engine.run_batch(run.pk, 0, chain=False)  # the empty phases, then the grants split in two
    run.refresh_from_db()
    assert run.phase == GRANTS and run.next_batch_at is None
    assert MaintenanceLane.objects.filter(run=run).count() == 2
    assert not run.is_stalled and check_runs()["stalled"] == []

    late = engine.timezone.now() - timedelta(hours=1)
    MaintenanceLane.objects.filter(run=run).update(next_batch_at=late, heartbeat_at=late)
    run.refresh_from_db()
    assert run.is_stalled and run.progress()["stalled"]
    assert [entry["run_id"] for entry in check_runs()["stalled"]] == [run.pk]

    # The lanes' batches, run here one after the other, finish the run.
    while MaintenanceLane.objects.filter(run=run, status=LaneStatus.RUNNING).exists():
        for lane in MaintenanceLane.objects.filter(run=run, status=LaneStatus.RUNNING):
            lanes.run_lane_batch(lane.pk, lane.batch_number, chain=False)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert run.total_counts[GRANTS] == 30
    assert not get_grant_model().objects.filter(pk__in=ids).exists()
    assert_lanes_tile_their_phases(run)


def test_the_dashboards_mean_batch_of_a_laned_run_counts_every_lanes_batches(db):
    """The chart's mean batch divides the run's time in batches (its lanes' folded in) by all its
    batches: the run's own chain's and every lane's, not the run's own alone."""
    from oauth_tasks import lanes
    from oauth_tasks.dashboard import batch_duration_chart

    make_expired_grants(30)
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=2, interval=0, lanes=2, enqueue=False)
    engine.run_batch(run.pk, 0, chain=False)
    while MaintenanceLane.objects.filter(run=run, status=LaneStatus.RUNNING).exists():
        for lane in MaintenanceLane.objects.filter(run=run, status=LaneStatus.RUNNING):
            lanes.run_lane_batch(lane.pk, lane.batch_number, chain=False)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.last_error
    batches = run.batch_number + sum(
        MaintenanceLane.objects.filter(run=run).values_list("batch_number", flat=True)
    )
    assert batches > 2 * run.batch_number
    MaintenanceRun.objects.filter(pk=run.pk).update(busy_seconds=0.25 * batches)

    assert f"<title>#{run.pk}: 0.25 s mean batch</title>" in str(batch_duration_chart())


@pytest.mark.worker
def test_a_cancelled_laned_run_resumes_its_lanes_and_deletes_each_row_once(worker_factory):
    ids = make_expired_grants(40)
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=1, interval=0.2, lanes=2)
    worker_factory()
    wait_until(
        lambda: MaintenanceLane.objects.filter(run=run, phase=GRANTS, batch_number__gte=2).count() >= 2,
        timeout=60,
        message="the lanes to be under way",
    )
    engine.cancel(run.pk, by="test")
    wait_until(
        lambda: not MaintenanceLane.objects.filter(run=run, status=LaneStatus.RUNNING).exists(),
        message="every lane to stop",
    )
    assert get_grant_model().objects.filter(pk__in=ids).exists()

    engine.resume(run.pk)
    done = wait_finished(run.pk)

    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.total_counts[GRANTS] == 40
    assert not get_grant_model().objects.filter(pk__in=ids).exists()
    assert_lanes_tile_their_phases(done)


def test_a_run_cancelled_as_its_last_lane_ends_moves_on_when_resumed(db, celery_app, monkeypatch):
    """The cancel lands while the phase's last lane runs its last batch: the lane ends, the run
    does not move on (it is cancelled). Resumed, nothing of the phase is left to send, so the run
    moves on by itself (here: the last phase, so it succeeds) instead of staying active with no
    batch to run."""
    from oauth_tasks import lanes
    from oauth_tasks.jobs import get_job

    ids = make_expired_grants(6)
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=2, interval=0, lanes=2, enqueue=False)
    engine.run_batch(run.pk, 0, chain=False)  # the empty phases, then the grants in two lanes
    job = get_job("cleanup")
    original = job.run_lane_batch

    def cancelled_during_the_last_batch(*args, **kwargs):
        outcome = original(*args, **kwargs)
        if outcome.phase_done:
            engine.cancel(run.pk, by="test")
        return outcome

    while True:
        running = list(MaintenanceLane.objects.filter(run=run, phase=GRANTS, status=LaneStatus.RUNNING))
        if not running:
            break
        if len(running) == 1:
            monkeypatch.setattr(job, "run_lane_batch", cancelled_during_the_last_batch)
        lanes.run_lane_batch(running[0].pk, running[0].batch_number, chain=False)
    monkeypatch.setattr(job, "run_lane_batch", original)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.phase == GRANTS
    assert not MaintenanceLane.objects.filter(run=run).exclude(status=LaneStatus.DONE).exists()
    assert not get_grant_model().objects.filter(pk__in=ids).exists()

    resumed = engine.resume(run.pk)
    resumed.refresh_from_db()
    assert resumed.status == RunStatus.SUCCEEDED, (resumed.status, resumed.last_error)
    assert resumed.counts[GRANTS] == 6 and resumed.counts == resumed.total_counts
    assert_lanes_tile_their_phases(resumed)


# --- counts: each lane counts on its own row, the run reports each row once ---------------------


def make_expired_phase_rows(count: int, now=None) -> dict[str, object]:
    """``count`` expired access tokens (no refresh token), ID tokens (no access token) and grants,
    and one live row of each; returns each phase's model."""
    import uuid

    from django.contrib.auth import get_user_model

    from oauth_provider.models import get_application_model

    now = now or engine.timezone.now()
    user = get_user_model().objects.create(username=f"phases-{uuid.uuid4().hex[:8]}")
    app = get_application_model().objects.create(
        name="phases-app",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris="https://example.com/cb",
    )
    access, id_token = get_access_token_model(), get_id_token_model()
    for expires in [now - timedelta(minutes=1)] * count + [now + timedelta(days=1)]:
        access.objects.create(user=user, application=app, token=uuid.uuid4().hex, expires=expires)
        id_token.objects.create(user=user, application=app, expires=expires)
    make_expired_grants(count, now)
    get_grant_model().objects.filter(pk=make_expired_grants(1, now)[0]).update(
        expires=now + timedelta(days=1)
    )
    return {ACCESS_TOKENS: access, ID_TOKENS: id_token, GRANTS: get_grant_model()}


def deleted_per_phase(models: dict[str, object], before: dict[str, int]) -> dict[str, int]:
    return {phase: before[phase] - model.objects.count() for phase, model in models.items()}


def test_a_laned_run_reports_each_deleted_row_once_after_every_batch_splits_and_phase_ends(db):
    """Lane batches driven one at a time in this process: after every batch the run's reported
    counts (the row, the progress document, the API's serializer) equal the rows deleted so far,
    per phase, through splits, phase ends (where the lanes' counts are folded into the run row)
    and duplicate messages."""
    from django.test import RequestFactory

    from oauth_tasks import lanes
    from oauth_tasks.api import serialize_run

    models = make_expired_phase_rows(24)
    before = {phase: model.objects.count() for phase, model in models.items()}
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=3, interval=0, lanes=2, enqueue=False)
    request = RequestFactory().get("/")

    def check(current: MaintenanceRun) -> None:
        deleted = deleted_per_phase(models, before)
        reported = current.total_counts
        assert {phase: reported.get(phase, 0) for phase in models} == deleted
        assert current.progress()["counts"] == reported
        assert serialize_run(request, current)["counts"] == reported
        assert current.total_processed == sum(reported.values())

    phases_laned = set()
    while True:
        run.refresh_from_db()
        check(run)
        if run.status != RunStatus.RUNNING and run.batch_number > 0:
            break
        running = list(MaintenanceLane.objects.filter(run=run, phase=run.phase, status=LaneStatus.RUNNING))
        if not running:
            engine.run_batch(run.pk, run.batch_number, chain=False)
            continue
        phases_laned.add(run.phase)
        # The lowest lane first, to its end: then the other one has it all left and splits.
        lane = min(running, key=lambda lane: lane.index)
        lanes.run_lane_batch(lane.pk, lane.batch_number, chain=False)
        # The same message again, and the lane's first one: stale, they do nothing.
        assert lanes.run_lane_batch(lane.pk, lane.batch_number, chain=False)["outcome"] == "stale"
        if lane.batch_number:
            assert lanes.run_lane_batch(lane.pk, 0, chain=False)["outcome"] == "stale"

    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert phases_laned >= {ACCESS_TOKENS, ID_TOKENS, GRANTS}
    assert {phase: run.counts[phase] for phase in models} == {phase: 24 for phase in models}
    assert MaintenanceLane.objects.filter(run=run, split_from__isnull=False).exists()
    # Nothing counted twice: every lane folded, the run row alone holds the counts.
    assert run.counts == run.total_counts
    assert_lanes_tile_their_phases(run)


@pytest.mark.worker
def test_a_two_worker_laned_run_reports_the_rows_it_deleted_per_phase(worker_factory):
    models = make_expired_phase_rows(30)
    before = {phase: model.objects.count() for phase, model in models.items()}
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=2, interval=0, lanes=2)
    worker_factory()
    worker_factory()
    done = wait_finished(run.pk)

    assert done.status == RunStatus.SUCCEEDED, done.last_error
    deleted = deleted_per_phase(models, before)
    assert deleted == {phase: 30 for phase in models}
    assert {phase: done.total_counts[phase] for phase in models} == deleted
    assert {phase: done.counts[phase] for phase in models} == deleted
    assert done.progress()["total"] == sum(done.total_counts.values())
    assert {
        phase for phase in models if MaintenanceLane.objects.filter(run=done, phase=phase).count() >= 2
    } == set(models)
    assert_lanes_tile_their_phases(done)


def test_a_lane_batch_leaves_the_run_row_unlocked_until_its_phase_ends(db):
    """Another connection holds the run row's lock; a lane batch that neither ends its phase nor
    splits nor slows still commits (it would wait for the lock if it wrote to the run row)."""
    from django.db import connection

    from oauth_tasks import lanes

    if connection.vendor == "sqlite":
        pytest.skip("SQLite locks the whole database for a write, not rows")
    make_expired_grants(40)
    run, _ = engine.dispatch(
        "cleanup", {"only": "grants"}, trigger="test", batch_size=2, interval=0, lanes=2, enqueue=False
    )
    engine.run_batch(run.pk, 0, chain=False)
    lane = MaintenanceLane.objects.filter(run=run, phase=GRANTS).order_by("index").first()
    holder = _other_connection()
    try:
        _lock_run_row(holder, run.pk)
        # A batch that waited for the run row would fail on this bound instead of hanging.
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET lock_timeout = '5s'")
            else:
                cursor.execute("SET SESSION innodb_lock_wait_timeout = 5")
        report = lanes.run_lane_batch(lane.pk, 0, chain=False)
    finally:
        holder.rollback()
        holder.close()
    assert report["outcome"] == "ran" and report["processed"] == 2
    lane.refresh_from_db()
    assert lane.counts == {GRANTS: 2} and lane.batch_number == 1
    assert run_status(run.pk).total_counts[GRANTS] == 2


def _other_connection():
    """A second connection to the test database, outside Django's (its own transaction)."""
    from django.db import connection

    params = connection.get_connection_params()
    if connection.vendor == "postgresql":
        import psycopg

        keys = ("host", "port", "user", "password", "dbname")
        return psycopg.connect(**{key: value for key, value in params.items() if key in keys})
    import MySQLdb

    keys = ("host", "port", "user", "passwd", "password", "db", "database")
    return MySQLdb.connect(**{key: value for key, value in params.items() if key in keys})


def _lock_run_row(holder, run_id: int) -> None:
    table = MaintenanceRun._meta.db_table
    cursor = holder.cursor()
    if hasattr(holder, "autocommit") and callable(holder.autocommit):
        holder.autocommit(False)
    cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [run_id])
