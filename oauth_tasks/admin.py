"""Admin for maintenance runs: watch progress, cancel, resume.

Runs are created by dispatch (beat, views, commands), never typed in by hand: the admin shows them
read-only and acts on them only through the engine, so its actions follow the same rules as the API.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from oauth_provider.data_migrations import SCOPE_PHASES, scope_phase_model
from oauth_provider.models import get_application_model
from oauth_provider.revocation import phase_model as revocation_phase_model
from oauth_provider.revocation import scope_word_q, validate_scope_name

from . import engine
from .dashboard import dashboard_context, poll_document
from .jobs import get_job
from .jobs.revocation import affected_counts
from .models import ACTIVE_STATUSES, InstalledScheduleEntry, MaintenanceDashboard, MaintenanceRun, RunStatus
from .progress import run_progress


@admin.register(MaintenanceRun)
class MaintenanceRunAdmin(admin.ModelAdmin):
    # Narrow columns that fit a 1280 px screen; per-phase counts are on the run's own page.
    list_display = (
        "id",
        "kind_display",
        "status_display",
        "phase",
        "progress_display",
        "duration_display",
        "trigger",
        "created_at",
    )
    list_filter = ("status", "kind", "dry_run", "trigger")
    search_fields = ("=id", "kind", "triggered_by", "celery_task_id")
    date_hierarchy = "created_at"
    actions = ("cancel_runs", "resume_runs")
    readonly_fields = (
        ["progress_display", "eta_display", "pacing_display"]
        + [f.name for f in MaintenanceRun._meta.fields]
        + [
            "status_display",
            "duration_display",
            "counts_display",
        ]
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Visible to staff with view rights; the actions below need change rights.
        return super().has_change_permission(request, obj) and obj is None

    @admin.display(description="status", ordering="status")
    def status_display(self, run: MaintenanceRun) -> str:
        """The status, or "stalled (running)" when the run's next batch is overdue."""
        if run.is_stalled:
            return format_html(
                '<strong style="color: var(--error-fg, #ba2121)">stalled</strong> ({}, next batch {} late)',
                run.status,
                timesince(run.next_batch_at),
            )
        return run.status

    @admin.display(description="job", ordering="kind")
    def kind_display(self, run: MaintenanceRun) -> str:
        return f"{run.kind} (dry run)" if run.dry_run else run.kind

    @admin.display(description="progress")
    def progress_display(self, run: MaintenanceRun) -> str:
        """ "N of about M rows (x %)" against the estimate made at dispatch, and the batch number."""
        return f"{run_progress(run).summary}, batch {run.batch_number}"

    @admin.display(description="rate and ETA")
    def eta_display(self, run: MaintenanceRun) -> str:
        progress = run_progress(run)
        if progress.rows_per_second is None:
            return "-"
        eta = f", about {progress.eta_text} left" if progress.eta_seconds is not None else ""
        return f"{progress.rows_per_second:,} rows/s{eta}"

    @admin.display(description="counts")
    def counts_display(self, run: MaintenanceRun) -> str:
        counts = run.total_counts
        if not counts:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}: {}", sorted(counts.items()))

    @admin.display(description="pace")
    def pacing_display(self, run: MaintenanceRun) -> str:
        """ "fixed", or the paced batch size, the pause and why the run slowed (replica lag, ...)."""
        return run.pacing_summary

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
            except (ValueError, ValidationError, engine.BrokerUnavailable) as exc:
                self.message_user(request, f"Run #{run.pk} not resumed: {exc}", messages.WARNING)
        self.message_user(request, f"{resumed} run(s) resumed.", messages.SUCCESS)


@admin.register(InstalledScheduleEntry)
class InstalledScheduleEntryAdmin(admin.ModelAdmin):
    list_display = ("name", "task", "installed_at")
    readonly_fields = ("name", "task", "installed_at")

    def has_add_permission(self, request) -> bool:
        return False


# ------------------------------------------------------------------------------------------------
# Revocation and scope renames from the admin: "Revoke all tokens" on the provider's applications
# and on users, "Rename scope" on the runs. Each shows what it would change (one COUNT per table)
# on a confirmation page, then dispatches a run through the engine, like the API and the command.
# oauth_provider knows nothing of this app: the actions are added here, to whatever admin classes
# are registered for the application and user models (a project's own subclasses included).


#: Starting a run from the admin needs the same permission as starting one from the API.
START_PERMISSION = "oauth_tasks.add_maintenancerun"
#: One revocation run per selected row; more rows than this in one action is refused.
MAX_REVOCATION_TARGETS = 100


def run_link(run: MaintenanceRun):
    url = reverse("admin:oauth_tasks_maintenancerun_change", args=[run.pk])
    return format_html('<a href="{}">run #{}</a>', url, run.pk)


