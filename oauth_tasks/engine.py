"""The job engine: dispatch runs, execute one batch at a time, chain, cancel, resume, watch.

Contract (see docs/maintenance.md):

* A run is created by :func:`dispatch`; a database constraint allows one active (pending or
  running) run per job kind and parameters, so a second dispatch gets the active run back. The
  constraint is a plain unique one over ``active_key``, which holds the fingerprint while the run
  is active and is NULL once it ends (set by ``MaintenanceRun.save`` with the status), so every
  backend enforces it.
* Each Celery message says "batch N of run R". :func:`run_batch` locks the run row, checks that the
  run is active and that N is its current batch number, runs one batch of the job and records the
  progress, all in one transaction. A duplicated or redelivered message finds a different number and
  does nothing; a batch whose transaction rolled back is simply run again.
* After commit, the next batch is enqueued with ``countdown=interval``: no worker ever sleeps.
* The watchdog (:func:`requeue_stalled_runs`) re-enqueues active runs whose next batch is overdue
  by the stall margin and that no batch holds (the run row's lock), which is how a run survives a
  lost message, a broker restart or a worker killed mid-batch within seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from oauth_provider.cleanup import validate_batch_size, validate_interval
from oauth_provider.maintenance import DispatchUnavailable

from . import lanes as lane_rules
from . import pacing as pacing_rules
from .deferred_checks import run_deferred_checks
from .jobs import get_job
from .lock_timeout import batch_lock_timeout
from .models import ACTIVE_STATUSES, MaintenanceRun, RunStatus

logger = logging.getLogger(__name__)

RUN_BATCH_TASK = "oauth_tasks.run_batch"


class BrokerUnavailable(DispatchUnavailable):
    """No broker answers at the Celery app's broker URL (shown with its password masked)."""


#: Seconds a dispatch waits for the broker to answer before it gives up.
BROKER_CHECK_TIMEOUT = 3.0


def _masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def broker_display_url() -> str:
    """The broker URL messages go to, password masked, for error messages and logs."""
    from celery import current_app

    with current_app.connection_for_write() as conn:
        return _masked(conn.as_uri(include_password=True))


def check_broker() -> None:
    """Raise BrokerUnavailable unless the broker answers within ``BROKER_CHECK_TIMEOUT`` seconds.

    A dispatch checks first, so that with no broker it fails at once with one clear line instead of
    creating a run whose first message cannot be sent.
    """
    from celery import current_app

    with current_app.connection_for_write() as conn:
        url = _masked(conn.as_uri(include_password=True))
        try:
            conn.ensure_connection(
                max_retries=1, interval_start=0.2, interval_step=0, timeout=BROKER_CHECK_TIMEOUT
            )
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BrokerUnavailable(f"no broker answers at {url}: {reason}") from None


class RunConflict(Exception):
    """Raised by :func:`resume` when another active run of the same job and parameters exists."""

    def __init__(self, run: MaintenanceRun) -> None:
        super().__init__(f"run #{run.pk} of {run.kind} is already active")
        self.run = run


