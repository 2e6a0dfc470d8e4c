"""The cleanup job: the provider's batch functions, run by the engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oauth_provider import cleanup

from .base import BatchOutcome, Job
from .registry import register_job


@register_job
class CleanupJob(Job):
    """Delete expired and revoked tokens, ID tokens and grants (django-oauth-toolkit's rules)."""

    name = "cleanup"
    label = "Token cleanup"
    description = (
        "Delete revoked, orphaned and expired refresh tokens, expired access tokens, ID tokens "
        "and grants, judged against the run's frozen cutoff."
    )
    params_schema = {"type": "object", "properties": {}, "additionalProperties": False}

    def default_batch_size(self) -> int:
        return cleanup.default_batch_size()

    def default_interval(self) -> float:
        return cleanup.default_interval()

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        return cleanup.PHASES

    def run_batch(self, run, phase: str, cursor: Any) -> BatchOutcome:
        plan = cleanup.CleanupPlan.from_settings(run.cutoff)
        result = cleanup.BATCH_FUNCTIONS[phase](
            now=plan, batch_size=run.batch_size, cursor=cursor, dry_run=run.dry_run
        )
        detail: dict[str, Any] = {}
        if result.unlinked:
            detail["unlinked"] = result.unlinked
        if result.orm_fallback:
            detail["orm_fallback"] = True
        return BatchOutcome(
            processed=result.deleted,
            cursor=result.cursor,
            phase_done=result.done,
            detail=detail,
            other_counts=result.also_deleted,
        )
