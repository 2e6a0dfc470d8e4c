"""The maintenance run: the database's record of one piece of maintenance work.

The run row, not the broker, is the source of truth. A Celery message only says "run batch N of
run R now"; the row holds where the work stands (phase, cursor, batch number), what it did (counts
per phase) and why it stopped. A lost message is therefore found again from the database by the
watchdog, and a duplicated one is recognised by its stale batch number.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


#: Statuses of a run that still has work to do; at most one such run per job kind and parameters.
ACTIVE_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)
FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
#: What views show instead of "pending" or "running" for an active run whose next batch is overdue.
STALLED = "stalled"


class MaintenanceRunQuerySet(models.QuerySet):
    def active(self) -> MaintenanceRunQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def finished(self) -> MaintenanceRunQuerySet:
        return self.filter(status__in=FINISHED_STATUSES)


class MaintenanceRun(models.Model):
    """One run of a registered job (``oauth_tasks.jobs``) over its phases, batch by batch."""

    kind = models.CharField(max_length=64, db_index=True, help_text="Name of the registered job.")
    params = models.JSONField(default=dict, blank=True, help_text="Validated job parameters.")
    params_key = models.CharField(
        max_length=64,
        editable=False,
        help_text="Fingerprint of kind, parameters and dry-run flag.",
    )
    active_key = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        editable=False,
        help_text="The fingerprint while the run is active, NULL after: one active run per fingerprint.",
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    dry_run = models.BooleanField(default=False)
    batch_size = models.PositiveIntegerField()
    interval = models.FloatField(help_text="Seconds between two batches (the countdown of the next one).")

    phase = models.CharField(max_length=64, blank=True, default="")
    cursor = models.JSONField(null=True, blank=True, help_text="Largest key done in the current phase.")
    counts = models.JSONField(
        default=dict,
        blank=True,
        help_text="Rows processed per phase by the run's own chain and by lanes of phases that ended; "
        "read total_counts, which adds the lanes of the phase under way.",
    )
    batch_number = models.PositiveIntegerField(
        default=0, help_text="Batches committed so far; the next message must carry this number."
    )
    cutoff = models.DateTimeField(help_text="The run's frozen 'now': every batch judges expiry against it.")

    trigger = models.CharField(
        max_length=32, help_text="What started the run: beat, view, admin, command, api..."
    )
    triggered_by = models.CharField(max_length=255, blank=True, default="", help_text="Who, when known.")

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last committed batch or enqueue.")
    next_batch_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next batch is due; the watchdog looks for overdue runs."
    )

    last_error = models.TextField(blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    celery_task_id = models.CharField(
        max_length=255, blank=True, default="", help_text="Last enqueued message."
    )
    requeue_count = models.PositiveIntegerField(
        default=0, help_text="Times the watchdog or a resume re-enqueued."
    )
    result = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the job reports beyond counts, e.g. the applications a removal lists or removed.",
    )

    estimated_counts = models.JSONField(
        default=dict,
        blank=True,
        help_text="Rows each phase was expected to process, estimated at dispatch (progress and ETA).",
    )
    busy_seconds = models.FloatField(default=0.0, help_text="Time spent inside batches, summed.")
    slowest_batch_seconds = models.FloatField(default=0.0, help_text="Duration of the longest batch.")
    pacing = models.JSONField(
        default=dict,
        blank=True,
        help_text="Pacing settings frozen at dispatch and the pacer's state: the next batch's size, "
        "the pause before it and why the run slowed (oauth_tasks.pacing).",
    )
    lanes = models.PositiveSmallIntegerField(
        default=1,
        help_text="Chains a phase is split into (disjoint key ranges, one worker each); 1: one chain.",
    )

    objects = MaintenanceRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A plain unique constraint over a column that is NULL once the run ends (NULLs never
            # collide): every backend enforces it, MariaDB and MySQL included, which create no
            # conditional unique constraint.
            models.UniqueConstraint(
                fields=["active_key"],
                name="oauth_tasks_one_active_run_per_job",
                violation_error_message="A run of this job with these parameters is already active.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "running"], active_key__isnull=False)
                | (~Q(status__in=["pending", "running"]) & Q(active_key__isnull=True)),
                name="oauth_tasks_active_key_while_active",
                violation_error_message="active_key is the fingerprint while the run is active, NULL after.",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_batch_at"], name="oauth_tasks_run_due"),
        ]
        permissions = [
            ("grant_privileged_scopes", "Can start scope migrations that grant privileged scopes"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} run #{self.pk} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        """Set ``active_key`` from the status, in the same write (and so transaction) as the status.

        A save that names ``status`` in ``update_fields`` writes ``active_key`` with it. A
        queryset ``update()`` of ``status`` must set ``active_key`` itself; the check constraint
        refuses one that does not.
        """
        self.active_key = self.params_key if self.status in ACTIVE_STATUSES else None
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "status" in update_fields and "active_key" not in update_fields:
            kwargs["update_fields"] = [*update_fields, "active_key"]
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_stalled(self) -> bool:
        """Active, and its next batch more than ``OAUTH_MAINTENANCE["STALL_SECONDS"]`` overdue.

        The same rule as ``engine.find_stalled_runs``: true from the moment a batch is that late
        until one commits, whether or not the watchdog already re-enqueued it.
        """
        from .conf import maintenance_settings

        if not self.is_active:
            return False
        margin = timedelta(seconds=float(maintenance_settings.STALL_SECONDS))
        if self.next_batch_at is None:
            # A run split into lanes waits on them: it is stalled when one of them is.
            return (
                self.lanes > 1
                and self.lane_set.filter(
                    status=LaneStatus.RUNNING, next_batch_at__lt=timezone.now() - margin
                ).exists()
            )
        return self.next_batch_at < timezone.now() - margin

    @property
    def display_status(self) -> str:
        """``stalled`` for a stalled run, else its status: what every view shows."""
        return STALLED if self.is_stalled else self.status

    def lane_counts(self) -> dict[str, int]:
        """Rows counted by lanes whose counts are not yet folded into ``counts`` (the phase under
        way, or one a cancel or failure stopped), per phase; ``{}`` for a run of one chain."""
        cached = getattr(self, "_lane_counts", None)
        if cached is not None:
            return dict(cached)
        if self.lanes <= 1 or self.pk is None:
            return {}
        return lane_totals([self.pk]).get(self.pk, LaneTotals()).counts

    @property
    def total_counts(self) -> dict[str, int]:
        """Rows processed per phase: the run's ``counts`` plus its lanes' unfolded counts.

        Every row is in exactly one of the two: a lane keeps its rows on its own row until the
        last lane of its phase folds all of them into ``counts`` and marks them folded, in one
        transaction. What every page, payload and log line reports.
        """
        counts = dict(self.counts or {})
        for phase, value in self.lane_counts().items():
            counts[phase] = counts.get(phase, 0) + value
        return counts

    @property
    def total_processed(self) -> int:
        return sum(v for v in self.total_counts.values() if isinstance(v, int))

    @property
    def duration(self) -> timedelta | None:
        """Wall time from the first batch to the end (or to now, while active)."""
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def estimated_total(self) -> int | None:
        """Rows the whole run was expected to process; None when the job gave no estimate, or when
        a phase's count was unknown (stopped by its time limit on MySQL or MariaDB)."""
        estimates = list((self.estimated_counts or {}).values())
        if any(v is None for v in estimates):
            return None
        values = [v for v in estimates if isinstance(v, int)]
        return sum(values) if values else None

    def progress(self) -> dict:
        """What Flower, the admin and the JSON API show about the run."""
        return {
            "run_id": self.pk,
            "kind": self.kind,
            "status": self.status,
            "stalled": self.is_stalled,
            "phase": self.phase,
            "batch_number": self.batch_number,
            "counts": self.total_counts,
            "total": self.total_processed,
            "estimated_counts": dict(self.estimated_counts or {}),
            "estimated_total": self.estimated_total,
            "dry_run": self.dry_run,
            "result": dict(self.result or {}),
            "pacing": self.pacing_state(),
        }

    def pacing_state(self) -> dict:
        """The pacer's state without the frozen settings: ``{"enabled": False}`` for a fixed pace."""
        state = dict(self.pacing or {})
        settings = state.pop("settings", None) or {}
        return {"enabled": bool(settings.get("enabled")), **state}

    @property
    def pacing_summary(self) -> str:
        """One line for pages: "fixed" or "1,500 rows, pause 0.40 s, slowed: replica lag 12.3 s > 5 s"."""
        state = self.pacing_state()
        if not state["enabled"]:
            return "fixed"
        line = f"{state.get('batch_size', self.batch_size):,} rows, pause {state.get('pause') or 0:.2f} s"
        if state.get("waiting"):
            return f"waiting: {state.get('reason')}; {line}"
        if state.get("reason"):
            return f"{line}, slowed: {state['reason']}"
        last = state.get("last_slowdown") or {}
        if last.get("reason"):
            return f"{line} (last slowed at batch {last.get('batch_number')}: {last['reason']})"
        return line


