"""``cleartokens``: delete expired and revoked tokens, ID tokens and grants.

django-oauth-toolkit's command, with its rules, in batches: synchronous by default (a progress bar
on a terminal, a count per category at the end, printed once on standard output), ``--dry-run`` to
count only (here, in this process), and ``--async`` to hand the work to the maintenance worker and
return at once with the run's id and where to watch it. ``--limit``, ``--only`` and
``--keep-if-younger`` are the options of Hydra's janitor, checked by the same validators as the
cleanup job's parameters on the API and in beat's kwargs. ``-v 0`` prints nothing but errors;
``-v 2`` adds the cleanup's own log lines.
"""

from __future__ import annotations

import getpass
import logging
import sys
from contextlib import nullcontext
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from oauth_provider import cleanup
from oauth_provider.maintenance import DispatchUnavailable, NoAsyncDispatcher, get_async_dispatcher
from oauth_provider.models import refresh_token_expire_timedelta

from ..terminal import ProgressBar, bar_below_logs, logger_level


def _option(value: Any, validator, option: str):
    if value is None:
        return None
    try:
        return validator(value, option)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = (
        "Delete expired and revoked tokens, ID tokens and grants in batches, with "
        "django-oauth-toolkit's rules. Runs here unless --async hands it to the maintenance worker."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; change nothing."
        )
        parser.add_argument(
            "--batch-size",
            dest="batch_size",
            metavar="N",
            help=f"Rows per batch, {cleanup.MIN_BATCH_SIZE}-{cleanup.MAX_BATCH_SIZE} "
            "(default: CLEAR_EXPIRED_TOKENS_BATCH_SIZE).",
        )
        parser.add_argument(
            "--interval",
            metavar="SECONDS",
            help=f"Pause between batches, {cleanup.MIN_INTERVAL}-{cleanup.MAX_INTERVAL} seconds "
            "(default: CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL).",
        )
        parser.add_argument(
            "--limit", metavar="N", help="Stop after about N rows; a later run carries on from there."
        )
        parser.add_argument(
            "--only",
            metavar="GROUPS",
            help=f"Clean only these, comma-separated: {', '.join(cleanup.PHASE_GROUPS)} (default: all).",
        )
        parser.add_argument(
            "--keep-if-younger",
            dest="keep_if_younger",
            metavar="DURATION",
            help="Keep rows created less than DURATION ago (seconds, or 90m, 12h, 30d), on top of the rules.",
        )
        parser.add_argument(
            "--async",
            dest="run_async",
            action="store_true",
            help="Start a run on the maintenance worker and print its id instead of cleaning here.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            never_expire = refresh_token_expire_timedelta() is None
        except ImproperlyConfigured as exc:
            raise CommandError(f"settings: {exc}") from exc
        if never_expire and options["verbosity"] >= 1:
            # django-oauth-toolkit's warning: refresh tokens (and the access tokens they hold) stay.
            # Not with -v 0, which prints errors only (cron mails whatever a job prints).
            self.stderr.write(
                self.style.WARNING(
                    "REFRESH_TOKEN_EXPIRE_SECONDS is not set (or is 0), so refresh tokens never "
                    "age-expire. cleartokens will only remove revoked and orphaned refresh tokens; "
                    "expired access and ID tokens that are still bound to a refresh token are kept "
                    "as long as that refresh token lives. Set REFRESH_TOKEN_EXPIRE_SECONDS to enable "
                    "expiry-based cleanup."
                )
            )
        settings = {
            "batch_size": _option(options.get("batch_size"), cleanup.validate_batch_size, "--batch-size"),
            "interval": _option(options.get("interval"), cleanup.validate_interval, "--interval"),
        }
        params = {
            "limit": _option(options.get("limit"), cleanup.validate_limit, "--limit"),
            "only": _option(options.get("only"), cleanup.validate_only, "--only"),
            "keep_if_younger": _option(
                options.get("keep_if_younger"), cleanup.validate_duration, "--keep-if-younger"
            ),
        }
        params = {name: value for name, value in params.items() if value is not None}
        dry_run = bool(options.get("dry_run"))
        try:
            if options.get("run_async"):
                self._dispatch(params, dry_run=dry_run, **settings)
            else:
                self._run_here(params, dry_run=dry_run, verbosity=options["verbosity"], **settings)
        except ImproperlyConfigured as exc:
            raise CommandError(f"settings: {exc}") from exc

    def _dispatch(
        self, params: dict[str, Any], *, dry_run: bool, batch_size: int | None, interval: float | None
    ) -> None:
        try:
            dispatch = get_async_dispatcher()
        except NoAsyncDispatcher as exc:
            raise CommandError(f"--async: {exc}") from None
        try:
            run, created = dispatch(
                "cleanup",
                params,
                trigger="command",
                dry_run=dry_run,
                batch_size=batch_size,
                interval=interval,
                triggered_by=f"cleartokens ({getpass.getuser()})",
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        except DispatchUnavailable as exc:
            raise CommandError(f"--async: {exc}") from None
        if created:
            self.stdout.write(self.style.SUCCESS(f"Started cleanup run {run.pk}"))
        else:
            self.stdout.write(
                self.style.WARNING(f"A cleanup run is already active: run {run.pk} ({run.status})")
            )
        self.stdout.write(f"Watch it: {watch_locations(run.pk)}")
        self.stdout.write(str(run.pk))

    def _run_here(
        self,
        params: dict[str, Any],
        *,
        dry_run: bool,
        batch_size: int | None,
        interval: float | None,
        verbosity: int,
    ) -> None:
        now = timezone.now()
        phases = cleanup.selected_phases(params.get("only"))
        bar = None
        if verbosity >= 1 and sys.stderr.isatty():
            plan = cleanup.CleanupPlan.from_settings(now, keep_if_younger=params.get("keep_if_younger"))
            bar = ProgressBar(sys.stderr, cleanup.phase_counts(plan, phases), cleanup.PHASE_LABELS)

        def progress(result: cleanup.BatchResult, totals: dict[str, int]) -> None:
            if bar is not None:
                bar.update(result.phase, totals)

        # The counts are printed once, below; the cleanup's own log lines repeat them, so they are
        # shown only with -v 2 (and nothing but errors with -v 0).
        level = logging.ERROR if verbosity < 1 else (logging.WARNING if verbosity < 2 else logging.NOTSET)
        with logger_level("oauth_provider", level), bar_below_logs(bar) if bar else nullcontext():
            counts = cleanup.clear_expired(
                batch_size=batch_size,
                interval=interval,
                now=now,
                dry_run=dry_run,
                progress=progress,
                **params,
            )
        if verbosity < 1:
            return
        verb = "would be deleted" if dry_run else "deleted"
        for phase in phases:
            self.stdout.write(f"{cleanup.PHASE_LABELS[phase]} {verb}: {counts[phase]}")
        self.stdout.write(self.style.SUCCESS(f"Total {verb}: {sum(counts.values())}"))
        if "limit" in params and sum(counts.values()) >= params["limit"]:
            self.stdout.write(f"Stopped at --limit {params['limit']}: run the command again to go on.")


def watch_locations(run_id: int) -> str:
    """The admin page and API URL of run ``run_id``, as far as this project's URLconf has them."""
    from django.urls import NoReverseMatch, reverse

    places = []
    for name, label in (
        ("admin:oauth_tasks_maintenancerun_change", "admin"),
        ("oauth_tasks:api-run", "API"),
    ):
        try:
            places.append(f"{label} {reverse(name, args=[run_id])}")
        except NoReverseMatch:
            continue
    return ", ".join(places) or f"run {run_id} in the maintenance worker's admin"
