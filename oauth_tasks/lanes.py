"""Lanes: one run's phase split into disjoint key ranges, each walked by its own fenced chain.

A run dispatched with ``lanes`` N > 1 (a job that supports it: cleanup) still moves through its
phases in order, one phase at a time, so rules that depend on an earlier phase (an access token is
deleted only once no refresh token points at it) hold exactly as with one chain. Within a phase:

* The run's own chain, on reaching the phase, creates up to N :class:`~oauth_tasks.models.MaintenanceLane`
  rows over the phase table's key range (``(lo, hi]``; the last lane has no upper bound, so rows
  added later are walked as one chain would walk them) and sends each lane's batch 0. The run's
  chain then waits (``next_batch_at`` empty): the lanes own the phase.
* A lane's batch locks the lane row, checks its batch number (a duplicate or late message does
  nothing), runs one batch of the job over ``(cursor, hi]`` and, in the same transaction, adds the
  rows to the run's counts under the run row's lock (taken last and held only to commit, so lanes
  run their statements in parallel). Locks are always taken lane first, run second.
* Rebalancing: while fewer lanes of the phase run than the run asked for (one finished early), a
  lane with more than two batches of keys left gives the upper half of what it has left to a new
  lane, decided under the run row's lock, so the split is seen by every other lane at once.
* The last lane to finish moves the run to its next phase and sends the run's next batch, in the
  same transaction: a phase cannot be left half-advanced.
* Cancel marks the run cancelled; each lane stops at its next batch. The watchdog re-sends the
  current batch of a lane whose next batch is overdue and that no batch holds.
* Pacing is the run's as a whole: a paced lane sizes its batches like a chain, and its pause is
  the pacer's pause times the lanes running, so the run's share of the database's time stays the
  share one chain would take. Unpaced, each lane waits ``interval`` between its own batches.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from . import pacing as pacing_rules
from .jobs import get_job
from .models import ACTIVE_STATUSES, LaneStatus, MaintenanceLane, MaintenanceRun, RunStatus

logger = logging.getLogger(__name__)

RUN_LANE_BATCH_TASK = "oauth_tasks.run_lane_batch"

#: The most lanes one run may ask for.
MAX_LANES = 64


def validate_lanes(value: Any, job, params: dict[str, Any]) -> int:
    """``value`` (None: ``OAUTH_MAINTENANCE["LANES"]``) as a lane count.

    ValidationError naming ``lanes`` for anything else, or for lanes the job refuses.
    """
    if value is None:
        from .conf import maintenance_settings

        value = maintenance_settings.LANES
        if value > 1 and job.lanes_refused(params):
            return 1  # the setting is a default for jobs that can be laned, not an order
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LANES:
        raise ValidationError({"lanes": f"lanes must be a whole number from 1 to {MAX_LANES}, got {value!r}"})
    if value > 1:
        reason = job.lanes_refused(params)
        if reason:
            raise ValidationError({"lanes": f"lanes={value}: {reason}"})
    return value


def enqueue_lane_batch(lane_id: int, batch_number: int, *, countdown: float = 0, label: str = "") -> str:
    """Send the message for batch ``batch_number`` of lane ``lane_id`` to the maintenance queue."""
    from celery import current_app

    result = current_app.send_task(
        RUN_LANE_BATCH_TASK,
        args=[lane_id, batch_number],
        countdown=countdown or None,
        task_id=str(uuid.uuid4()),
        argsrepr=f"({label or f'lane={lane_id}'}, batch={batch_number})",
    )
    return result.id


def _send_after_commit(lane: MaintenanceLane, countdown: float = 0) -> None:
    lane_id, number = lane.pk, lane.batch_number
    label = f"run={lane.run_id}, lane={lane.phase}/{lane.index}"
    transaction.on_commit(lambda: enqueue_lane_batch(lane_id, number, countdown=countdown, label=label))


def phase_has_lanes(run: MaintenanceRun, phase: str) -> bool:
    return MaintenanceLane.objects.filter(run=run, phase=phase).exists()


def start_phase(run: MaintenanceRun, job, phase: str, *, chain: bool = True) -> bool:
    """Split ``phase`` of ``run`` (locked by the caller) into lanes; False when it runs as one chain.

    True also when the phase already has lanes (a duplicate of the run's message): they own it.
    ``chain=False`` sends no message: the watchdog hands the lanes to a worker.
    """
    if phase_has_lanes(run, phase):
        return True
    bounds = job.lane_key_range(run, phase)
    if bounds is None:
        return False
    low, high = bounds
    start = low - 1
    if run.cursor is not None:  # resumed in the middle of the phase on one chain
        start = max(start, int(run.cursor))
    span = high - start
    count = min(run.lanes, max(1, -(-span // max(1, run.batch_size))))
    if count < 2:
        return False
    edges = [start + span * i // count for i in range(count + 1)]
    now = timezone.now()
    size = int((run.pacing or {}).get("batch_size") or run.batch_size)
    for index in range(count):
        lane = MaintenanceLane.objects.create(
            run=run,
            phase=phase,
            index=index,
            lo=None if index == 0 and run.cursor is None else edges[index],
            hi=None if index == count - 1 else edges[index + 1],
            cursor=run.cursor if index == 0 else edges[index],
            batch_size=size,
            heartbeat_at=now,
            next_batch_at=now,
        )
        if chain:
            _send_after_commit(lane)
    logger.info(
        "maintenance run split run=%s job=%s phase=%s lanes=%s keys=%s..%s",
        run.pk,
        run.kind,
        phase,
        count,
        start,
        high,
        extra={"run_id": run.pk, "job": run.kind, "phase": phase, "event": "lanes_started", "lanes": count},
    )
    return True


def _locked_lane(lane_id: int, *, skip_locked: bool = False) -> MaintenanceLane | None:
    """The lane row, locked, and only it: no ordering, so no join, so the run row stays free
    (``FOR UPDATE`` over a join would lock the run row too and serialise every lane's batch)."""
    qs = MaintenanceLane.objects.filter(pk=lane_id).order_by()
    features = connection.features
    if features.has_select_for_update:
        options = {"skip_locked": skip_locked and features.has_select_for_update_skip_locked}
        if features.has_select_for_update_of:
            options["of"] = ("self",)
        qs = qs.select_for_update(**options)
    return next(iter(qs), None)


def _locked_run(run_id: int) -> MaintenanceRun:
    qs = MaintenanceRun.objects.filter(pk=run_id)
    if connection.features.has_select_for_update:
        qs = qs.select_for_update()
    return qs.get()


def _split(lane: MaintenanceLane, run: MaintenanceRun, job) -> MaintenanceLane | None:
    """Give the upper half of what ``lane`` has left to a new lane, when it has enough left."""
    here = lane.cursor if lane.cursor is not None else lane.lo
    if here is None or lane.hi is None:
        bounds = job.lane_key_range(run, lane.phase)
        if bounds is None:
            return None
        here = bounds[0] - 1 if here is None else here
    top = lane.hi
    if top is None:
        top = job.lane_key_range(run, lane.phase)[1]
    here = int(here)
    if top - here <= 2 * lane.batch_size:
        return None
    middle = here + (top - here) // 2
    last_index = MaintenanceLane.objects.filter(run=run, phase=lane.phase).aggregate(m=Max("index"))["m"]
    now = timezone.now()
    new = MaintenanceLane.objects.create(
        run=run,
        phase=lane.phase,
        index=last_index + 1,
        lo=middle,
        hi=lane.hi,
        cursor=middle,
        batch_size=lane.batch_size,
        split_from=lane.index,
        heartbeat_at=now,
        next_batch_at=now,
    )
    lane.hi = middle
    _send_after_commit(new)
    logger.info(
        "maintenance lane split run=%s phase=%s lane=%s new_lane=%s at=%s",
        run.pk,
        lane.phase,
        lane.index,
        new.index,
        middle,
        extra={"run_id": run.pk, "phase": lane.phase, "event": "lane_split"},
    )
    return new


def run_lane_batch(lane_id: int, expected_batch_number: int, *, chain: bool = True) -> dict[str, Any]:
    """Run batch ``expected_batch_number`` of lane ``lane_id`` once; returns what it did."""
    started = time.monotonic()
    with transaction.atomic():
        lane = _locked_lane(lane_id)
        if lane is None:
            return {"lane_id": lane_id, "outcome": "missing"}
        report: dict[str, Any] = {
            "lane_id": lane_id,
            "run_id": lane.run_id,
            "phase": lane.phase,
            "lane": lane.index,
            "batch_number": lane.batch_number,
            "outcome": "stale",
        }
        if lane.status != LaneStatus.RUNNING or lane.batch_number != expected_batch_number:
            return report
        run = MaintenanceRun.objects.get(pk=lane.run_id)
        if run.status not in ACTIVE_STATUSES or run.cancel_requested or run.phase != lane.phase:
            lane.status, lane.next_batch_at = LaneStatus.STOPPED, None
            lane.save(update_fields=["status", "next_batch_at"])
            report["outcome"] = "stopped"
            return report
        job = get_job(run.kind)
        pace = pacing_rules.stored_settings(run.pacing)
        size = lane.batch_size
        if pace.enabled:
            size = pacing_rules.clamp(size, pace, job.max_batch_size)
            if _replicas_lag(pace):
                lane.next_batch_at = timezone.now() + timedelta(seconds=pace.lag_recheck_seconds)
                lane.heartbeat_at = timezone.now()
                lane.save(update_fields=["next_batch_at", "heartbeat_at"])
                if chain:
                    _send_after_commit(lane, pace.lag_recheck_seconds)
                report["outcome"] = "waiting"
                return report
            from .engine import _set_lock_timeout

            _set_lock_timeout(pace.lock_timeout_seconds)
        run.batch_size = size  # jobs read the batch size from the run
        outcome = job.run_lane_batch(run, lane.phase, lane.cursor, lane.hi)
        if outcome.cursor is not None:
            lane.cursor = outcome.cursor
        processed = outcome.processed + sum(outcome.other_counts.values())
        lane.processed += processed
        lane.batch_number += 1
        elapsed = time.monotonic() - started
        now = timezone.now()
        lane.heartbeat_at = now

        # Last, and held only to commit: the run row, for its counts, splits and phase changes.
        run = _locked_run(lane.run_id)
        counts = dict(run.counts or {})
        counts[lane.phase] = counts.get(lane.phase, 0) + outcome.processed
        for other_phase, count in outcome.other_counts.items():
            counts[other_phase] = counts.get(other_phase, 0) + count
        run.counts = counts
        run.busy_seconds += elapsed
        run.slowest_batch_seconds = max(run.slowest_batch_seconds, elapsed)
        run.heartbeat_at = now
        if run.status == RunStatus.PENDING:
            run.status, run.started_at = RunStatus.RUNNING, now
        others = MaintenanceLane.objects.filter(run=run, phase=lane.phase, status=LaneStatus.RUNNING).exclude(
            pk=lane.pk
        )
        running = others.count() + (0 if outcome.phase_done else 1)
        finished_run = False
        if outcome.phase_done:
            lane.status, lane.next_batch_at = LaneStatus.DONE, None
            if running == 0 and run.status in ACTIVE_STATUSES and not run.cancel_requested:
                finished_run = _advance_run(run, job, now, chain=chain)
        elif run.status not in ACTIVE_STATUSES or run.cancel_requested:
            lane.status, lane.next_batch_at = LaneStatus.STOPPED, None
        else:
            if running < run.lanes and _split(lane, run, job) is not None:
                running += 1
            pause = run.interval
            if pace.enabled:
                decision = pacing_rules.after_batch(
                    pace, size, elapsed, interval=run.interval, job_max=job.max_batch_size
                )
                lane.batch_size = decision.batch_size
                # The run's share of the database's time is one chain's: N lanes pause N times longer.
                pause = decision.pause * max(1, running)
                state = dict(run.pacing or {})
                state.update(batch_size=decision.batch_size, pause=round(pause, 4), reason=decision.reason)
                run.pacing = state
            lane.next_batch_at = now + timedelta(seconds=pause)
            if chain:
                _send_after_commit(lane, pause)
        lane.save()
        run.save()
    report.update(
        outcome="finished" if finished_run else ("done" if lane.status == LaneStatus.DONE else "ran"),
        status=run.status,
        batch_number=lane.batch_number,
        processed=processed,
        counts=counts,
        duration=round(time.monotonic() - started, 4),
    )
    return report


def _replicas_lag(pace: pacing_rules.PacingSettings) -> bool:
    if pace.max_replica_lag <= 0:
        return False
    from .replication import replica_lag

    lag = replica_lag()
    return lag is not None and lag > pace.max_replica_lag


def _advance_run(run: MaintenanceRun, job, now, *, chain: bool) -> bool:
    """The last lane of the run's phase finished: move the run on (locked by the caller).

    True when that was the last phase and the run succeeded; otherwise the run's own chain gets
    its next batch, which starts the next phase (in lanes again, or as one chain).
    """
    from .engine import enqueue_batch

    phases = list(job.phases(run.params))
    index = phases.index(run.phase)
    run.batch_number += 1
    if index + 1 >= len(phases):
        run.status, run.finished_at, run.next_batch_at = RunStatus.SUCCEEDED, now, None
        return True
    run.phase, run.cursor = phases[index + 1], None
    run.next_batch_at = now
    run.celery_task_id = str(uuid.uuid4())
    if chain:
        run_id, number, task_id, kind = run.pk, run.batch_number, run.celery_task_id, run.kind
        transaction.on_commit(lambda: enqueue_batch(run_id, number, countdown=0, task_id=task_id, kind=kind))
    return False


def mark_lane_failed(lane_id: int, expected_batch_number: int, error: BaseException) -> bool:
    """A lane's batch failed for good: the run fails (its other lanes stop at their next batch)."""
    from .engine import mark_failed

    with transaction.atomic():
        lane = _locked_lane(lane_id)
        if lane is None or lane.status != LaneStatus.RUNNING or lane.batch_number != expected_batch_number:
            return False
        lane.status, lane.next_batch_at = LaneStatus.STOPPED, None
        lane.save(update_fields=["status", "next_batch_at"])
        run = MaintenanceRun.objects.get(pk=lane.run_id)
        return mark_failed(run.pk, run.batch_number, error)


def resume_lanes(run: MaintenanceRun) -> int:
    """Send again the current batch of every unfinished lane of the run's phase; how many.

    Each lane in its own transaction, lane row first: the lock order every lane batch keeps.
    """
    resumed = 0
    for lane_id in (
        MaintenanceLane.objects.filter(run=run, phase=run.phase)
        .exclude(status=LaneStatus.DONE)
        .values_list("pk", flat=True)
    ):
        with transaction.atomic():
            lane = _locked_lane(lane_id)
            if lane is None or lane.status == LaneStatus.DONE:
                continue
            lane.status = LaneStatus.RUNNING
            lane.next_batch_at = lane.heartbeat_at = timezone.now()
            lane.save(update_fields=["status", "next_batch_at", "heartbeat_at"])
            _send_after_commit(lane)
            resumed += 1
    return resumed


def requeue_stalled_lanes(margin: float, *, limit: int = 100) -> list[int]:
    """Re-send the current batch of running lanes overdue by ``margin`` that no batch holds; run ids."""
    threshold = timezone.now() - timedelta(seconds=margin)
    candidates = (
        MaintenanceLane.objects.filter(
            status=LaneStatus.RUNNING,
            next_batch_at__lt=threshold,
            run__status__in=list(ACTIVE_STATUSES),
        )
        .filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=threshold))
        .values_list("pk", flat=True)[:limit]
    )
    requeued: list[int] = []
    for lane_id in list(candidates):
        with transaction.atomic():
            lane = _locked_lane(lane_id, skip_locked=True)
            if lane is None or lane.status != LaneStatus.RUNNING or lane.next_batch_at is None:
                continue
            threshold = timezone.now() - timedelta(seconds=margin)
            if lane.next_batch_at >= threshold or (lane.heartbeat_at and lane.heartbeat_at >= threshold):
                continue
            lane.heartbeat_at = timezone.now()
            lane.save(update_fields=["heartbeat_at"])
            _send_after_commit(lane)
            requeued.append(lane.run_id)
    return requeued
