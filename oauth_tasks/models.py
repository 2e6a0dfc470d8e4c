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
        help_text="Fingerprint of kind, parameters and dry-run flag: one active run per fingerprint.",
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    dry_run = models.BooleanField(default=False)
    batch_size = models.PositiveIntegerField()
    interval = models.FloatField(help_text="Seconds between two batches (the countdown of the next one).")

    phase = models.CharField(max_length=64, blank=True, default="")
    cursor = models.JSONField(null=True, blank=True, help_text="Largest key done in the current phase.")
    counts = models.JSONField(default=dict, blank=True, help_text="Rows processed per phase.")
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

    objects = MaintenanceRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "params_key"],
                condition=Q(status__in=["pending", "running"]),
                name="oauth_tasks_one_active_run_per_job",
                violation_error_message="A run of this job with these parameters is already active.",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_batch_at"], name="oauth_tasks_run_due"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} run #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def total_processed(self) -> int:
        return sum(v for v in (self.counts or {}).values() if isinstance(v, int))

    @property
    def duration(self) -> timedelta | None:
        """Wall time from the first batch to the end (or to now, while active)."""
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def progress(self) -> dict:
        """What Flower, the admin and the JSON API show about the run."""
        return {
            "run_id": self.pk,
            "kind": self.kind,
            "status": self.status,
            "phase": self.phase,
            "batch_number": self.batch_number,
            "counts": dict(self.counts or {}),
            "total": self.total_processed,
            "dry_run": self.dry_run,
            "result": dict(self.result or {}),
        }


class InstalledScheduleEntry(models.Model):
    """A beat entry the schedule installer created once, by name.

    The installer creates only entries it never created before: an entry an operator edited,
    disabled or deleted in the admin stays as the operator left it.
    """

    name = models.CharField(max_length=200, unique=True)
    task = models.CharField(max_length=200)
    installed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