def params_fingerprint(kind: str, params: dict[str, Any], dry_run: bool) -> str:
    """A stable digest of what a run does: the key of the one-active-run constraint."""
    canonical = json.dumps(
        {"kind": kind, "params": params, "dry_run": bool(dry_run)}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _validate_trigger(trigger: str, triggered_by: str) -> None:
    if not isinstance(trigger, str) or not trigger.strip() or len(trigger) > 32:
        raise ValidationError(
            {"trigger": "trigger must be a name of 1 to 32 characters (beat, view, admin...)"}
        )
    if not isinstance(triggered_by, str) or len(triggered_by) > 255:
        raise ValidationError({"triggered_by": "triggered_by must be text of at most 255 characters"})


def _validated(value: Any, validator, name: str, default):
    if value is None:
        return default()
    try:
        return validator(value, name)
    except ValueError as exc:
        raise ValidationError({name: str(exc)}) from None


def active_run(kind: str, params_key: str) -> MaintenanceRun | None:
    """The active run with this fingerprint, by the unique ``active_key`` column."""
    return MaintenanceRun.objects.filter(kind=kind, active_key=params_key).first()


def dispatch(
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    trigger: str,
    dry_run: bool = False,
    batch_size: int | None = None,
    interval: float | None = None,
    triggered_by: str = "",
    enqueue: bool = True,
    user=None,
    pacing: bool | dict[str, Any] | None = None,
    lanes: int | None = None,
) -> tuple[MaintenanceRun, bool]:
    """Create a run of job ``kind`` and enqueue its first batch; ``(run, True)``.

    When a run of the same kind, parameters and dry-run flag is already active, nothing is created
    and ``(that_run, False)`` is returned. Bad input raises ValidationError naming the field
    (``kind``, a parameter, ``batch_size``, ``interval``, ``trigger``, ``pacing``) before anything is
    written. ``pacing`` (true, false, or an object of :mod:`oauth_tasks.pacing` settings) overrides
    ``OAUTH_MAINTENANCE``'s pacing settings for this run; with pacing on, ``batch_size`` is the first
    batch's size and ``interval`` the shortest pause.
    ``lanes`` (default ``OAUTH_MAINTENANCE["LANES"]``) splits each phase into that many chains over
    disjoint key ranges (:mod:`oauth_tasks.lanes`), for jobs that support it; 1 is one chain.
    With ``enqueue=False`` no message is sent: the caller runs the batches itself
    (``run_batch(..., chain=False)``), and the watchdog hands the run to a worker if it stops.
    With ``user`` (a person starting the run from a view), the permissions the job asks for these
    parameters are checked too: PermissionDenied names the first one missing.
    When a message is to be sent and no broker answers, BrokerUnavailable: before anything is
    written, or, when the broker goes away between the check and the send, with the new run marked
    failed (never left pending).
    """
    job = get_job(kind)
    cleaned = job.validate_params(params)
    if user is not None:
        for permission in job.required_permissions(cleaned):
            if not user.has_perm(permission):
                raise PermissionDenied(f"missing permission {permission}")
    batch_size = _validated(batch_size, validate_batch_size, "batch_size", job.default_batch_size)
    if batch_size > job.max_batch_size:
        message = f"batch_size of a {kind} run must be at most {job.max_batch_size}, got {batch_size}"
        raise ValidationError({"batch_size": message})
    interval = _validated(interval, validate_interval, "interval", job.default_interval)
    pace = pacing_rules.resolve(pacing)
    lane_count = lane_rules.validate_lanes(lanes, job, cleaned)
    _validate_trigger(trigger, triggered_by)
    if not isinstance(dry_run, bool):
        raise ValidationError({"dry_run": "dry_run must be true or false"})
    phases = list(job.phases(cleaned))
    key = params_fingerprint(kind, cleaned, dry_run)

    existing = active_run(kind, key)
    if existing is not None:
        return existing, False
    if enqueue:
        check_broker()
    now = timezone.now()
    estimated_counts = job.estimate(cleaned, now)
    task_id = str(uuid.uuid4())
    try:
        with transaction.atomic():
            run = MaintenanceRun.objects.create(
                estimated_counts=estimated_counts,
                kind=kind,
                params=cleaned,
                params_key=key,
                status=RunStatus.PENDING,
                dry_run=dry_run,
                batch_size=batch_size,
                interval=interval,
                phase=phases[0] if phases else "",
                cutoff=now,
                trigger=trigger,
                triggered_by=triggered_by,
                created_at=now,
                heartbeat_at=now,
                next_batch_at=now,
                celery_task_id=task_id,
                pacing=pacing_rules.initial_state(pace, batch_size, job.max_batch_size),
                lanes=lane_count,
            )
            job.on_dispatch(run)
            if enqueue:
                transaction.on_commit(lambda: _send_first_batch(run, task_id))
    except IntegrityError:
        existing = active_run(kind, key)
        if existing is None:  # the other run finished in between: the constraint is free again
            raise
        return existing, False
    logger.info(
        "maintenance run dispatched run=%s job=%s trigger=%s dry_run=%s batch_size=%s interval=%s paced=%s",
        run.pk,
        kind,
        trigger,
        dry_run,
        batch_size,
        interval,
        pace.enabled,
        extra={"run_id": run.pk, "job": kind, "event": "dispatched"},
    )
    return run, True


def _send_first_batch(run: MaintenanceRun, task_id: str) -> None:
    """Enqueue batch 0 after the run committed; if the broker refuses, fail the run and say so."""
    try:
        enqueue_batch(run.pk, 0, countdown=0, task_id=task_id, kind=run.kind)
    except Exception as exc:
        message = f"the first batch could not be sent to the broker at {broker_display_url()}"
        mark_failed(run.pk, 0, f"{message}: {type(exc).__name__}")
        run.refresh_from_db()
        raise BrokerUnavailable(f"{message} ({type(exc).__name__}): run #{run.pk} marked failed") from None


def enqueue_batch(
    run_id: int, batch_number: int, *, countdown: float = 0, task_id: str | None = None, kind: str = ""
) -> str:
    """Send the message for batch ``batch_number`` of run ``run_id`` to the maintenance queue.

    ``kind`` only labels the message: Flower shows ``argsrepr`` instead of the bare numbers. The
    project's Celery app is the current app, so this module never imports the project package.
    """
    from celery import current_app

    label = (
        f"run={run_id}, job={kind}, batch={batch_number}" if kind else f"run={run_id}, batch={batch_number}"
    )
    result = current_app.send_task(
        RUN_BATCH_TASK,
        args=[run_id, batch_number],
        countdown=countdown or None,
        task_id=task_id or str(uuid.uuid4()),
        argsrepr=f"({label})",
    )
    return result.id


@dataclass
class BatchReport:
    """What :func:`run_batch` did, for the task's return value, its progress state and its log line."""

    run_id: int
    outcome: str  # "ran", "finished", "stale", "missing", "cancelled", "waiting" (replica lag)
    kind: str = ""
    status: str = ""
    phase: str = ""
    batch_number: int = 0
    processed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    pacing: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "outcome": self.outcome,
            "kind": self.kind,
            "status": self.status,
            "phase": self.phase,
            "batch_number": self.batch_number,
            "processed": self.processed,
            "counts": self.counts,
            "duration": round(self.duration, 4),
            **({"detail": self.detail} if self.detail else {}),
            **({"pacing": self.pacing} if self.pacing else {}),
        }