class LaneStatus(models.TextChoices):
    RUNNING = "running", "running"
    DONE = "done", "done"
    STOPPED = "stopped", "stopped"


class MaintenanceLane(models.Model):
    """One chain of a laned run: the phase's keys in ``(lo, hi]``, walked by its own cursor.

    A run with ``lanes`` above 1 splits each phase into lanes; every lane is fenced by its own
    batch number exactly as a run is by its own. A lane counts its rows on its own row, in the
    transaction of the batch that processed them, so lanes never wait on each other for the run
    row. The run moves to the next phase when the last lane of the phase is done; that lane folds
    the phase's lane counts into the run's ``counts`` and marks them ``folded``, in the same
    transaction, so each row is counted once (``MaintenanceRun.total_counts``).
    """

    run = models.ForeignKey(MaintenanceRun, on_delete=models.CASCADE, related_name="lane_set")
    phase = models.CharField(max_length=64)
    index = models.PositiveIntegerField(help_text="Order of creation within the phase (splits count up).")
    lo = models.BigIntegerField(null=True, blank=True, help_text="Keys above this (NULL: from the start).")
    hi = models.BigIntegerField(null=True, blank=True, help_text="Keys up to this (NULL: to the end).")
    cursor = models.JSONField(null=True, blank=True, help_text="Largest key done in the lane.")
    batch_number = models.PositiveIntegerField(default=0)
    batch_size = models.PositiveIntegerField(help_text="The lane's next batch size (paced runs adapt it).")
    status = models.CharField(max_length=16, choices=LaneStatus.choices, default=LaneStatus.RUNNING)
    processed = models.PositiveBigIntegerField(default=0)
    counts = models.JSONField(
        default=dict, blank=True, help_text="Rows this lane processed, per phase (its batches' counts)."
    )
    busy_seconds = models.FloatField(default=0.0, help_text="Time this lane spent inside batches.")
    slowest_batch_seconds = models.FloatField(default=0.0, help_text="Duration of its longest batch.")
    folded = models.BooleanField(
        default=False, help_text="Its counts and times were added to the run's when its phase ended."
    )
    split_from = models.PositiveIntegerField(null=True, blank=True, help_text="Index of the lane split.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    next_batch_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_id", "phase", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "phase", "index"], name="oauth_tasks_one_lane_per_index"),
        ]
        indexes = [models.Index(fields=["status", "next_batch_at"], name="oauth_tasks_lane_due")]

    def __str__(self) -> str:
        return f"lane {self.index} of run #{self.run_id} ({self.phase}, {self.status})"


