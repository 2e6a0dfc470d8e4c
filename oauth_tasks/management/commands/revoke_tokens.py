"""``manage.py revoke_tokens``: revoke every token of an application, a user, both, or a scope.

By default the revocation is dispatched to the maintenance worker (the same ``revoke`` job as the
API and the admin): the watermark is written before the command returns, so the tokens are refused
at once, and the command prints the run id to watch. ``--sync`` runs the same batches in this
process instead, for a machine without a worker.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from oauth_provider import revocation
from oauth_provider.cleanup import validate_batch_size
from oauth_tasks import engine
from oauth_tasks.jobs import get_job
from oauth_tasks.jobs.revocation import target_from_params


def _error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = (
        "Revoke every token of an application (--application), a user (--user), a user in one "
        "application (both), or carrying a scope (--scope). Dispatched to the maintenance worker "
        "unless --sync."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--application", help="Application id or client_id.")
        parser.add_argument("--user", help="User id or username.")
        parser.add_argument("--scope", help="One scope name: revoke every token carrying it.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be revoked; change nothing."
        )
        parser.add_argument(
            "--sync", action="store_true", help="Run the batches in this process instead of on a worker."
        )
        parser.add_argument("--batch-size", type=int, default=None, help="Rows per batch (1 to 100000).")
        parser.add_argument(
            "--interval", type=float, default=None, help="Seconds between batches on the worker."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        params = {
            name: options[name] for name in ("application", "user", "scope") if options[name] is not None
        }
        job = get_job("revoke")
        try:
            cleaned = job.validate_params(params)
        except ValidationError as exc:
            raise CommandError(_error_text(exc)) from None
        target = target_from_params(cleaned)
        if options["sync"]:
            self._run_sync(target, cleaned, options)
            return
        try:
            run, created = engine.dispatch(
                "revoke",
                cleaned,
                trigger="command",
                dry_run=options["dry_run"],
                batch_size=options["batch_size"],
                interval=options["interval"],
                triggered_by="manage.py revoke_tokens",
            )
        except ValidationError as exc:
            raise CommandError(_error_text(exc)) from None
        except engine.BrokerUnavailable as exc:
            raise CommandError(f"{exc} (or run it here with --sync)") from None
        what = "dry run" if run.dry_run else "revocation"
        if created:
            if not run.dry_run:
                self.stdout.write(f"Revoked {target.describe()}: refused from now on.")
            self.stdout.write(f"Dispatched {what} run #{run.pk} to the maintenance worker.")
        else:
            self.stdout.write(f"A {what} of {target.describe()} is already {run.status}: run #{run.pk}.")
        self.stdout.write(
            f"Follow it in the admin (Maintenance runs) or with GET /maintenance/api/runs/{run.pk}/"
        )

    def _run_sync(self, target: revocation.RevocationTarget, cleaned: dict, options: dict) -> None:
        batch_size = options["batch_size"]
        if batch_size is None:
            batch_size = get_job("revoke").default_batch_size()
        try:
            batch_size = validate_batch_size(batch_size)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        # The provider's in-process loop: the watermark (unless a dry run), then the same batches.
        counts = revocation.revoke_all(
            target, batch_size=batch_size, reason="manage.py revoke_tokens --sync", dry_run=options["dry_run"]
        )
        verb = "Would revoke" if options["dry_run"] else "Revoked"
        self.stdout.write(f"{verb} {target.describe()}:")
        for phase, count in counts.items():
            self.stdout.write(f"  {phase}: {count}")