def _locked(run_id: int) -> MaintenanceRun | None:
    qs = MaintenanceRun.objects.filter(pk=run_id)
    if connection.features.has_select_for_update:
        qs = qs.select_for_update()
    return qs.first()


def run_batch(run_id: int, expected_batch_number: int, *, chain: bool = True) -> BatchReport:
    """Run batch ``expected_batch_number`` of run ``run_id``, once.

    Everything happens in one transaction holding the run row's lock: the status and batch-number
    check, the job's batch, and the progress update. The next batch is enqueued after commit. An
    exception rolls the whole batch back and propagates (the task retries or marks the run failed).
    ``chain=False`` enqueues nothing: a caller running the batches in its own process calls again.
    """
    started = time.monotonic()
    outermost = not connection.in_atomic_block
    with transaction.atomic(), ExitStack() as restore:
        run = _locked(run_id)
        if run is None:
            return BatchReport(run_id=run_id, outcome="missing")
        report = BatchReport(
            run_id=run_id,
            outcome="stale",
            kind=run.kind,
            status=run.status,
            phase=run.phase,
            batch_number=run.batch_number,
            counts=run.total_counts,
        )
        if run.status not in ACTIVE_STATUSES or run.batch_number != expected_batch_number:
            return report
        now = timezone.now()
        if run.cancel_requested:
            run.status = RunStatus.CANCELLED
            run.finished_at = now
            run.next_batch_at = None
            run.save(update_fields=["status", "finished_at", "next_batch_at"])
            report.outcome, report.status = "cancelled", run.status
            return report
        job = get_job(run.kind)
        phases = list(job.phases(run.params))
        if run.status == RunStatus.PENDING:
            run.status = RunStatus.RUNNING
            run.started_at = now
        if not run.phase and phases:
            run.phase = phases[0]
        pace = pacing_rules.stored_settings(run.pacing)
        configured_size = run.batch_size
        if pace.enabled:
            if _wait_for_replicas(run, pace, chain=chain):
                report.outcome, report.status, report.pacing = "waiting", run.status, run.pacing_state()
                report.duration = time.monotonic() - started
                return report
            # Jobs read run.batch_size: in memory it is the paced size while the batch runs.
            run.batch_size = pacing_rules.clamp(
                run.pacing.get("batch_size") or configured_size, pace, job.max_batch_size
            )
            restore.enter_context(batch_lock_timeout(pace))  # MySQL/MariaDB: back to before, after
        paced_size = run.batch_size
        counts = dict(run.counts or {})
        processed = 0
        finished = not phases
        laned = False
        detail: dict[str, Any] = {}
        while not finished:
            phase = run.phase
            if run.lanes > 1 and lane_rules.start_phase(run, job, phase, chain=chain):
                laned = True  # the phase's lanes own it now; the last to finish moves the run on
                break
            outcome = job.run_batch(run, phase, run.cursor)
            processed += outcome.processed
            counts[phase] = counts.get(phase, 0) + outcome.processed
            for other_phase, count in outcome.other_counts.items():
                processed += count
                counts[other_phase] = counts.get(other_phase, 0) + count
            if outcome.detail:
                detail[phase] = outcome.detail
            if not outcome.phase_done:
                run.cursor = outcome.cursor
                break
            index = phases.index(phase)
            if index + 1 >= len(phases):
                finished = True
                run.cursor = outcome.cursor
                break
            run.phase, run.cursor = phases[index + 1], None
            if outcome.processed:
                # A phase that changed rows ends the batch; an empty one costs one query, so the
                # next phase starts in the same batch and a run with nothing to do ends at once.
                break

        run_deferred_checks(outermost=outermost)  # counted in the batch's time, not after it
        run.counts = counts
        run.batch_size = configured_size
        run.batch_number += 1
        elapsed = time.monotonic() - started
        run.busy_seconds += elapsed
        run.slowest_batch_seconds = max(run.slowest_batch_seconds, elapsed)
        run.heartbeat_at = timezone.now()
        run.last_error = ""
        pause = run.interval
        if pace.enabled:
            decision = pacing_rules.after_batch(
                pace, paced_size, elapsed, interval=run.interval, job_max=job.max_batch_size
            )
            _record_decision(run, decision, batch_number=run.batch_number - 1)
            pause = decision.pause
        if finished:
            run.status = RunStatus.SUCCEEDED
            run.finished_at = run.heartbeat_at
            run.next_batch_at = None
        elif laned:
            run.next_batch_at = None  # the lanes' own rows say when their batches are due
        else:
            run.next_batch_at = run.heartbeat_at + timedelta(seconds=pause)
            run.celery_task_id = str(uuid.uuid4())
            next_number, countdown, task_id = run.batch_number, pause, run.celery_task_id
            if chain:
                transaction.on_commit(
                    lambda: enqueue_batch(
                        run_id, next_number, countdown=countdown, task_id=task_id, kind=run.kind
                    )
                )
        run.save()

    report.outcome = "finished" if finished else "ran"
    report.status, report.phase, report.batch_number = run.status, run.phase, run.batch_number
    report.processed, report.detail = processed, detail
    # A run split into lanes: what its lanes counted and did not yet fold in, too (one query).
    report.counts = run.total_counts if run.lanes > 1 else counts
    if pace.enabled:
        report.pacing = run.pacing_state()
    report.duration = time.monotonic() - started
    return report


