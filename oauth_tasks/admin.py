"""Admin for maintenance runs: watch progress, cancel, resume.

Runs are created by dispatch (beat, views, commands), never typed in by hand: the admin shows them
read-only and acts on them only through the engine, so its actions follow the same rules as the API.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from . import engine
from .models import ACTIVE_STATUSES, InstalledScheduleEntry, MaintenanceRun, RunStatus


@admin.register(MaintenanceRun)
class MaintenanceRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "dry_run",
        "phase",
        "progress_display",
        "counts_display",
        "duration_display",
        "trigger",
        "created_at",
    )
    list_filter = ("status", "kind", "dry_run", "trigger")
    search_fields = ("=id", "kind", "triggered_by", "celery_task_id")
    date_hierarchy = "created_at"
    actions = ("cancel_runs", "resume_runs")
    readonly_fields = [f.name for f in MaintenanceRun._meta.fields] + ["duration_display", "counts_display"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Visible to staff with view rights; the actions below need change rights.
        return super().has_change_permission(request, obj) and obj is None

    @admin.display(description="progress")
    def progress_display(self, run: MaintenanceRun) -> str:
        return f"batch {run.batch_number}, {run.total_processed} rows"

    @admin.display(description="counts")
    def counts_display(self, run: MaintenanceRun) -> str:
        counts = run.counts or {}
        if not counts:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}: {}", sorted(counts.items()))

    @admin.display(description="duration")
    def duration_display(self, run: MaintenanceRun) -> str:
        duration = run.duration
        return f"{duration.total_seconds():.1f}s" if duration is not None else "-"

    @admin.action(description="Cancel selected runs (after their current batch)", permissions=["change"])
    def cancel_runs(self, request, queryset) -> None:
        cancelled = 0
        for run in queryset.filter(status__in=ACTIVE_STATUSES):
            engine.cancel(run, by=request.user.get_username())
            cancelled += 1
        self.message_user(request, f"{cancelled} run(s) cancelled.", messages.SUCCESS)

    @admin.action(description="Resume selected runs from their cursor", permissions=["change"])
    def resume_runs(self, request, queryset) -> None:
        resumed = 0
        for run in queryset.exclude(status=RunStatus.SUCCEEDED):
            try:
                engine.resume(run)
                resumed += 1
            except engine.RunConflict as conflict:
                self.message_user(
                    request,
                    format_html("Run #{} not resumed: run #{} does the same work.", run.pk, conflict.run.pk),
                    messages.WARNING,
                )
            except (ValueError, ValidationError) as exc:
                self.message_user(request, f"Run #{run.pk} not resumed: {exc}", messages.WARNING)
        self.message_user(request, f"{resumed} run(s) resumed.", messages.SUCCESS)


@admin.register(InstalledScheduleEntry)
class InstalledScheduleEntryAdmin(admin.ModelAdmin):
    list_display = ("name", "task", "installed_at")
    readonly_fields = ("name", "task", "installed_at")

    def has_add_permission(self, request) -> bool:
        return False