class LaneTotals:
    """What a run's unfolded lanes hold: counts per phase, time in batches, slowest batch, last beat."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.busy_seconds = 0.0
        self.slowest_batch_seconds = 0.0
        self.heartbeat_at = None


def lane_totals(run_ids) -> dict[int, LaneTotals]:
    """Per run id, the sums over its lanes not yet folded into the run row (one query)."""
    totals: dict[int, LaneTotals] = {}
    rows = MaintenanceLane.objects.filter(run_id__in=list(run_ids), folded=False).values_list(
        "run_id", "counts", "busy_seconds", "slowest_batch_seconds", "heartbeat_at"
    )
    for run_id, counts, busy, slowest, beat in rows:
        total = totals.setdefault(run_id, LaneTotals())
        for phase, value in (counts or {}).items():
            total.counts[phase] = total.counts.get(phase, 0) + int(value)
        total.busy_seconds += busy
        total.slowest_batch_seconds = max(total.slowest_batch_seconds, slowest)
        if beat is not None and (total.heartbeat_at is None or beat > total.heartbeat_at):
            total.heartbeat_at = beat
    return totals


def attach_lane_counts(runs) -> list:
    """Load the lane counts of many runs in one query, so ``total_counts`` of each asks no more."""
    runs = list(runs)
    totals = lane_totals(run.pk for run in runs if run.lanes > 1)
    for run in runs:
        run._lane_counts = totals.get(run.pk, LaneTotals()).counts
    return runs


class InstalledScheduleEntry(models.Model):
    """A beat entry the schedule installer created once, by name.

    The installer creates only entries it never created before: an entry an operator edited,
    disabled or deleted in the admin stays as the operator left it.
    """

    name = models.CharField(max_length=200, unique=True)
    task = models.CharField(max_length=200)
    installed_at = models.DateTimeField(default=timezone.now)
    schedule = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The crontab the installer last gave the entry; while the entry still has it, "
        "nobody edited it and a new CLEANUP_CRONTAB replaces it.",
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "installed schedule entries"

    def __str__(self) -> str:
        return self.name


class MaintenanceDashboard(MaintenanceRun):
    """No table of its own: gives the admin's maintenance section its "Dashboard" entry."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"


class TokenTableSnapshot(models.Model):
    """Size and stale share of each token table on one day, recorded when a cleanup run starts.

    The dashboard charts them over time; one row per day (the day's last cleanup wins).
    """

    day = models.DateField(unique=True)
    recorded_at = models.DateTimeField(default=timezone.now)
    tables = models.JSONField(
        default=dict, help_text="Per table: total rows, stale rows (expired, or revoked) and their share."
    )

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"token tables on {self.day}"