def _slowed(state: dict[str, Any], reason: str, batch_number: int) -> None:
    state["slowdowns"] = int(state.get("slowdowns") or 0) + 1
    state["last_slowdown"] = {
        "reason": reason,
        "batch_number": batch_number,
        "at": timezone.now().isoformat(),
    }


def _record_decision(run: MaintenanceRun, decision: pacing_rules.Decision, *, batch_number: int) -> None:
    """Store the pacer's decision on the run (saved with the batch, so a killed worker loses nothing)."""
    state = dict(run.pacing or {})
    state.update(batch_size=decision.batch_size, pause=round(decision.pause, 4), reason=decision.reason)
    state["waiting"] = False
    if decision.reason:
        _slowed(state, decision.reason, batch_number)
    run.pacing = state


def _wait_for_replicas(run: MaintenanceRun, pace: pacing_rules.PacingSettings, *, chain: bool) -> bool:
    """True, with the same batch rescheduled, when a replica lags more than ``max_replica_lag``.

    The run row (locked by the caller) records the lag and the reason; the batch's message is sent
    again with a countdown after commit, so no worker waits. It carries the same batch number: a
    duplicate of it does the batch once, as always.
    """
    if pace.max_replica_lag <= 0:
        return False
    from .replication import replica_lag

    lag = replica_lag()
    state = dict(run.pacing or {})
    known = lag is not None and math.isfinite(lag)
    state["replica_lag"] = round(lag, 3) if known else None
    if lag is None or lag <= pace.max_replica_lag:
        if state.get("waiting"):
            state.update(waiting=False, reason="")
        run.pacing = state
        return False
    if known:
        reason = pacing_rules.lag_reason(lag, pace.max_replica_lag)
    else:
        reason = "replica lag unknown: replication stopped"
    now = timezone.now()
    if not state.get("waiting"):
        _slowed(state, reason, run.batch_number)
    state.update(waiting=True, reason=reason, pause=pace.lag_recheck_seconds)
    state["waits"] = int(state.get("waits") or 0) + 1
    run.pacing = state
    run.heartbeat_at = now
    run.next_batch_at = now + timedelta(seconds=pace.lag_recheck_seconds)
    run.celery_task_id = str(uuid.uuid4())
    run.save()
    if chain:
        run_id, number, task_id, kind = run.pk, run.batch_number, run.celery_task_id, run.kind
        countdown = pace.lag_recheck_seconds
        transaction.on_commit(
            lambda: enqueue_batch(run_id, number, countdown=countdown, task_id=task_id, kind=kind)
        )
    logger.info(
        "maintenance run waiting run=%s job=%s batch=%s reason=%s",
        run.pk,
        run.kind,
        run.batch_number,
        reason,
        extra={"run_id": run.pk, "job": run.kind, "event": "waiting", "reason": reason},
    )
    return True


