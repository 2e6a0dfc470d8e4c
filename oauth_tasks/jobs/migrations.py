"""Bulk data migration jobs over the provider's tables: the batches of
``oauth_provider.data_migrations``, run by the engine.

Every batch selects the rows that still need the change, so a batch run twice (a redelivered
message after a rollback) changes nothing more, and a run resumes from its cursor. A dry run counts
what would change and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError

from oauth_provider import data_migrations
from oauth_provider.models import get_application_model
from oauth_provider.scopes import get_scopes_backend

from ..conf import maintenance_settings
from .base import BatchOutcome, Job
from .registry import register_job

#: At most this many applications are kept in a removal run's ``result`` listing.
APPLICATION_LIST_LIMIT = 1000
#: The permission a scope migration that grants a privileged scope needs, beyond starting runs.
PRIVILEGED_PERMISSION = "oauth_tasks.grant_privileged_scopes"


def _outcome(result) -> BatchOutcome:
    return BatchOutcome(processed=result.deleted, cursor=result.cursor, phase_done=result.done)


@register_job
class MigrateScopeJob(Job):
    """Rename, split or merge scopes across access tokens, ID tokens and grants (whole words only)."""

    name = "migrate_scope"
    label = "Rename scope"
    description = (
        'Rewrite scope words in access tokens, ID tokens and grants: {"read": "profile:read"} '
        'renames, {"rw": ["read", "write"]} splits, several old names to one new name merge. '
        "Whole words only: renaming read leaves read:admin alone."
    )
    params_schema = {
        "type": "object",
        "properties": {
            "mapping": {
                "type": "object",
                "description": (
                    "Old scope name to a new scope name, or to a list of new scope names. "
                    "New names must be configured scopes (SCOPES)."
                ),
            },
            "allow_privileged": {
                "type": "boolean",
                "description": (
                    "Allow new names that are privileged scopes (PRIVILEGED_SCOPES: every token "
                    f"carrying the old name gets them). Needs the permission {PRIVILEGED_PERMISSION}."
                ),
            },
        },
        "required": ["mapping"],
        "additionalProperties": False,
    }

    def clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            mapping = data_migrations.validate_scope_mapping(params["mapping"])
        except ValueError as exc:
            raise ValidationError({"mapping": str(exc)}) from None
        configured = set(get_scopes_backend().get_all_scopes())
        privileged = set(maintenance_settings.PRIVILEGED_SCOPES)
        allow_privileged = params.get("allow_privileged") is True
        for old, news in mapping.items():
            for new in news:
                if new not in configured:
                    raise ValidationError(
                        {
                            "mapping": f"mapping.{old}: {new!r} is not a configured scope "
                            f"(configured: {', '.join(sorted(configured))})"
                        }
                    )
                if new in privileged and not allow_privileged:
                    raise ValidationError(
                        {
                            "mapping": f"mapping.{old}: {new!r} is a privileged scope: every token "
                            f"carrying {old!r} would get it; set allow_privileged (permission "
                            f"{PRIVILEGED_PERMISSION}) to do that"
                        }
                    )
        cleaned: dict[str, Any] = {"mapping": mapping}
        if allow_privileged:
            cleaned["allow_privileged"] = True
        return cleaned

    def required_permissions(self, params: dict[str, Any]) -> list[str]:
        return [PRIVILEGED_PERMISSION] if params.get("allow_privileged") else []

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        return data_migrations.SCOPE_PHASES

    def run_batch(self, run, phase: str, cursor: Any) -> BatchOutcome:
        return _outcome(
            data_migrations.rewrite_scopes_batch(
                phase, run.params["mapping"], batch_size=run.batch_size, cursor=cursor, dry_run=run.dry_run
            )
        )


@register_job
class HashClientSecretsJob(Job):
    """Hash legacy plaintext client secrets; secrets already hashed are left untouched."""

    name = "hash_client_secrets"
    label = "Hash client secrets"
    description = (
        "Hash the client secrets still stored in plaintext by applications that should hold a hash. "
        "Each hash costs the password hasher's work factor, hence the small default batch."
    )
    params_schema = {"type": "object", "properties": {}, "additionalProperties": False}
    # PBKDF2 with Django's default work factor takes a fraction of a second per secret: a batch of
    # 50 stays well within a batch task's time limit, and 500 is the most that still does.
    max_batch_size = 500

    def default_batch_size(self) -> int:
        return 50

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        return ["client_secrets"]

    def run_batch(self, run, phase: str, cursor: Any) -> BatchOutcome:
        return _outcome(
            data_migrations.hash_client_secrets_batch(
                batch_size=run.batch_size, cursor=cursor, dry_run=run.dry_run
            )
        )


@register_job
class RemoveInactiveApplicationsJob(Job):
    """Delete applications with no token or grant created in N days and no live token."""

    name = "remove_inactive_applications"
    label = "Remove inactive applications"
    description = (
        "Delete applications older than N days with no token or grant created in that time and no "
        "live token, with their dead tokens. The run's result lists the applications (a dry run "
        "lists what a real run would delete)."
    )
    params_schema = {
        "type": "object",
        "properties": {
            "days": {
                "type": "integer",
                "minimum": 1,
                "maximum": 36500,
                "description": "Inactive for at least this many days.",
            },
        },
        "required": ["days"],
        "additionalProperties": False,
    }

    def default_batch_size(self) -> int:
        return 200

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        return ["applications"]

    def run_batch(self, run, phase: str, cursor: Any) -> BatchOutcome:
        days, now = run.params["days"], run.cutoff
        # The batch's applications, listed before the batch deletes them, in the same transaction
        # (the engine's), so the listing and the deletion commit or roll back together.
        rows = get_application_model()._base_manager.filter(
            data_migrations.inactive_applications_q(days, now)
        )
        if cursor is not None:
            rows = rows.filter(pk__gt=cursor)
        listed = list(rows.order_by("pk").values("pk", "client_id", "name", "created")[: run.batch_size])
        result = data_migrations.remove_inactive_applications_batch(
            days, now=now, batch_size=run.batch_size, cursor=cursor, dry_run=run.dry_run
        )
        self._record(run, listed)
        return _outcome(result)

    @staticmethod
    def _record(run, listed: list[dict[str, Any]]) -> None:
        """Append the batch's applications to ``run.result`` (saved by the engine with the batch)."""
        state = dict(run.result or {})
        applications = list(state.get("applications", []))
        room = max(0, APPLICATION_LIST_LIMIT - len(applications))
        applications.extend(
            {
                "id": row["pk"],
                "client_id": row["client_id"],
                "name": row["name"],
                "created": row["created"].isoformat(),
            }
            for row in listed[:room]
        )
        total = int(state.get("total", 0)) + len(listed)
        run.result = {
            "action": "would delete" if run.dry_run else "deleted",
            "applications": applications,
            "total": total,
            "truncated": total > len(applications),
        }
