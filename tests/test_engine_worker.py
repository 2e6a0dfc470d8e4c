"""The engine on a real worker process, broker and database: runs finish, exactly once, whatever happens.

Each test builds rows whose fate is computed independently (``CleanupDataset.expected``), starts
real ``celery worker`` processes and watches the run row. Waits are bounded polls on the database,
never timing assertions.
"""

from __future__ import annotations

import pytest

from oauth_provider.cleanup import GRANTS, PHASES, clear_expired
from oauth_tasks import engine
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import make_expired_grants, run_status, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def finished(run_id: int) -> MaintenanceRun | None:
    run = run_status(run_id)
    return run if run.status not in (RunStatus.PENDING, RunStatus.RUNNING) else None


def wait_finished(run_id: int, timeout: float = 60) -> MaintenanceRun:
    return wait_until(lambda: finished(run_id), timeout=timeout, message=f"run {run_id} to finish")


def dispatch_before_rows(cleanup_dataset, **kwargs):
    """Dispatch a cleanup while no worker runs, then build rows around the run's frozen cutoff.

    The run judges expiry against its cutoff, taken at dispatch; building the rows around it puts
    the equality edges (``expires == cutoff``) exactly where the worker will look.
    """
    run, created = engine.dispatch("cleanup", {}, trigger="test", **kwargs)
    assert created
    return run, cleanup_dataset(now=run.cutoff)


