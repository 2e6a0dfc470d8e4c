"""Health checks of the provider and its maintenance: what an operator or a monitor needs to know.

Each check returns a dict with a ``status`` of ``ok``, ``warning``, ``error`` or ``skipped`` and the
numbers behind it. ``run_health_checks`` runs them in order and folds the statuses into one:
``healthy`` (all ok), ``warning`` (something needs attention, the service still works) or
``unhealthy`` (the database or the broker cannot be reached). Checks that read the database are
skipped when it is down, so one outage gives one error, not five.

Counting stays cheap on large tables:

* SQLite (small, single-machine databases): plain ``COUNT(*)``.
* PostgreSQL: the table total is the planner's estimate (``pg_class.reltuples``) once it exceeds
  ``HEALTH_EXACT_COUNT_LIMIT``, an exact count below it; the expired rows are counted over the
  ``expires`` index in a ``LIMIT``-ed subquery, so the count stops after ``HEALTH_EXACT_COUNT_LIMIT``
  rows or ``HEALTH_EXACT_COUNT_SECONDS``, and beyond that the planner's row estimate of the same
  range (``EXPLAIN``) is used.
  Every table section says whether its numbers are ``exact``.
* The counts of either database are cached for ``HEALTH_COUNT_CACHE_SECONDS`` in Django's cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError, connections
from django.db.models import Model, Q
from django.utils import timezone

from .conf import maintenance_settings
from .counting import bounded_count
from .logging import redact

OK = "ok"
WARNING = "warning"
ERROR = "error"
SKIPPED = "skipped"

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

# The job kind of the token cleanup (oauth_tasks.jobs).
CLEANUP_KIND = "cleanup"

Check = dict[str, Any]


def _error_text(exc: BaseException) -> str:
    """A short, redacted description of a failure: never a DSN, a password or a token value."""
    return redact(f"{type(exc).__name__}: {exc}".strip())[:300]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- database ------------------------------------------------------------------------------------


def check_database(using: str = "default") -> Check:
    """One ``SELECT 1`` on the database alias ``using``."""
    started = time.monotonic()
    try:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means the same thing here: not reachable
        # A broken connection must not be reused by the next request of this thread.
        connections[using].close_if_unusable_or_obsolete()
        return {"status": ERROR, "reason": "database_unreachable", "error": _error_text(exc)}
    return {
        "status": OK,
        "vendor": connections[using].vendor,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


# --- broker --------------------------------------------------------------------------------------


def _redis_queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps for one queue: the plain name and one per priority step."""
    from kombu.transport.redis import PRIORITY_STEPS, Channel

    return [queue] + [f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]


def check_broker(broker_url: str | None = None, queue: str | None = None) -> Check:
    """PING the broker with short timeouts and report the backlog of the maintenance queue.

    A Redis broker also reports ``backlog`` (messages waiting in the queue, ``LLEN`` over the queue's
    priority lists) and ``unacked`` (messages delivered to a worker and not yet acknowledged,
    including batches waiting for their countdown). Another transport is only connected to.
    """
    if broker_url is None:
        from celery import current_app

        broker_url = current_app.conf.broker_url
    queue = queue or maintenance_settings.HEALTH_QUEUE_NAME
    timeout = float(maintenance_settings.HEALTH_BROKER_TIMEOUT_SECONDS)
    url = str(broker_url).split(";")[0].strip()
    started = time.monotonic()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        from kombu import Connection

        try:
            with Connection(url, connect_timeout=timeout) as conn:
                conn.ensure_connection(max_retries=1, timeout=timeout)
        except Exception as exc:
            return {"status": ERROR, "reason": "broker_unreachable", "error": _error_text(exc)}
        return {"status": OK, "transport": url.split(":", 1)[0]}

    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False
    )
    try:
        client.ping()
        latency = round((time.monotonic() - started) * 1000, 1)
        pipe = client.pipeline(transaction=False)
        for key in _redis_queue_keys(queue):
            pipe.llen(key)
        pipe.hlen("unacked")
        *lengths, unacked = pipe.execute()
    except Exception as exc:
        return {"status": ERROR, "reason": "broker_unreachable", "error": _error_text(exc)}
    finally:
        client.close()
    backlog = int(sum(lengths))
    threshold = maintenance_settings.HEALTH_QUEUE_BACKLOG_WARNING
    result: Check = {
        "status": WARNING if backlog > threshold else OK,
        "transport": "redis",
        "latency_ms": latency,
        "queue": queue,
        "backlog": backlog,
        "backlog_warning": threshold,
        "unacked": int(unacked),
    }
    if backlog > threshold:
        result["reason"] = "queue_backlog"
        result["message"] = f"{backlog} messages wait in the {queue!r} queue (warning above {threshold})"
    return result


