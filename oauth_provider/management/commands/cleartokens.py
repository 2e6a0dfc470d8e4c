"""``cleartokens``: delete expired and revoked tokens, ID tokens and grants.

django-oauth-toolkit's command, with its rules, in batches: synchronous by default (progress on a
terminal, a count per category at the end), ``--dry-run`` to count only, and ``--async`` to hand
the work to the maintenance worker and return at once with the run's id.
"""

from __future__ import annotations

import getpass
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError

from oauth_provider import cleanup
from oauth_provider.maintenance import NoAsyncDispatcher, get_async_dispatcher


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
            "--async",
            dest="run_async",
            action="store_true",
            help="Start a run on the maintenance worker and print its id instead of cleaning here.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = _option(options.get("batch_size"), cleanup.validate_batch_size, "--batch-size")
        interval = _option(options.get("interval"), cleanup.validate_interval, "--interval")
        dry_run = bool(options.get("dry_run"))
        try:
            if options.get("run_async"):
                self._dispatch(dry_run=dry_run, batch_size=batch_size, interval=interval)
            else:
                self._run_here(
                    dry_run=dry_run, batch_size=batch_size, interval=interval, verbosity=options["verbosity"]
                )
        except ImproperlyConfigured as exc:
            raise CommandError(f"settings: {exc}") from exc

    def _dispatch(self, *, dry_run: bool, batch_size: int | None, interval: float | None) -> None:
        try:
            dispatch = get_async_dispatcher()
        except NoAsyncDispatcher as exc:
            raise CommandError(f"--async: {exc}") from None
        try:
            run, created = dispatch(
                "cleanup",
                {},
                trigger="command",
                dry_run=dry_run,
                batch_size=batch_size,
                interval=interval,
                triggered_by=f"cleartokens ({getpass.getuser()})",
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if created:
            self.stdout.write(self.style.SUCCESS(f"Started cleanup run {run.pk}"))
        else:
            self.stdout.write(
                self.style.WARNING(f"A cleanup run is already active: run {run.pk} ({run.status})")
            )
        self.stdout.write(str(run.pk))

    def _run_here(
        self, *, dry_run: bool, batch_size: int | None, interval: float | None, verbosity: int
    ) -> None:
        tty = verbosity >= 1 and self.stdout.isatty()

        def progress(result: cleanup.BatchResult, totals: dict[str, int]) -> None:
            if tty:
                label = cleanup.PHASE_LABELS[result.phase]
                self.stdout.write(f"\r\033[K{label}: {totals[result.phase]}", ending="")
                self.stdout.flush()

        counts = cleanup.clear_expired(
            batch_size=batch_size, interval=interval, dry_run=dry_run, progress=progress
        )
        if tty:
            self.stdout.write("\r\033[K", ending="")
        if verbosity < 1:
            return
        verb = "would be deleted" if dry_run else "deleted"
        for phase in cleanup.PHASES:
            self.stdout.write(f"{cleanup.PHASE_LABELS[phase]} {verb}: {counts[phase]}")
        self.stdout.write(self.style.SUCCESS(f"Total {verb}: {sum(counts.values())}"))