def record_batch_error(
    run_id: int,
    expected_batch_number: int,
    error: BaseException,
    retry_in: float,
    failed_seconds: float = 0.0,
) -> float | None:
    """A paced run's batch failed on a database error and is to be retried: halve its next size.

    The failed batch rolled back; this records, in a transaction of its own and only while the run
    still expects that batch, the smaller size, the retry's pause and the reason ("lock wait",
    "deadlock", ...). Returns the retry's countdown: the pacer's pause after a batch that took
    ``failed_seconds`` (:func:`oauth_tasks.pacing.retry_pause`), or the fixed back-off
    ``retry_in`` (2, 4, 8... s) when that is longer, so a paced run rides out a lock held as long
    as an unpaced one does before its retries are spent. None when the run is not paced or moved
    on: the caller keeps its fixed back-off.
    """
    with transaction.atomic():
        run = _locked(run_id)
        if run is None or run.status not in ACTIVE_STATUSES or run.batch_number != expected_batch_number:
            return None
        pace = pacing_rules.stored_settings(run.pacing)
        if not pace.enabled:
            return None
        job = get_job(run.kind)
        current = int((run.pacing or {}).get("batch_size") or run.batch_size)
        decision = pacing_rules.after_error(
            pace, current, pacing_rules.error_reason(error), job_max=job.max_batch_size
        )
        pause = pacing_rules.retry_pause(pace, failed_seconds, interval=run.interval, backoff=retry_in)
        _record_decision(
            run,
            pacing_rules.Decision(decision.batch_size, pause, decision.reason),
            batch_number=run.batch_number,
        )
        run.next_batch_at = timezone.now() + timedelta(seconds=pause)
        run.save(update_fields=["pacing", "next_batch_at"])
    return pause