# --- token counts --------------------------------------------------------------------------------


def _estimated_table_rows(model: type[Model], using: str) -> int | None:
    """PostgreSQL's estimate of a table's row count; None before the table was ever analysed."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [model._meta.db_table]
        )
        row = cursor.fetchone()
    if not row or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


def count_rows(model: type[Model], stale: Q, using: str = "default") -> dict[str, Any]:
    """Total and stale rows of one table, cheap on any size (see the module docstring)."""
    manager = model._default_manager.db_manager(using)
    if connections[using].vendor != "postgresql":
        total = manager.count()
        stale_count = manager.filter(stale).count()
        exact = True
    else:
        limit = int(maintenance_settings.HEALTH_EXACT_COUNT_LIMIT)
        estimate = _estimated_table_rows(model, using)
        exact = True
        if estimate is not None and estimate > limit:
            total = estimate
            exact = False
        else:
            total = manager.all()[: limit + 1].count()
            if total > limit:
                total = max(total, estimate or 0)
                exact = False
        seconds = float(maintenance_settings.HEALTH_EXACT_COUNT_SECONDS)
        stale_count, stale_exact = bounded_count(manager.filter(stale), limit, seconds)
        exact = exact and stale_exact
    # An estimated total can lag behind an exact stale count; the ratio never exceeds 1.
    total = max(total, stale_count)
    return {
        "total": total,
        "stale": stale_count,
        "ratio": round(stale_count / total, 4) if total else 0.0,
        "exact": exact,
    }


def _token_tables(now: datetime) -> list[tuple[str, type[Model], Q, str, bool]]:
    """(name, model, stale predicate, stale label, counts towards the warning) of each token table."""
    from oauth_provider.models import (
        get_access_token_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )

    return [
        ("access_tokens", get_access_token_model(), Q(expires__lt=now), "expired", True),
        ("refresh_tokens", get_refresh_token_model(), Q(revoked__isnull=False), "revoked", False),
        ("id_tokens", get_id_token_model(), Q(expires__lt=now), "expired", True),
        ("grants", get_grant_model(), Q(expires__lt=now), "expired", True),
    ]


def token_counts(
    using: str = "default", now: datetime | None = None, *, cached: bool = True
) -> dict[str, dict[str, Any]]:
    """Per token table: total, active and expired (revoked for refresh tokens), ratio, exactness.

    Revoked refresh tokens are reported but do not raise a warning: with reuse protection on, they are
    kept on purpose until they expire.
    """
    ttl = maintenance_settings.HEALTH_COUNT_CACHE_SECONDS if cached else 0
    key = f"oauth_tasks:health:token_counts:{using}"
    if ttl:
        cached = cache.get(key)
        if cached is not None:
            return cached
    now = now or timezone.now()
    tables: dict[str, dict[str, Any]] = {}
    for name, model, stale, label, warns in _token_tables(now):
        counts = count_rows(model, stale, using)
        tables[name] = {
            "total": counts["total"],
            "active": counts["total"] - counts["stale"],
            label: counts["stale"],
            f"{label}_ratio": counts["ratio"],
            "exact": counts["exact"],
            "checked_for_warning": warns,
        }
    if ttl:
        cache.set(key, tables, ttl)
    return tables


def check_tokens(using: str = "default") -> Check:
    """Warn when the expired share of a token table is above ``HEALTH_EXPIRED_RATIO_WARNING``."""
    threshold = float(maintenance_settings.HEALTH_EXPIRED_RATIO_WARNING)
    tables = token_counts(using)
    over = [
        name
        for name, t in tables.items()
        if t["checked_for_warning"] and t.get("expired_ratio", 0.0) > threshold
    ]
    result: Check = {
        "status": WARNING if over else OK,
        "expired_ratio_warning": threshold,
        "method": "count"
        if connections[using].vendor != "postgresql"
        else "bounded count and planner estimate",
        "cached_seconds": maintenance_settings.HEALTH_COUNT_CACHE_SECONDS,
        "tables": {
            name: {k: v for k, v in t.items() if k != "checked_for_warning"} for name, t in tables.items()
        },
    }
    if over:
        result["reason"] = "expired_share_high"
        result["message"] = f"expired share above {threshold:g} in {', '.join(over)}: is the cleanup running?"
    return result


# --- schedule: last cleanup and beat -------------------------------------------------------------


def _due_at(schedule: Any, reference: datetime, now: datetime) -> datetime:
    """When ``schedule`` (a Celery schedule) next runs after a run at ``reference``."""
    return now + schedule.remaining_estimate(reference)


def _enabled_periodic_tasks(using: str) -> list[Any]:
    from django_celery_beat.models import PeriodicTask

    return list(
        PeriodicTask.objects.using(using)
        .filter(enabled=True)
        .select_related("interval", "crontab", "solar", "clocked")
    )


def cleanup_task_names() -> set[str]:
    """Celery task names a beat entry uses to start the cleanup (the engine's, and the generic one)."""
    from .tasks import CLEANUP_TASK_NAME

    return {CLEANUP_TASK_NAME}


def _cleanup_periodic_task(periodic_tasks: Iterable[Any]) -> Any | None:
    """The enabled beat entry that starts the cleanup, found by its task (an operator may rename it)."""
    names = cleanup_task_names()
    for periodic_task in periodic_tasks:
        if periodic_task.task in names:
            return periodic_task
        if periodic_task.task == "oauth_tasks.start_job" and CLEANUP_KIND in (periodic_task.args or ""):
            return periodic_task
    return None


def last_successful_cleanup(using: str = "default") -> datetime | None:
    """When the last cleanup run that succeeded finished; None when none did."""
    from .models import MaintenanceRun, RunStatus

    return (
        MaintenanceRun.objects.using(using)
        .filter(kind=CLEANUP_KIND, status=RunStatus.SUCCEEDED, dry_run=False, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )


def check_cleanup(using: str = "default", now: datetime | None = None) -> Check:
    """Age of the last successful cleanup against its schedule (or ``HEALTH_CLEANUP_MAX_AGE_SECONDS``).

    With a cleanup entry in beat's schedule, the cleanup is overdue when the run the schedule
    expected after the last success has not succeeded ``HEALTH_CLEANUP_GRACE_SECONDS`` later. With
    no success yet, the schedule's own install time is the reference, so a fresh install is not
    reported overdue before its first run was due.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=maintenance_settings.HEALTH_CLEANUP_GRACE_SECONDS)
    last = last_successful_cleanup(using)
    periodic_task = _cleanup_periodic_task(_enabled_periodic_tasks(using))
    result: Check = {
        "last_success": _iso(last),
        "age_seconds": round((now - last).total_seconds()) if last else None,
        "schedule": None,
    }
    if periodic_task is not None:
        result["schedule"] = {
            "name": periodic_task.name,
            "task": periodic_task.task,
            "every": str(periodic_task.scheduler),
        }
        reference = last or periodic_task.date_changed
        due = _due_at(periodic_task.schedule, reference, now)
        result["next_due"] = _iso(due)
        overdue = now > due + grace
    else:
        max_age = timedelta(seconds=maintenance_settings.HEALTH_CLEANUP_MAX_AGE_SECONDS)
        result["max_age_seconds"] = int(max_age.total_seconds())
        overdue = last is None or now - last > max_age
    result["status"] = WARNING if overdue else OK
    if overdue:
        result["reason"] = "no_cleanup_recorded" if last is None else "cleanup_overdue"
        result["message"] = (
            "no successful cleanup recorded" if last is None else "the last successful cleanup is overdue"
        ) + ("" if periodic_task is not None else " (no cleanup schedule installed)")
    return result


def check_beat(using: str = "default", now: datetime | None = None) -> Check:
    """When beat was last seen running a task, and whether any enabled entry is late.

    Beat writes ``last_run_at`` of an entry when it sends it, so an entry whose next run is more
    than ``HEALTH_BEAT_GRACE_SECONDS`` in the past means beat is not running (or not this schedule).
    """
    now = now or timezone.now()
    grace = timedelta(seconds=maintenance_settings.HEALTH_BEAT_GRACE_SECONDS)
    periodic_tasks = [pt for pt in _enabled_periodic_tasks(using) if pt.clocked_id is None]
    if not periodic_tasks:
        return {
            "status": WARNING,
            "reason": "beat_schedule_empty",
            "last_seen": None,
            "message": "no enabled entry in beat's schedule",
        }
    last_seen = max((pt.last_run_at for pt in periodic_tasks if pt.last_run_at), default=None)
    late: list[str] = []
    for pt in periodic_tasks:
        reference = pt.last_run_at or pt.start_time or pt.date_changed
        try:
            due = _due_at(pt.schedule, reference, now)
        except Exception:  # an entry beat itself could not evaluate is beat's problem to log
            continue
        if now > due + grace:
            late.append(pt.name)
    result: Check = {
        "status": WARNING if late else OK,
        "last_seen": _iso(last_seen),
        "seconds_since": round((now - last_seen).total_seconds()) if last_seen else None,
        "enabled_entries": len(periodic_tasks),
        "late_entries": late,
    }
    if late:
        result["reason"] = "beat_late"
        result["message"] = f"beat has not run {', '.join(late)} on time: is beat running?"
    return result


# --- runs ----------------------------------------------------------------------------------------


def check_runs(using: str = "default", now: datetime | None = None) -> Check:
    """Warn about every stalled run: active, with its next batch more than ``STALL_SECONDS`` late.

    The watchdog re-enqueues such a run within seconds when a worker is up, so a run that stays
    here means no worker takes its messages (none running, a wrong queue or broker) or its batches
    keep failing before they commit.
    """
    from .engine import stall_seconds
    from .models import MaintenanceRun

    now = now or timezone.now()
    margin = stall_seconds()
    stalled = list(
        MaintenanceRun.objects.using(using)
        .active()
        .filter(next_batch_at__lt=now - timedelta(seconds=margin))
        .order_by("next_batch_at")
        .values("pk", "kind", "status", "next_batch_at", "requeue_count")[:20]
    )
    # A run split into lanes is as late as its latest lane.
    from django.db.models import Min

    from .models import LaneStatus, MaintenanceLane

    laned = (
        MaintenanceLane.objects.using(using)
        .filter(
            status=LaneStatus.RUNNING,
            next_batch_at__lt=now - timedelta(seconds=margin),
            run__status__in=["pending", "running"],
            run__next_batch_at__isnull=True,
        )
        .values("run")
        .annotate(due=Min("next_batch_at"))
        .order_by("due")[:20]
    )
    lanes_due = {row["run"]: row["due"] for row in laned}
    for run in (
        MaintenanceRun.objects.using(using)
        .filter(pk__in=list(lanes_due))
        .values("pk", "kind", "status", "requeue_count")
    ):
        stalled.append({**run, "next_batch_at": lanes_due[run["pk"]]})
    active = MaintenanceRun.objects.using(using).active().count()
    late = {run["pk"]: round((now - run["next_batch_at"]).total_seconds()) for run in stalled}
    result: Check = {
        "status": WARNING if stalled else OK,
        "active": active,
        "stall_seconds": margin,
        "stalled": [
            {
                "run_id": run["pk"],
                "kind": run["kind"],
                "status": run["status"],
                "next_batch_at": _iso(run["next_batch_at"]),
                "late_seconds": late[run["pk"]],
                "requeue_count": run["requeue_count"],
            }
            for run in stalled
        ],
    }
    if stalled:
        names = ", ".join(f"run #{run['pk']} ({run['kind']}, {late[run['pk']]} s late)" for run in stalled)
        result["message"] = (
            f"stalled: {names}: is a worker running on the maintenance queue? "
            "See docs/operations.md, When a run is stuck"
        )
    return result


# --- all together --------------------------------------------------------------------------------

CHECKS: dict[str, Callable[..., Check]] = {
    "database": check_database,
    "broker": check_broker,
    "tokens": check_tokens,
    "cleanup": check_cleanup,
    "beat": check_beat,
    "runs": check_runs,
}
NEEDS_DATABASE = {"tokens", "cleanup", "beat", "runs"}


def run_health_checks(names: Iterable[str] | None = None, using: str = "default") -> dict[str, Any]:
    """Run the named checks (all by default) and fold their statuses into one overall status."""
    selected = [name for name in CHECKS if names is None or name in set(names)]
    checks: dict[str, Check] = {}
    database_ok = True
    if any(name in NEEDS_DATABASE or name == "database" for name in selected):
        database = check_database(using)
        database_ok = database["status"] == OK
        if "database" in selected:
            checks["database"] = database
    for name in selected:
        if name == "database":
            continue
        if name in NEEDS_DATABASE and not database_ok:
            checks[name] = {
                "status": SKIPPED,
                "reason": "database_unreachable",
                "message": "the database is not reachable",
            }
            continue
        try:
            checks[name] = CHECKS[name]() if name == "broker" else CHECKS[name](using)
        except DatabaseError as exc:
            checks[name] = {"status": ERROR, "reason": "database_error", "error": _error_text(exc)}
    statuses = {check["status"] for check in checks.values()}
    if not database_ok or ERROR in statuses:
        overall = UNHEALTHY
    elif WARNING in statuses:
        overall = WARNING
    else:
        overall = HEALTHY
    return {"status": overall, "time": timezone.now().isoformat(), "checks": checks}