def dispatch_message(admin_site_model, request, run: MaintenanceRun, created: bool, what: str) -> None:
    """Tell the user which run does the work, with a link to its admin page."""
    if created:
        admin_site_model.message_user(
            request, format_html("{}: {} started.", what, run_link(run)), messages.SUCCESS
        )
    else:
        admin_site_model.message_user(
            request,
            format_html("{}: {} doing the same work is already {}.", what, run_link(run), run.status),
            messages.WARNING,
        )


class RevokeTokensActionMixin:
    """Adds "Revoke all tokens" to a model admin whose rows are revocation targets.

    ``revoke_param`` is the ``revoke`` job's parameter the row's primary key goes into.
    """

    revoke_param: str = ""

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm(START_PERMISSION)

    @admin.action(description="Revoke all tokens", permissions=["revoke"])
    def revoke_all_tokens(self, request, queryset):
        targets = list(queryset.order_by("pk")[: MAX_REVOCATION_TARGETS + 1])
        if len(targets) > MAX_REVOCATION_TARGETS:
            self.message_user(
                request,
                f"Select at most {MAX_REVOCATION_TARGETS} rows: each one is a revocation run of its own.",
                messages.ERROR,
            )
            return None
        if request.POST.get("confirm") == "yes":
            for target in targets:
                try:
                    run, created = engine.dispatch(
                        "revoke",
                        {self.revoke_param: target.pk},
                        trigger="admin",
                        triggered_by=request.user.get_username(),
                    )
                except engine.BrokerUnavailable as exc:
                    self.message_user(request, f"Revocation of {target} not started: {exc}", messages.ERROR)
                    continue
                dispatch_message(self, request, run, created, f"Revocation of all tokens of {target}")
            return None
        rows = []
        for target in targets:
            counts = affected_counts({self.revoke_param: target.pk})
            rows.append({"object": target, "counts": counts, "total": sum(counts.values())})
        context = {
            **self.admin_site.each_context(request),
            "title": "Revoke all tokens?",
            "opts": self.model._meta,
            "rows": rows,
            # Column headings in words ("Refresh tokens"), not the phase names of the API.
            "phases": [revocation_phase_model(p)._meta.verbose_name_plural for p in rows[0]["counts"]]
            if rows
            else [],
            "grand_total": sum(row["total"] for row in rows),
            "action": "revoke_all_tokens",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "target_label": self.model._meta.verbose_name,
        }
        return TemplateResponse(request, "admin/oauth_tasks/confirm_revocation.html", context)


def _add_revoke_action(model, param: str) -> None:
    """Re-register ``model`` with its current admin class plus the revocation action."""
    current = admin.site._registry.get(model)
    if current is None:
        return
    base = type(current)
    actions = tuple(base.actions or ()) + ("revoke_all_tokens",)
    extended = type(
        f"Revocable{base.__name__}",
        (RevokeTokensActionMixin, base),
        {"revoke_param": param, "actions": actions, "__module__": __name__},
    )
    admin.site.unregister(model)
    admin.site.register(model, extended)


_add_revoke_action(get_application_model(), "application")
_add_revoke_action(get_user_model(), "user")


class RenameScopeForm(forms.Form):
    old = forms.CharField(label="Scope to rename", max_length=255)
    new = forms.CharField(
        label="New scope name",
        max_length=1000,
        help_text="Several names separated by spaces split the scope into them. Each must be a "
        "configured scope.",
    )
    allow_privileged = forms.BooleanField(
        label="Grant privileged scopes",
        required=False,
        help_text="Needed when a new name is a privileged scope (every token carrying the old name "
        "gets it), and so is the permission “Can start scope migrations that grant privileged scopes”.",
    )

    def __init__(self, *args, user=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_old(self) -> str:
        try:
            return validate_scope_name(self.cleaned_data["old"].strip(), "scope to rename")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_new(self) -> list[str]:
        names = self.cleaned_data["new"].split()
        try:
            return [validate_scope_name(name, "new scope name") for name in names]
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        old, new = cleaned.get("old"), cleaned.get("new")
        if not (old and new):
            return cleaned
        job = get_job("migrate_scope")
        params = {"mapping": {old: new}, "allow_privileged": cleaned.get("allow_privileged", False)}
        try:
            cleaned["params"] = job.validate_params(params)
        except ValidationError as exc:
            self.add_error("new", "; ".join(m for ms in exc.message_dict.values() for m in ms))
            return cleaned
        cleaned["mapping"] = cleaned["params"]["mapping"]
        for permission in job.required_permissions(cleaned["params"]):
            if self.user is not None and not self.user.has_perm(permission):
                self.add_error("allow_privileged", f"You lack the permission {permission}.")
        return cleaned


class RenameScopeAdminMixin:
    """A "Rename scope" page on the runs admin: a form, a confirmation with counts, a run."""

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path(
                "rename-scope/",
                self.admin_site.admin_view(self.rename_scope_view),
                name="{}_{}_rename_scope".format(*info),
            ),
            *super().get_urls(),
        ]

    def rename_scope_view(self, request):
        if not request.user.has_perm(START_PERMISSION):
            raise PermissionDenied
        form = RenameScopeForm(request.POST or None, user=request.user)
        counts = None
        if request.method == "POST" and form.is_valid():
            mapping = form.cleaned_data["mapping"]
            if request.POST.get("confirm") == "yes":
                try:
                    run, created = engine.dispatch(
                        "migrate_scope",
                        form.cleaned_data["params"],
                        trigger="admin",
                        triggered_by=request.user.get_username(),
                        user=request.user,
                    )
                except engine.BrokerUnavailable as exc:
                    self.message_user(request, f"Rename not started: {exc}", messages.ERROR)
                    return HttpResponseRedirect(request.get_full_path())
                dispatch_message(self, request, run, created, "Rename of scope " + ", ".join(mapping))
                return HttpResponseRedirect(reverse("admin:oauth_tasks_maintenancerun_change", args=[run.pk]))
            old = form.cleaned_data["old"]
            counts = {
                phase: scope_phase_model(phase)._base_manager.filter(scope_word_q(old)).count()
                for phase in SCOPE_PHASES
            }
        context = {
            **self.admin_site.each_context(request),
            "title": "Rename scope",
            "opts": self.model._meta,
            "form": form,
            "counts": counts,
            "total": sum(counts.values()) if counts is not None else None,
        }
        return TemplateResponse(request, "admin/oauth_tasks/rename_scope.html", context)


