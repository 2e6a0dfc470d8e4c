"""What Flower sees: the batches, each labelled with its run, job and batch; not the watchdog."""

from __future__ import annotations

import threading

import pytest
from django.utils import timezone

from oauth_tasks import engine
from oauth_tasks.models import MaintenanceRun, RunStatus
from oauth_tasks.tasks import watchdog
from tests.conftest import wait_until
from tests.factories import make_access_token, make_application


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_watchdog_sends_no_task_event_while_the_batches_it_requeues_do(
    worker_factory, celery_app, redis_client
):
    application = make_application()
    make_access_token(application, expires_in=-60)
    run, _ = engine.dispatch("cleanup", {}, trigger="admin")
    # The first message is lost before any worker runs: the run is stalled until the watchdog.
    redis_client.flushdb()
    an_hour_ago = timezone.now() - timezone.timedelta(hours=1)
    MaintenanceRun.objects.filter(pk=run.pk).update(next_batch_at=an_hour_ago)
    worker_factory()
    events: list[dict] = []
    with celery_app.connection_for_read() as connection:
        receiver = celery_app.events.Receiver(connection, handlers={"*": events.append})
        listener = threading.Thread(target=receiver.capture, kwargs={"limit": None, "timeout": None})
        listener.start()
        try:
            wait_until(lambda: any(e["type"] == "worker-heartbeat" for e in events), message="events")
            sent = watchdog.apply_async(kwargs={"stale_after": 60})
            wait_until(
                lambda: MaintenanceRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED,
                message="the requeued run to finish",
            )
            wait_until(
                lambda: any(e["type"] == "task-succeeded" for e in events),
                message="the batch's task-succeeded event",
            )
        finally:
            receiver.should_stop = True
            listener.join(10)
    run.refresh_from_db()

    assert run.requeue_count == 1  # the watchdog ran
    task_events = [e for e in events if e["type"].startswith("task-")]
    assert not [e for e in task_events if e.get("uuid") == sent.id]
    received = [e for e in task_events if e["type"] == "task-received"]
    assert {e["name"] for e in received} == {"oauth_tasks.run_batch"}
    assert all(e["args"].startswith(f"(run={run.pk}, job=cleanup, batch=") for e in received)
