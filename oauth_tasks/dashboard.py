"""The maintenance dashboard in the admin: runs with progress bars, a cleanup button, charts.

One page (``admin/oauth_tasks/dashboard.html``) and a small JSON document it polls to move its
progress bars, both under the admin's *OAuth maintenance* section; every number comes from the run
rows, the token table snapshots the cleanup records, and beat's schedule.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import FloatField, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.safestring import SafeString

from .charts import bar_chart, line_chart
from .health import check_cleanup
from .models import ACTIVE_STATUSES, MaintenanceRun, RunStatus, TokenTableSnapshot, attach_lane_counts
from .progress import RunProgress, run_progress

CLEANUP_KIND = "cleanup"
#: Finished runs stay on the dashboard's run list this long, so a bar is seen reaching 100 %.
RECENT = timedelta(hours=1)
CHART_DAYS = 30
CHART_RUNS = 20


def current_runs(now: datetime | None = None) -> list[tuple[MaintenanceRun, RunProgress]]:
    """Active runs, then runs finished within the last hour (newest first), with their progress."""
    now = now or timezone.now()
    active = list(MaintenanceRun.objects.filter(status__in=ACTIVE_STATUSES).order_by("-created_at")[:50])
    recent = list(
        MaintenanceRun.objects.exclude(status__in=ACTIVE_STATUSES)
        .filter(finished_at__gte=now - RECENT)
        .order_by("-finished_at")[:10]
    )
    # A run that finished between the two reads is in both; the second read is the newer one.
    finished = {run.pk for run in recent}
    active = [run for run in active if run.pk not in finished]
    return [(run, run_progress(run, now=now)) for run in attach_lane_counts(active + recent)]


def poll_document(now: datetime | None = None) -> dict:
    """What the dashboard's script polls: the same runs as the page, as JSON."""
    now = now or timezone.now()
    return {
        "now": now.isoformat(),
        "runs": [
            {
                **progress.as_dict(),
                "summary": progress.summary,
                "eta": progress.eta_text,
                "pacing": run.pacing_state(),
                "pace": run.pacing_summary,
            }
            for run, progress in current_runs(now)
        ],
    }


def next_cleanup() -> dict:
    """The beat entry that starts the cleanup and when it is next due (None without one)."""
    check = check_cleanup()
    due = check.get("next_due")
    return {"schedule": check.get("schedule"), "next_due": datetime.fromisoformat(due) if due else None}


def _days(now: datetime) -> list:
    today = timezone.localdate(now)
    return [today - timedelta(days=offset) for offset in range(CHART_DAYS - 1, -1, -1)]


def removed_per_day_chart(now: datetime) -> SafeString:
    days = _days(now)
    removed: dict = defaultdict(int)
    runs = MaintenanceRun.objects.filter(
        kind=CLEANUP_KIND, dry_run=False, finished_at__gte=now - timedelta(days=CHART_DAYS)
    ).only("counts", "finished_at", "lanes")
    for run in attach_lane_counts(runs):
        removed[timezone.localdate(run.finished_at)] += run.total_processed
    return bar_chart(
        f"Rows removed by cleanup per day, last {CHART_DAYS} days",
        [day.strftime("%d %b") for day in days],
        {"rows removed": [removed[day] for day in days]},
    )


def table_charts(now: datetime) -> tuple[SafeString, SafeString]:
    snapshots = list(
        TokenTableSnapshot.objects.filter(
            day__gte=timezone.localdate(now) - timedelta(days=CHART_DAYS)
        ).order_by("day")
    )
    labels = [snapshot.day.strftime("%d %b") for snapshot in snapshots]
    names = sorted({name for snapshot in snapshots for name in snapshot.tables})
    sizes: dict[str, list[float]] = {name: [] for name in names}
    shares: dict[str, list[float]] = {name: [] for name in names}
    for snapshot in snapshots:
        for name in names:
            table = snapshot.tables.get(name) or {}
            sizes[name].append(table.get("total") or 0)
            ratio = table.get("expired_ratio", table.get("revoked_ratio")) or 0
            shares[name].append(100 * ratio)
    return (
        line_chart("Token table sizes (rows), when each cleanup started", labels, sizes),
        line_chart("Expired share of each table (revoked for refresh tokens)", labels, shares, unit="%"),
    )


def batch_duration_chart() -> SafeString:
    # A laned run's batches are its own chain's plus every lane's; the time of lanes a cancel or a
    # failure left unfolded is still on their rows.
    runs = list(
        MaintenanceRun.objects.exclude(status__in=ACTIVE_STATUSES)
        .filter(batch_number__gt=0, started_at__isnull=False)
        .annotate(
            lane_batches=Coalesce(Sum("lane_set__batch_number"), 0),
            unfolded_busy=Coalesce(
                Sum("lane_set__busy_seconds", filter=Q(lane_set__folded=False)),
                Value(0.0),
                output_field=FloatField(),
            ),
        )
        .order_by("-finished_at")[:CHART_RUNS]
    )[::-1]
    return bar_chart(
        f"Batch duration of the last {CHART_RUNS} runs",
        [f"#{run.pk}" for run in runs],
        {
            "mean batch": [
                (run.busy_seconds + run.unfolded_busy) / (run.batch_number + run.lane_batches) for run in runs
            ],
            "slowest batch": [run.slowest_batch_seconds for run in runs],
        },
        unit="s",
    )


def dashboard_context(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    sizes, shares = table_charts(now)
    return {
        "runs": current_runs(now),
        "next_cleanup": next_cleanup(),
        "last_cleanup": MaintenanceRun.objects.filter(
            kind=CLEANUP_KIND, status=RunStatus.SUCCEEDED, dry_run=False
        )
        .order_by("-finished_at")
        .first(),
        "charts": [
            ("Rows removed per day", removed_per_day_chart(now)),
            ("Token table sizes", sizes),
            ("Expired share", shares),
            ("Batch durations", batch_duration_chart()),
        ],
    }
