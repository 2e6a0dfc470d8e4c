"""The cleanup job: the provider's batch functions, run by the engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from oauth_provider import cleanup

from ..conf import maintenance_settings
from ..counting import bounded_count
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

    def estimate(self, params: dict[str, Any], cutoff: datetime) -> dict[str, int]:
        """What a dry run would count per phase (PostgreSQL: the planner's estimate on big tables)."""
        plan = cleanup.CleanupPlan.from_settings(cutoff)
        limit = int(maintenance_settings.HEALTH_EXACT_COUNT_LIMIT)
        counts = {}
        for phase in self.phases(params):
            if not cleanup.phase_is_active(phase, plan):
                counts[phase] = 0
                continue
            model = cleanup.phase_model(phase)
            rows = model._default_manager.filter(cleanup.phase_predicate(phase, plan, dry_run=True))
            counts[phase] = bounded_count(rows, limit)[0]
        return counts

    def on_dispatch(self, run) -> None:
        """Record today's token table sizes for the dashboard's charts (one row per day)."""
        if run.dry_run:
            return
        from ..health import token_counts
        from ..models import TokenTableSnapshot

        TokenTableSnapshot.objects.update_or_create(
            day=timezone.localdate(run.cutoff),
            defaults={"recorded_at": run.cutoff, "tables": token_counts(cached=False)},
        )

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