def test_a_cleanup_run_on_the_worker_deletes_exactly_what_the_rules_select(worker_factory, cleanup_dataset):
    run, ds = dispatch_before_rows(cleanup_dataset, batch_size=3, interval=0)
    expected_kept, expected_counts = ds.expected()
    worker_factory()
    run = wait_finished(run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert run.counts == expected_counts
    assert ds.kept_now() == expected_kept
    assert run.batch_number >= sum(expected_counts.values()) // 3
    assert run.started_at and run.finished_at and run.finished_at >= run.started_at


def test_clear_expired_in_process_gives_the_same_result_as_a_worker_run(worker_factory, cleanup_dataset):
    run, first = dispatch_before_rows(cleanup_dataset, batch_size=4, interval=0)
    kept_first, expected = first.expected()
    worker_factory()
    run = wait_finished(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert first.kept_now() == kept_first

    # The same rows again, alone in the tables, cleaned in process.
    for model in first.models.values():
        model.objects.all().delete()
    second = cleanup_dataset(prefix="inproc")
    kept_second, expected_second = second.expected()
    assert expected_second == expected
    assert clear_expired(now=second.now, batch_size=4) == run.counts == expected
    assert second.kept_now() == kept_second


def test_a_dry_run_on_the_worker_counts_and_deletes_nothing(worker_factory, cleanup_dataset):
    run, ds = dispatch_before_rows(cleanup_dataset, dry_run=True, batch_size=2)
    _, expected_counts = ds.expected()
    before = ds.snapshot()
    worker_factory()
    run = wait_finished(run.pk)

    assert run.status == RunStatus.SUCCEEDED and run.dry_run
    assert run.counts == expected_counts
    assert ds.snapshot() == before


def test_a_duplicated_batch_message_changes_nothing(worker, celery_app):
    ids = make_expired_grants(6)
    grant_model = __import__("oauth_provider.models", fromlist=["Grant"]).get_grant_model()
    # An hour between batches: after the first batch the run waits, and the test owns the timing.
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=2, interval=3600)
    wait_until(lambda: run_status(run.pk).batch_number == 1, message="the first batch")
    after_first = set(grant_model.objects.filter(pk__in=ids).values_list("pk", flat=True))
    assert len(after_first) == 4

    # The first batch's message, delivered twice more, and the second batch's message twice.
    replays = [celery_app.send_task("oauth_tasks.run_batch", args=[run.pk, 0]) for _ in range(2)]
    assert [r.get(timeout=30)["outcome"] for r in replays] == ["stale", "stale"]
    assert run_status(run.pk).batch_number == 1
    assert set(grant_model.objects.filter(pk__in=ids).values_list("pk", flat=True)) == after_first

    second = [celery_app.send_task("oauth_tasks.run_batch", args=[run.pk, 1]) for _ in range(2)]
    outcomes = sorted(r.get(timeout=30)["outcome"] for r in second)
    assert outcomes == ["ran", "stale"]
    current = run_status(run.pk)
    assert current.batch_number == 2
    assert current.counts[GRANTS] == 4
    assert grant_model.objects.filter(pk__in=ids).count() == 2


def test_two_dispatches_of_the_same_job_create_one_run(worker):
    make_expired_grants(4)
    first, created_first = engine.dispatch("cleanup", {}, trigger="view", batch_size=1, interval=3600)
    second, created_second = engine.dispatch("cleanup", None, trigger="beat", batch_size=500)

    assert created_first and not created_second
    assert second.pk == first.pk
    assert MaintenanceRun.objects.filter(kind="cleanup").count() == 1
    # A dry run is different work and may run beside it.
    dry, created_dry = engine.dispatch("cleanup", {}, trigger="view", dry_run=True)
    assert created_dry and dry.pk != first.pk


def test_a_worker_killed_mid_run_is_followed_by_a_new_worker_that_finishes_it(
    worker_factory, celery_app, cleanup_dataset
):
    run, ds = dispatch_before_rows(cleanup_dataset, batch_size=2, interval=0.3)
    grant_ids = make_expired_grants(40, ds.now)
    expected_kept, expected_counts = ds.expected()
    first = worker_factory()
    wait_until(lambda: run_status(run.pk).batch_number >= 3, message="the run to be under way")
    first.kill()
    killed_at = run_status(run.pk)
    assert killed_at.status == RunStatus.RUNNING, "the run finished before the kill: make it longer"

    # The killed worker took its messages with it (unacknowledged until Redis's visibility timeout):
    # the watchdog finds the overdue run in the database and re-enqueues its current batch.
    second = worker_factory()
    wait_until(
        lambda: engine.find_stalled_runs(0).filter(pk=run.pk).exists(), message="the run to be overdue"
    )
    celery_app.send_task("oauth_tasks.watchdog", kwargs={"stale_after": 0}).get(timeout=30)
    done = wait_finished(run.pk)

    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.requeue_count >= 1
    assert done.batch_number > killed_at.batch_number
    assert done.counts == expected_counts
    assert ds.kept_now() == expected_kept
    assert not ds.models["grant"].objects.filter(pk__in=grant_ids).exists()
    assert second.process.poll() is None


def test_the_watchdog_resumes_a_run_whose_message_was_deleted_from_the_broker(
    worker_factory, celery_app, redis_client, cleanup_dataset
):
    run, ds = dispatch_before_rows(cleanup_dataset, batch_size=5)
    expected_kept, expected_counts = ds.expected()
    assert redis_client.llen("maintenance") == 1
    redis_client.flushdb()  # the broker lost the message (a restart without persistence)
    worker_factory()

    assert run_status(run.pk).status == RunStatus.PENDING
    wait_until(
        lambda: engine.find_stalled_runs(0).filter(pk=run.pk).exists(), message="the run to be overdue"
    )
    requeued = celery_app.send_task("oauth_tasks.watchdog", kwargs={"stale_after": 0}).get(timeout=30)
    assert run.pk in requeued
    done = wait_finished(run.pk)

    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.counts == expected_counts
    assert ds.kept_now() == expected_kept


def test_cancel_stops_the_run_after_its_current_batch(worker, celery_app):
    ids = make_expired_grants(10)
    grant_model = __import__("oauth_provider.models", fromlist=["Grant"]).get_grant_model()
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=2, interval=2)
    wait_until(lambda: run_status(run.pk).batch_number >= 1, message="the first batch")

    cancelled = engine.cancel(run, by="tester")
    assert cancelled.status == RunStatus.CANCELLED and cancelled.cancel_requested
    left = grant_model.objects.filter(pk__in=ids).count()
    assert 0 < left < 10
    # The next batch's message still arrives; it finds a cancelled run and does nothing.
    pending = celery_app.AsyncResult(cancelled.celery_task_id)
    assert pending.get(timeout=30)["outcome"] == "stale"
    after = run_status(run.pk)
    assert after.status == RunStatus.CANCELLED
    assert after.batch_number == cancelled.batch_number
    assert grant_model.objects.filter(pk__in=ids).count() == left

    # Resume continues from the cursor and finishes the job.
    engine.resume(after)
    done = wait_finished(run.pk)
    assert done.status == RunStatus.SUCCEEDED
    assert done.counts[GRANTS] == 10
    assert set(done.counts) <= set(PHASES)
    assert not grant_model.objects.filter(pk__in=ids).exists()