_runs_admin = type(admin.site._registry[MaintenanceRun])
admin.site.unregister(MaintenanceRun)
admin.site.register(
    MaintenanceRun,
    type(
        f"ScopeRenaming{_runs_admin.__name__}", (RenameScopeAdminMixin, _runs_admin), {"__module__": __name__}
    ),
)


# ------------------------------------------------------------------------------------------------
# The dashboard: an entry of its own in the maintenance section (a proxy model with no table),
# whose list page is the dashboard. Seeing it needs the runs' view permission; its buttons need
# the same permissions as the API (start: add, cancel and resume: change).

VIEW_PERMISSION = "oauth_tasks.view_maintenancerun"
CHANGE_PERMISSION = "oauth_tasks.change_maintenancerun"


@admin.register(MaintenanceDashboard)
class MaintenanceDashboardAdmin(admin.ModelAdmin):
    def has_module_permission(self, request) -> bool:
        return request.user.has_perm(VIEW_PERMISSION)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(VIEW_PERMISSION)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("", view(self.changelist_view), name="oauth_tasks_maintenancedashboard_changelist"),
            path("poll/", view(self.poll_view), name="oauth_tasks_dashboard_poll"),
            path("cleanup/", view(self.cleanup_view), name="oauth_tasks_dashboard_cleanup"),
            path(
                "runs/<int:run_id>/<str:action>/",
                view(self.run_action_view),
                name="oauth_tasks_dashboard_run",
            ),
        ]

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **dashboard_context(),
            "title": "Maintenance dashboard",
            "opts": self.model._meta,
            "can_start": request.user.has_perm(START_PERMISSION),
            "can_change": request.user.has_perm(CHANGE_PERMISSION),
        }
        return TemplateResponse(request, "admin/oauth_tasks/dashboard.html", context)

    def poll_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(poll_document())

    def cleanup_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(START_PERMISSION):
            raise PermissionDenied
        dry_run = request.POST.get("dry_run") == "on"
        try:
            run, created = engine.dispatch(
                "cleanup", {}, trigger="admin", dry_run=dry_run, triggered_by=request.user.get_username()
            )
        except engine.BrokerUnavailable as exc:
            self.message_user(request, f"Cleanup not started: {exc}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:oauth_tasks_maintenancedashboard_changelist"))
        dispatch_message(self, request, run, created, "Dry run of the cleanup" if dry_run else "Cleanup")
        return HttpResponseRedirect(reverse("admin:oauth_tasks_maintenancedashboard_changelist"))

    def run_action_view(self, request, run_id: int, action: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in {"cancel", "resume"}:
            raise Http404(f"no action {action!r}")
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied
        run = get_object_or_404(MaintenanceRun, pk=run_id)
        try:
            if action == "cancel":
                engine.cancel(run, by=request.user.get_username())
            else:
                engine.resume(run)
        except engine.RunConflict as conflict:
            self.message_user(
                request,
                format_html("Run #{} not resumed: {} does the same work.", run.pk, run_link(conflict.run)),
                messages.WARNING,
            )
        except (ValueError, ValidationError, engine.BrokerUnavailable) as exc:
            self.message_user(request, f"Run #{run.pk} not {action}ed: {exc}", messages.WARNING)
        else:
            verb = "cancelled (after its current batch)" if action == "cancel" else "resumed"
            self.message_user(request, format_html("{} {}.", run_link(run), verb), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:oauth_tasks_maintenancedashboard_changelist"))
