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
  rows to the lane row's own counts. It leaves the run row alone unless the run's state changes:
  the phase ends, the lane splits, or the pacer slows it (the reason goes on the run). Locks are
  always taken lane first, run second.
* Counts: the last lane of a phase folds every lane's counts of that phase into the run's
  ``counts`` and marks the lanes ``folded``, in the transaction that moves the run on; readers use
  ``MaintenanceRun.total_counts`` (the run's counts plus the lanes not folded), so each row is
  counted once at any moment.
* Rebalancing: while fewer lanes of the phase run than the run asked for (one finished early), a
  lane with more than two batches of keys left gives the upper half of what it has left to a new
  lane, decided under the run row's lock, so the split is seen by every other lane at once.
* The last lane to finish moves the run to its next phase and sends the run's next batch, in the
  same transaction: a phase cannot be left half-advanced.
* Cancel marks the run cancelled; each lane stops at its next batch. The watchdog re-sends the
  current batch of a lane whose next batch is overdue and that no batch holds.
* Pacing is the run's as a whole: a paced lane sizes its batches like a chain, and its pause is
  the pacer's pause times the lanes running, so the run's share of the database's time stays the
  share one chain would take. A retried database error halves the lane's next batch
  (:func:`record_lane_batch_error`) and replica lag holds it, each recorded on the run's
  ``pacing`` as for a chain. Unpaced, each lane waits ``interval`` between its own batches.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from . import pacing as pacing_rules
from .deferred_checks import run_deferred_checks
from .jobs import get_job
from .lock_timeout import batch_lock_timeout
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


def _add_counts(lane: MaintenanceLane, outcome) -> None:
    counts = dict(lane.counts or {})
    counts[lane.phase] = counts.get(lane.phase, 0) + outcome.processed
    for other_phase, count in outcome.other_counts.items():
        counts[other_phase] = counts.get(other_phase, 0) + count
    lane.counts = counts


def _fold_phase(run: MaintenanceRun, lane: MaintenanceLane) -> None:
    """Add the counts and times of every unfolded lane of ``lane``'s phase to the run row and mark
    them folded (run row locked by the caller, ``lane`` saved by it): each row counted once."""
    counts = dict(run.counts or {})
    others = list(
        MaintenanceLane.objects.filter(run=run, phase=lane.phase, folded=False)
        .exclude(pk=lane.pk)
        .values_list("pk", "counts", "busy_seconds", "slowest_batch_seconds")
    )
    rows = [] if lane.folded else [(lane.pk, lane.counts, lane.busy_seconds, lane.slowest_batch_seconds)]
    for _, lane_counts, busy, slowest in rows + others:
        for phase, value in (lane_counts or {}).items():
            counts[phase] = counts.get(phase, 0) + int(value)
        run.busy_seconds += busy
        run.slowest_batch_seconds = max(run.slowest_batch_seconds, slowest)
    run.counts = counts
    lane.folded = True
    MaintenanceLane.objects.filter(pk__in=[pk for pk, *_ in others]).update(folded=True)


def _record_on_run(run_id: int, reason: str, *, batch_number: int, lane_state: dict[str, Any]) -> None:
    """The pacer slowed a lane: say why on the run's ``pacing`` (run row locked here, lane first)."""
    from .engine import _slowed

    run = _locked_run(run_id)
    state = dict(run.pacing or {})
    state.update(lane_state)
    state["waiting"] = False
    if reason:
        state["reason"] = reason
        _slowed(state, reason, batch_number)
    run.pacing = state
    run.save(update_fields=["pacing"])


def run_lane_batch(lane_id: int, expected_batch_number: int, *, chain: bool = True) -> dict[str, Any]:
    """Run batch ``expected_batch_number`` of lane ``lane_id`` once; returns what it did.

    The batch's rows, time and the lane's next size are written to the lane row only. The run row
    is locked (last, lane first) only when the run's state changes: the phase ends (the lanes'
    counts are folded into the run and the run moves on), the lane splits, or the pacer slows the
    lane (its reason is recorded on the run's ``pacing``).
    """
    started = time.monotonic()
    outermost = not connection.in_atomic_block
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
            if _wait_for_replicas(lane, run, pace, chain=chain):
                report["outcome"] = "waiting"
                return report
        run.batch_size = size  # jobs read the batch size from the run
        with batch_lock_timeout(pace):
            outcome = job.run_lane_batch(run, lane.phase, lane.cursor, lane.hi)
            run_deferred_checks(outermost=outermost)  # counted in the batch's time, not after it
        if outcome.cursor is not None:
            lane.cursor = outcome.cursor
        processed = outcome.processed + sum(outcome.other_counts.values())
        lane.processed += processed
        _add_counts(lane, outcome)
        lane.batch_number += 1
        elapsed = time.monotonic() - started
        lane.busy_seconds += elapsed
        lane.slowest_batch_seconds = max(lane.slowest_batch_seconds, elapsed)
        now = timezone.now()
        lane.heartbeat_at = now

        # The run row as committed now (no lock): a cancel since the batch began stops the lane.
        run = MaintenanceRun.objects.get(pk=lane.run_id)
        others = MaintenanceLane.objects.filter(run=run, phase=lane.phase, status=LaneStatus.RUNNING).exclude(
            pk=lane.pk
        )
        finished_run = False
        if outcome.phase_done:
            lane.status, lane.next_batch_at = LaneStatus.DONE, None
            # A state change: the run row's lock, then (under it) the lanes still running.
            run = _locked_run(lane.run_id)
            if not others.exists() and run.status in ACTIVE_STATUSES and not run.cancel_requested:
                _fold_phase(run, lane)
                run.heartbeat_at = now
                finished_run = _advance_run(run, job, now, chain=chain)
                run.save()
        elif run.status not in ACTIVE_STATUSES or run.cancel_requested:
            lane.status, lane.next_batch_at = LaneStatus.STOPPED, None
        else:
            running = others.count() + 1
            if running < run.lanes and _can_split(lane, run, job):
                run = _locked_run(lane.run_id)  # a split changes the run's lanes: under its lock
                running = others.count() + 1
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
                if decision.reason:
                    _record_on_run(
                        run.pk,
                        decision.reason,
                        batch_number=lane.batch_number - 1,
                        lane_state={"batch_size": decision.batch_size, "pause": round(pause, 4)},
                    )
            lane.next_batch_at = now + timedelta(seconds=pause)
            if chain:
                _send_after_commit(lane, pause)
        lane.save()
    counts = run.total_counts
    report.update(
        outcome="finished" if finished_run else ("done" if lane.status == LaneStatus.DONE else "ran"),
        status=run.status,
        batch_number=lane.batch_number,
        processed=processed,
        counts=counts,
        duration=round(time.monotonic() - started, 4),
    )
    return report


def _can_split(lane: MaintenanceLane, run: MaintenanceRun, job) -> bool:
    """Whether ``lane`` has more than two batches of keys left (checked again under the run's lock)."""
    here = lane.cursor if lane.cursor is not None else lane.lo
    top = lane.hi
    if here is None or top is None:
        bounds = job.lane_key_range(run, lane.phase)
        if bounds is None:
            return False
        here = bounds[0] - 1 if here is None else here
        top = bounds[1] if top is None else top
    return top - int(here) > 2 * lane.batch_size


def _wait_for_replicas(
    lane: MaintenanceLane, run: MaintenanceRun, pace: pacing_rules.PacingSettings, *, chain: bool
) -> bool:
    """True, with the lane's same batch rescheduled, when a replica lags more than allowed.

    The reason ("replica lag 7.0 s > 5 s") is recorded on the run's ``pacing`` as a single chain
    records it, when the run is not already shown waiting for that reason.
    """
    if pace.max_replica_lag <= 0:
        return False
    from .replication import replica_lag

    lag = replica_lag()
    known = lag is not None and math.isfinite(lag)
    if lag is None or lag <= pace.max_replica_lag:
        if (run.pacing or {}).get("waiting"):
            with_lock = _locked_run(run.pk)
            state = dict(with_lock.pacing or {})
            if state.get("waiting"):
                state.update(waiting=False, reason="", replica_lag=round(lag, 3) if known else None)
                with_lock.pacing = state
                with_lock.save(update_fields=["pacing"])
        return False
    reason = (
        pacing_rules.lag_reason(lag, pace.max_replica_lag)
        if known
        else ("replica lag unknown: replication stopped")
    )
    now = timezone.now()
    lane.next_batch_at = now + timedelta(seconds=pace.lag_recheck_seconds)
    lane.heartbeat_at = now
    lane.save(update_fields=["next_batch_at", "heartbeat_at"])
    state = dict(run.pacing or {})
    if not (state.get("waiting") and state.get("reason") == reason):
        from .engine import _slowed

        locked = _locked_run(run.pk)
        state = dict(locked.pacing or {})
        if not state.get("waiting"):
            _slowed(state, reason, lane.batch_number)
        state.update(waiting=True, reason=reason, pause=pace.lag_recheck_seconds)
        state["replica_lag"] = round(lag, 3) if known else None
        state["waits"] = int(state.get("waits") or 0) + 1
        locked.pacing = state
        locked.save(update_fields=["pacing"])
    if chain:
        _send_after_commit(lane, pace.lag_recheck_seconds)
    logger.info(
        "maintenance lane waiting run=%s phase=%s lane=%s batch=%s reason=%s",
        run.pk,
        lane.phase,
        lane.index,
        lane.batch_number,
        reason,
        extra={"run_id": run.pk, "phase": lane.phase, "event": "waiting", "reason": reason},
    )
    return True


def record_lane_batch_error(
    lane_id: int,
    expected_batch_number: int,
    error: BaseException,
    retry_in: float,
    failed_seconds: float = 0.0,
) -> float | None:
    """A paced lane's batch failed on a database error and is retried: halve the lane's next size.

    The same rule as :func:`oauth_tasks.engine.record_batch_error` for a run's chain: in a
    transaction of its own (lane row first, then the run row), while the lane still expects that
    batch, the lane's size halves and the run's ``pacing`` records the reason ("lock wait", ...).
    Returns the countdown of the retry: the pacer's pause after a batch that took
    ``failed_seconds``, times the lanes running, at most ``pacing.MAX_RETRY_PAUSE``, or the fixed
    back-off ``retry_in`` when that is longer (a paced lane tolerates a held lock as long as an
    unpaced one); None when the run is not paced or the lane moved on (the caller keeps its fixed
    back-off).
    """
    from .engine import _slowed

    with transaction.atomic():
        lane = _locked_lane(lane_id)
        if lane is None or lane.status != LaneStatus.RUNNING or lane.batch_number != expected_batch_number:
            return None
        run = MaintenanceRun.objects.get(pk=lane.run_id)
        pace = pacing_rules.stored_settings(run.pacing)
        if not pace.enabled or run.status not in ACTIVE_STATUSES:
            return None
        job = get_job(run.kind)
        reason = pacing_rules.error_reason(error)
        decision = pacing_rules.after_error(pace, lane.batch_size, reason, job_max=job.max_batch_size)
        running = MaintenanceLane.objects.filter(run=run, phase=lane.phase, status=LaneStatus.RUNNING).count()
        pause = pacing_rules.retry_pause(
            pace, failed_seconds, interval=run.interval, chains=max(1, running), backoff=retry_in
        )
        lane.batch_size = decision.batch_size
        lane.next_batch_at = timezone.now() + timedelta(seconds=pause)
        lane.save(update_fields=["batch_size", "next_batch_at"])
        locked = _locked_run(run.pk)
        state = dict(locked.pacing or {})
        state.update(batch_size=decision.batch_size, pause=round(pause, 4), reason=reason, waiting=False)
        _slowed(state, reason, lane.batch_number)
        locked.pacing = state
        locked.save(update_fields=["pacing"])
    logger.info(
        "maintenance lane slowed run=%s phase=%s lane=%s batch=%s reason=%s batch_size=%s",
        run.pk,
        lane.phase,
        lane.index,
        lane.batch_number,
        reason,
        decision.batch_size,
        extra={"run_id": run.pk, "phase": lane.phase, "event": "slowed", "reason": reason},
    )
    return pause


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

    Each lane in its own transaction, lane row first: the lock order every lane batch keeps. When
    every lane of the phase is done (the run was cancelled while its last lane finished, so nothing
    moved it on), the phase is folded into the run and the run moves on here: its next phase
    starts, or it succeeds; 0 is returned then.
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
    if resumed == 0:
        _advance_finished_phase(run.pk, run.phase)
    return resumed


def _advance_finished_phase(run_id: int, phase: str) -> bool:
    """Move an active run on from ``phase`` when every lane of it is done; True if it did."""
    with transaction.atomic():
        run = _locked_run(run_id)
        if run.status not in ACTIVE_STATUSES or run.cancel_requested or run.phase != phase:
            return False
        lanes = MaintenanceLane.objects.filter(run=run, phase=phase)
        last = lanes.order_by("-pk").first()
        if last is None or lanes.exclude(status=LaneStatus.DONE).exists():
            return False
        now = timezone.now()
        _fold_phase(run, last)
        last.save(update_fields=["folded"])
        run.heartbeat_at = now
        _advance_run(run, get_job(run.kind), now, chain=True)
        run.save()
    logger.info(
        "maintenance lanes of a finished phase moved the run on run=%s phase=%s status=%s",
        run.pk,
        phase,
        run.status,
        extra={"run_id": run.pk, "event": "phase_resumed"},
    )
    return True


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
