"""``manage.py adopt_dot``: copy a django-oauth-toolkit 3.x installation's rows into this provider.

    manage.py adopt_dot --dry-run --sync     # counts and problems, nothing written
    manage.py adopt_dot --sync               # the adoption, in this process, with progress
    manage.py adopt_dot                      # the same, dispatched to the maintenance worker
    manage.py adopt_dot --sync --resume 42   # continue run 42 from its cursor

Run it again after a successful adoption to copy what DOT wrote since (a catch-up).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from oauth_tasks import engine
from oauth_tasks.jobs.adoption import AdoptDotJob
from oauth_tasks.management.commands.revoke_tokens import _error_text
from oauth_tasks.models import MaintenanceRun, RunStatus


class Command(BaseCommand):
    help = (
        "Copy django-oauth-toolkit's applications, grants and tokens (oauth2_provider_* tables) into this "
        "provider, keeping ids and token strings. Dispatched to the maintenance worker unless --sync."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be copied and list problems."
        )
        parser.add_argument(
            "--sync", action="store_true", help="Run the batches in this process, with progress."
        )
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="Continue a stopped adoption run.")
        parser.add_argument("--source-prefix", help="Table prefix of DOT's tables (default oauth2_provider).")
        parser.add_argument(
            "--keep-dead", action="store_true", help="Copy expired and revoked rows too (skipped by default)."
        )
        parser.add_argument("--headroom", type=int, help="Ids left free above DOT's (default 1000000).")
        parser.add_argument(
            "--sample", type=int, help="Rows per table the verification compares (default 100)."
        )
        parser.add_argument("--batch-size", type=int, help="Source ids per batch (default 5000).")
        parser.add_argument("--interval", type=float, help="Seconds between batches on the worker.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["resume"] is not None:
            run = self._resume(options["resume"], enqueue=not options["sync"])
        else:
            run = self._dispatch(options)
        if not options["sync"]:
            self.stdout.write(f"Dispatched adoption run #{run.pk} to the maintenance worker.")
            self.stdout.write(
                f"Follow it in the admin (Maintenance runs) or with GET /maintenance/api/runs/{run.pk}/"
            )
            return
        self._run_here(run)

    def _dispatch(self, options: dict[str, Any]) -> MaintenanceRun:
        params: dict[str, Any] = {"skip_dead": not options["keep_dead"]}
        for name in ("source_prefix", "headroom", "sample"):
            if options[name] is not None:
                params[name] = options[name]
        try:
            run, created = engine.dispatch(
                AdoptDotJob.name,
                params,
                trigger="command",
                dry_run=options["dry_run"],
                batch_size=options["batch_size"],
                interval=options["interval"],
                triggered_by="manage.py adopt_dot",
                enqueue=not options["sync"],
            )
        except ValidationError as exc:
            raise CommandError(_error_text(exc)) from None
        if not created:
            raise CommandError(f"the same adoption is already {run.status}: run #{run.pk}")
        return run

    def _resume(self, run_id: int, *, enqueue: bool) -> MaintenanceRun:
        run = MaintenanceRun.objects.filter(pk=run_id, kind=AdoptDotJob.name).first()
        if run is None:
            raise CommandError(f"no adoption run #{run_id}")
        if run.status == RunStatus.SUCCEEDED:
            raise CommandError(
                f"run #{run_id} succeeded: nothing to resume (run adopt_dot again to catch up)"
            )
        if not enqueue:
            run.status = RunStatus.RUNNING if run.started_at else RunStatus.PENDING
            run.finished_at, run.cancel_requested, run.last_error = None, False, ""
            run.save(update_fields=["status", "finished_at", "cancel_requested", "last_error"])
            return run
        try:
            return engine.resume(run)
        except engine.RunConflict as exc:
            raise CommandError(str(exc)) from None

    def _run_here(self, run: MaintenanceRun) -> None:
        verb = "Dry run" if run.dry_run else "Adoption"
        self.stdout.write(f"{verb} run #{run.pk}, batches of {run.batch_size} ids:")
        started, number = time.monotonic(), run.batch_number
        while True:
            try:
                report = engine.run_batch(run.pk, number, chain=False)
            except Exception as exc:
                engine.mark_failed(run.pk, number, exc)
                raise CommandError(
                    f"run #{run.pk} failed: {exc} (resume it with --sync --resume {run.pk})"
                ) from None
            if report.outcome in ("stale", "missing", "cancelled"):
                raise CommandError(f"run #{run.pk} stopped: {report.outcome} ({report.status})")
            if report.outcome == "waiting":  # a paced run waits for its replicas to catch up
                self.stdout.write(f"  waiting: {report.pacing.get('reason')}")
                time.sleep(float(report.pacing.get("pause") or 1))
                continue
            total, seconds = report.counts.get(report.phase, 0), time.monotonic() - started
            self.stdout.write(f"  batch {report.batch_number}: {report.phase} {total} rows, {seconds:.1f}s")
            number = report.batch_number
            if report.outcome == "finished":
                break
        run.refresh_from_db()
        self._write_report(run, time.monotonic() - started)

    def _write_report(self, run: MaintenanceRun, seconds: float) -> None:
        result = run.result or {}
        action = "would copy" if run.dry_run else "copied"
        self.stdout.write(f"Run #{run.pk} {run.status} in {seconds:.1f}s.")
        if result.get("catch_up"):
            self.stdout.write(f"Catch-up after run #{result['catch_up']['after_run']}.")
        for phase, count in (run.counts or {}).items():
            self.stdout.write(f"  {phase}: {count} {action if not phase.startswith('verify') else 'checked'}")
        for problem in result.get("problems", []):
            self.stdout.write(
                f"  {problem['severity']}: {problem['count']} {problem['table']}: {problem['problem']} "
                f"(ids {problem['ids']})"
            )
        for table, counts in result.get("verify", {}).items():
            self.stdout.write(
                f"  verify {table}: {counts['source']} in DOT, {counts['expected']} to adopt, "
                f"{counts['missing']} missing, {counts['extra']} extra"
            )
        for table, sample in result.get("sample", {}).items():
            self.stdout.write(
                f"  sample {table}: {sample['checked']} compared, {sample['mismatched']} differ, "
                f"{sample['newer_here']} changed here since"
            )
        if "verified" in result:
            self.stdout.write(
                "Verified." if result["verified"] else "Verification found differences (see above)."
            )