def mark_failed(run_id: int, expected_batch_number: int, error: BaseException | str) -> bool:
    """Record that batch ``expected_batch_number`` failed for good; False if the run moved on meanwhile."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    from .logging import redact

    with transaction.atomic():
        run = _locked(run_id)
        if run is None or run.status not in ACTIVE_STATUSES or run.batch_number != expected_batch_number:
            return False
        run.status = RunStatus.FAILED
        run.last_error = redact(message)[:4000]
        run.finished_at = timezone.now()
        run.next_batch_at = None
        run.save(update_fields=["status", "last_error", "finished_at", "next_batch_at"])
    return True


def cancel(run: MaintenanceRun | int, *, by: str = "") -> MaintenanceRun:
    """Stop a run after the batch in flight, if any.

    Waits for the run row's lock (held by an executing batch), then marks the run cancelled, so the
    next batch message finds a finished run and does nothing. A finished run is returned unchanged.
    """
    run_id = run.pk if isinstance(run, MaintenanceRun) else run
    with transaction.atomic():
        locked = _locked(run_id)
        if locked is None:
            raise MaintenanceRun.DoesNotExist(f"no maintenance run #{run_id}")
        if locked.status in ACTIVE_STATUSES:
            locked.cancel_requested = True
            locked.status = RunStatus.CANCELLED
            locked.finished_at = timezone.now()
            locked.next_batch_at = None
            if by:
                locked.last_error = f"cancelled by {by}"[:4000]
            locked.save(
                update_fields=["cancel_requested", "status", "finished_at", "next_batch_at", "last_error"]
            )
            logger.info(
                "maintenance run cancelled run=%s job=%s batch=%s",
                locked.pk,
                locked.kind,
                locked.batch_number,
                extra={"run_id": locked.pk, "job": locked.kind, "event": "cancelled"},
            )
    return locked


def resume(run: MaintenanceRun | int) -> MaintenanceRun:
    """Continue a failed, cancelled or stalled run from its phase and cursor.

    Raises RunConflict when another active run does the same work, ValueError for a run that
    succeeded (there is nothing left to do) and BrokerUnavailable when no broker answers.
    """
    run_id = run.pk if isinstance(run, MaintenanceRun) else run
    check_broker()
    try:
        with transaction.atomic():
            locked = _locked(run_id)
            if locked is None:
                raise MaintenanceRun.DoesNotExist(f"no maintenance run #{run_id}")
            if locked.status == RunStatus.SUCCEEDED:
                raise ValueError(f"run #{run_id} succeeded: nothing to resume")
            if locked.status not in ACTIVE_STATUSES:
                locked.status = RunStatus.RUNNING if locked.started_at else RunStatus.PENDING
                locked.finished_at = None
                locked.cancel_requested = False
                locked.last_error = ""
            laned = locked.lanes > 1 and lane_rules.phase_has_lanes(locked, locked.phase)
            if laned:
                locked.next_batch_at = None
                locked.heartbeat_at = timezone.now()
            else:
                _requeue(locked, due_now=True)
            locked.save()
        if laned:
            lane_rules.resume_lanes(locked)
    except IntegrityError:
        other = active_run(locked.kind, locked.params_key)
        if other is None:
            raise
        raise RunConflict(other) from None
    return locked


def _requeue(run: MaintenanceRun, *, due_now: bool) -> None:
    """Enqueue the run's current batch again, after commit; a copy still in the broker stays harmless.

    ``due_now`` (a resume) makes the batch due from now; the watchdog leaves ``next_batch_at`` as it
    is, so the run keeps showing as stalled until a batch commits, and marks the requeue in
    ``heartbeat_at`` so that it waits a full stall margin before sending another copy.
    """
    now = timezone.now()
    run.heartbeat_at = now
    if due_now or run.next_batch_at is None:
        run.next_batch_at = now
    run.requeue_count += 1
    run.celery_task_id = str(uuid.uuid4())
    run_id, number, task_id, kind = run.pk, run.batch_number, run.celery_task_id, run.kind
    transaction.on_commit(lambda: enqueue_batch(run_id, number, countdown=0, task_id=task_id, kind=kind))


def stall_seconds(value: float | None = None) -> float:
    """The stall margin: ``value``, else ``OAUTH_MAINTENANCE["STALL_SECONDS"]``."""
    if value is None:
        from .conf import maintenance_settings

        value = maintenance_settings.STALL_SECONDS
    return float(value)


def find_stalled_runs(older_than: float | None = None):
    """Active runs whose next batch was due more than ``older_than`` seconds ago: stalled runs.

    The default margin is ``OAUTH_MAINTENANCE["STALL_SECONDS"]``. A run stays in this set until one
    of its batches commits, however often the watchdog re-enqueued it.
    """
    limit = timezone.now() - timedelta(seconds=stall_seconds(older_than))
    return MaintenanceRun.objects.active().filter(next_batch_at__lt=limit).order_by("next_batch_at")


def _locked_unless_busy(run_id: int) -> MaintenanceRun | None:
    """The run row, locked; None when a batch holds its lock (or the row is gone).

    A batch holds the run row's lock from its first statement to its commit, so a row another
    transaction has locked is a batch in flight, not a lost one: ``SKIP LOCKED`` tells at once
    (PostgreSQL, MySQL 8, MariaDB 10.6). SQLite has no row locks; its write lock (every transaction
    of the project starts ``IMMEDIATE``) makes this wait for the batch to commit instead, and the
    caller's re-check then finds the run no longer overdue.
    """
    qs = MaintenanceRun.objects.filter(pk=run_id)
    features = connection.features
    if features.has_select_for_update:
        qs = qs.select_for_update(skip_locked=features.has_select_for_update_skip_locked)
    return qs.first()


def requeue_stalled_runs(older_than: float | None = None, *, limit: int = 100) -> list[int]:
    """Re-enqueue the current batch of every stalled run that no batch holds; returns their ids.

    Safe with a short margin because it acts only under the run row's lock: a batch in flight holds
    that lock (and commits a new ``next_batch_at``), so it is never taken for a lost one. A run the
    watchdog re-enqueued is left alone for another margin (``heartbeat_at``), so a busy worker does
    not collect one copy per pass. The copy carries the same batch number as the lost message, so
    if that one turns up after all (Redis redelivers unacknowledged messages after the visibility
    timeout), whichever comes second is stale and does nothing.
    """
    margin = stall_seconds(older_than)
    recent = timezone.now() - timedelta(seconds=margin)
    candidates = find_stalled_runs(margin).filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=recent))
    requeued = []
    for candidate in candidates.values_list("pk", flat=True)[:limit]:
        with transaction.atomic():
            run = _locked_unless_busy(candidate)
            if run is None or run.status not in ACTIVE_STATUSES or run.next_batch_at is None:
                continue
            threshold = timezone.now() - timedelta(seconds=margin)
            if run.next_batch_at >= threshold:
                continue  # a batch committed while we looked
            if run.heartbeat_at is not None and run.heartbeat_at >= threshold:
                continue  # re-enqueued within the margin: give that copy its chance
            _requeue(run, due_now=False)
            run.save(update_fields=["heartbeat_at", "next_batch_at", "requeue_count", "celery_task_id"])
            requeued.append(run.pk)
    for run_id in lane_rules.requeue_stalled_lanes(margin, limit=limit):
        if run_id not in requeued:
            requeued.append(run_id)
    if requeued:
        logger.warning(
            "maintenance watchdog re-enqueued stalled runs %s",
            requeued,
            extra={"event": "requeued", "run_ids": requeued},
        )
    return requeued
