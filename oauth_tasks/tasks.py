"""Celery tasks of the maintenance worker.

Tasks are thin: the engine does the work and keeps the state in the database. All of them are named
``oauth_tasks.*`` so ``celeryconfig.task_routes`` sends them to the ``maintenance`` queue.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError

from . import engine, worker_connections  # noqa: F401 (its receivers manage the connections)
from .pacing import MAX_RETRY_PAUSE

logger = logging.getLogger(__name__)

#: The task a beat entry runs to start the daily cleanup (read by the health checks too).
CLEANUP_TASK_NAME = "oauth_tasks.start_cleanup"
WATCHDOG_TASK_NAME = "oauth_tasks.watchdog"

#: A batch is a few statements over at most 100k rows; past the soft limit it is rolled back.
BATCH_SOFT_TIME_LIMIT = 240
BATCH_TIME_LIMIT = 300
#: Transient database errors (a dropped connection, a deadlock, a lock timeout) are retried.
BATCH_MAX_RETRIES = 5

#: The delivery, time and retry options every batch task shares.
BATCH_TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": BATCH_SOFT_TIME_LIMIT,
    "time_limit": BATCH_TIME_LIMIT,
    "max_retries": BATCH_MAX_RETRIES,
    "ignore_result": False,
}


def _run_or_retry(task, work, *, what: str, key: tuple[str, int], batch_number: int, fail, before_retry=None):
    """Run one batch's ``work``; a database error or soft time limit is retried with back-off, and
    once the retries are spent, or on any other error (a bug or bad data: retrying would fail the
    same way), ``fail`` records why and it is raised.

    ``before_retry(exc, countdown, failed_seconds)`` hears of a retried error first: a paced run's
    pacer halves the next batch, records the reason and returns its own pause, which replaces the
    fixed back-off (2, 4, 8... s); None keeps the fixed one (pacing off, or the batch moved on).
    """
    name, ident = key
    started = time.monotonic()
    try:
        return work()
    except (DatabaseError, InterfaceError, SoftTimeLimitExceeded) as exc:
        from django.db import close_old_connections

        close_old_connections()
        if task.request.retries < task.max_retries:
            countdown: float = min(MAX_RETRY_PAUSE, 2 ** (task.request.retries + 1))
            if before_retry is not None:
                try:
                    paced = before_retry(exc, countdown, time.monotonic() - started)
                except (DatabaseError, InterfaceError):
                    close_old_connections()
                else:
                    if paced is not None:
                        countdown = min(MAX_RETRY_PAUSE, max(0.0, paced))
            logger.warning(
                f"maintenance {what} retry {name}=%s batch=%s error=%s countdown=%.2fs",
                ident,
                batch_number,
                type(exc).__name__,
                countdown,
                extra={f"{name}_id": ident, "event": "batch_retry"},
            )
            raise task.retry(exc=exc, countdown=countdown) from exc
        fail(exc)
        logger.exception(f"maintenance {what} failed {name}=%s batch=%s", ident, batch_number)
        raise
    except Exception as exc:
        fail(exc)
        logger.exception(f"maintenance {what} failed {name}=%s batch=%s", ident, batch_number)
        raise


def _log_batch(report: engine.BatchReport) -> None:
    if report.outcome == "waiting":
        return  # the engine logged why (replica lag); the same batch is due again shortly
    if report.outcome in ("stale", "missing"):
        logger.info(
            "maintenance batch skipped run=%s outcome=%s status=%s batch=%s",
            report.run_id,
            report.outcome,
            report.status,
            report.batch_number,
            extra={
                "run_id": report.run_id,
                "job": report.kind,
                "event": "batch_skipped",
                "outcome": report.outcome,
            },
        )
        return
    logger.info(
        "maintenance batch run=%s job=%s phase=%s batch=%s processed=%s status=%s duration=%.3fs counts=%s",
        report.run_id,
        report.kind,
        report.phase,
        report.batch_number,
        report.processed,
        report.status,
        report.duration,
        report.counts,
        extra={
            "run_id": report.run_id,
            "job": report.kind,
            "phase": report.phase,
            "batch_number": report.batch_number,
            "processed": report.processed,
            "counts": report.counts,
            "duration": round(report.duration, 4),
            "event": "batch",
        },
    )
    if report.outcome in ("finished", "cancelled"):
        from .models import MaintenanceRun

        run = MaintenanceRun.objects.filter(pk=report.run_id).first()
        duration = run.duration.total_seconds() if run and run.duration else 0.0
        logger.info(
            "maintenance run %s run=%s job=%s batches=%s total=%s duration=%.3fs counts=%s",
            report.status,
            report.run_id,
            report.kind,
            report.batch_number,
            sum(report.counts.values()),
            duration,
            report.counts,
            extra={
                "run_id": report.run_id,
                "job": report.kind,
                "status": report.status,
                "counts": report.counts,
                "duration": round(duration, 4),
                "event": "run_finished",
            },
        )


@shared_task(bind=True, name="oauth_tasks.run_batch", **BATCH_TASK_OPTIONS)
def run_batch(self, run_id: int, batch_number: int) -> dict[str, Any]:
    """Run batch ``batch_number`` of maintenance run ``run_id`` (a stale number does nothing)."""
    self.update_state(
        state="PROGRESS", meta={"run_id": run_id, "batch_number": batch_number, "stage": "started"}
    )
    report = _run_or_retry(
        self,
        lambda: engine.run_batch(run_id, batch_number),
        what="batch",
        key=("run", run_id),
        batch_number=batch_number,
        fail=lambda exc: engine.mark_failed(run_id, batch_number, exc),
        # a paced run takes the failure as a signal: the retry runs with half the rows
        before_retry=lambda exc, countdown, failed: engine.record_batch_error(
            run_id, batch_number, exc, countdown, failed
        ),
    )
    _log_batch(report)
    meta = report.as_dict()
    if report.outcome in ("ran", "finished", "cancelled", "waiting"):
        self.update_state(state="PROGRESS", meta=meta)
        # Flower follows events, not the result backend: the same progress as a custom event.
        self.send_event("task-progress", retry=False, **meta)
    return meta


@shared_task(bind=True, name="oauth_tasks.run_lane_batch", **BATCH_TASK_OPTIONS)
def run_lane_batch(self, lane_id: int, batch_number: int) -> dict[str, Any]:
    """Run batch ``batch_number`` of one lane of a run split into lanes (a stale number does nothing)."""
    from . import lanes

    report = _run_or_retry(
        self,
        lambda: lanes.run_lane_batch(lane_id, batch_number),
        what="lane batch",
        key=("lane", lane_id),
        batch_number=batch_number,
        fail=lambda exc: lanes.mark_lane_failed(lane_id, batch_number, exc),
        # the same signal as a run's chain: the lane's retry runs with half the rows
        before_retry=lambda exc, countdown, failed: lanes.record_lane_batch_error(
            lane_id, batch_number, exc, countdown, failed
        ),
    )
    logger.info(
        "maintenance lane batch run=%s phase=%s lane=%s batch=%s outcome=%s processed=%s duration=%.3fs",
        report.get("run_id"),
        report.get("phase"),
        report.get("lane"),
        report.get("batch_number"),
        report["outcome"],
        report.get("processed", 0),
        report.get("duration", 0.0),
        extra={"run_id": report.get("run_id"), "event": "lane_batch", "outcome": report["outcome"]},
    )
    if report["outcome"] in ("ran", "done", "finished"):
        self.update_state(state="PROGRESS", meta=report)
        self.send_event("task-progress", retry=False, **report)
    if report["outcome"] == "finished":
        counts = report.get("counts") or {}
        logger.info(
            "maintenance run %s run=%s total=%s counts=%s",
            report.get("status"),
            report.get("run_id"),
            sum(counts.values()),
            counts,
            extra={
                "run_id": report.get("run_id"),
                "status": report.get("status"),
                "counts": counts,
                "event": "run_finished",
            },
        )
    return report


@shared_task(
    name="oauth_tasks.watchdog",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
    # Every minute, and nearly always with nothing to do: no task events, so Flower's task list
    # stays the batches'. What it re-enqueues shows as batches, and in its log line; its result
    # (the ids it re-enqueued) is still kept for whoever sent it.
    send_events=False,
)
def watchdog(stale_after: float | None = None) -> list[int]:
    """Re-enqueue active runs whose next batch is overdue (a lost message, a restarted broker)."""
    return engine.requeue_stalled_runs(stale_after)


@shared_task(
    name="oauth_tasks.start_job",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
)
def start_job(
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    interval: float | None = None,
    trigger: str = "beat",
    pacing: bool | dict[str, Any] | None = None,
    lanes: int | None = None,
) -> dict[str, Any]:
    """Dispatch a run of ``kind`` (what a beat entry calls); an active run of the same job is kept.

    ``pacing`` (true, false or an object of pacing settings) overrides ``OAUTH_MAINTENANCE``'s
    pacing settings for this run, e.g. a beat entry's kwargs ``{"pacing": {"max_replica_lag": 2}}``.
    ``lanes`` splits each phase into that many chains (``{"lanes": 4}``), for jobs that support it.
    """
    run, created = engine.dispatch(
        kind,
        params,
        trigger=trigger,
        dry_run=dry_run,
        batch_size=batch_size,
        interval=interval,
        pacing=pacing,
        lanes=lanes,
    )
    return {"run_id": run.pk, "created": created, "status": run.status}


@shared_task(
    name="oauth_tasks.start_cleanup",
    acks_late=True,
    soft_time_limit=50,
    time_limit=60,
)
def start_cleanup(
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    interval: float | None = None,
    trigger: str = "beat",
    limit: int | None = None,
    only: str | list[str] | None = None,
    keep_if_younger: int | str | None = None,
    pacing: bool | dict[str, Any] | None = None,
    lanes: int | None = None,
) -> dict[str, Any]:
    """Dispatch a token cleanup run (the default daily beat entry).

    ``limit``, ``only`` and ``keep_if_younger`` are the cleanup job's parameters, checked by the
    same validators as the API's and ``cleartokens``'s (a beat entry's kwargs: ``{"limit": 100000,
    "only": "tokens,grants", "keep_if_younger": "30d"}``).
    """
    params = {"limit": limit, "only": only, "keep_if_younger": keep_if_younger}
    return start_job(
        "cleanup",
        {name: value for name, value in params.items() if value is not None},
        dry_run=dry_run,
        batch_size=batch_size,
        interval=interval,
        trigger=trigger,
        pacing=pacing,
        lanes=lanes,
    )
