"""The cleanup job: the provider's batch functions, run by the engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from oauth_provider import cleanup

from ..conf import maintenance_settings
from ..counting import bounded_count
from .base import BatchOutcome, Job
from .registry import register_job

#: Key types a phase can be split into lanes by (ranges of integers).
INTEGER_KEYS = ("AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField")


@register_job
class CleanupJob(Job):
    """Delete expired and revoked tokens, ID tokens and grants (django-oauth-toolkit's rules)."""

    name = "cleanup"
    label = "Token cleanup"
    description = (
        "Delete revoked, orphaned and expired refresh tokens, expired access tokens, ID tokens "
        "and grants, judged against the run's frozen cutoff."
    )
    params_schema = {
        "type": "object",
        "properties": {
            "limit": {"type": "integer", "minimum": 1, "description": "Stop after about this many rows."},
            "only": {
                "type": "array",
                "items": {"type": "string", "enum": list(cleanup.PHASE_GROUPS)},
                "minItems": 1,
                "description": "Clean only these groups (all by default).",
            },
            "keep_if_younger": {
                "type": "string",
                "description": "Keep rows created less than this long ago: seconds, or 90m, 12h, 30d.",
            },
        },
        "additionalProperties": False,
    }
    #: The provider's validators, shared with ``cleartokens``: the same input gets the same error.
    validators = {
        "limit": cleanup.validate_limit,
        "only": cleanup.validate_only,
        "keep_if_younger": cleanup.validate_duration,
    }

    def validate_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """``limit``, ``only`` ("tokens,grants" or a list) and ``keep_if_younger`` (seconds or "30d")."""
        if params is not None and not isinstance(params, dict):
            return super().validate_params(params)  # the engine's own error for a non-object
        cleaned = {}
        for name, value in (params or {}).items():
            if name not in self.validators:
                return super().validate_params(params)  # names the unknown parameter
            if value is None:
                continue
            try:
                cleaned[name] = self.validators[name](value, name)
            except ValueError as exc:
                raise ValidationError({name: str(exc)}) from None
        return cleaned

    def default_batch_size(self) -> int:
        return cleanup.default_batch_size()

    def default_interval(self) -> float:
        return cleanup.default_interval()

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        return cleanup.selected_phases(params.get("only"))

    def plan(self, params: dict[str, Any], cutoff: datetime) -> cleanup.CleanupPlan:
        return cleanup.CleanupPlan.from_settings(cutoff, keep_if_younger=params.get("keep_if_younger"))

    def estimate(self, params: dict[str, Any], cutoff: datetime) -> dict[str, int | None]:
        """What a dry run would count per phase: exact where counting is quick, else PostgreSQL's
        planner estimate, or None (unknown) on MySQL and MariaDB (``oauth_tasks.counting``)."""
        plan = self.plan(params, cutoff)
        exact_up_to = int(maintenance_settings.HEALTH_EXACT_COUNT_LIMIT)
        seconds = float(maintenance_settings.HEALTH_EXACT_COUNT_SECONDS)
        counts = cleanup.phase_counts(
            plan,
            tuple(self.phases(params)),
            count=lambda rows: bounded_count(rows, exact_up_to, seconds)[0],
        )
        if params.get("limit") is not None:
            # The run stops at the limit: so does its estimate, phase after phase.
            left = params["limit"]
            for phase, count in counts.items():
                if count is None:
                    continue
                counts[phase] = min(count, left)
                left -= counts[phase]
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

    def lanes_refused(self, params: dict[str, Any]) -> str:
        if params.get("limit") is not None:
            return "lanes cannot be combined with limit (a limit is counted along one chain)"
        return ""

    def lane_key_range(self, run, phase: str) -> tuple[int, int] | None:
        """The phase's table's smallest and largest primary key (two index lookups); None when
        the table is empty or its key is not an integer."""
        from django.db.models import Max, Min

        model = cleanup.phase_model(phase)
        if model._meta.pk.get_internal_type() not in INTEGER_KEYS:
            return None
        bounds = model._base_manager.aggregate(lo=Min("pk"), hi=Max("pk"))
        if bounds["lo"] is None:
            return None
        return int(bounds["lo"]), int(bounds["hi"])

    def run_lane_batch(self, run, phase: str, cursor: Any, upper: int | None) -> BatchOutcome:
        return self.run_batch(run, phase, cursor, upper=upper)

    def run_batch(self, run, phase: str, cursor: Any, upper: int | None = None) -> BatchOutcome:
        batch_size = run.batch_size
        limit = run.params.get("limit")
        if limit is not None:
            left = limit - run.total_processed
            if left <= 0:  # the limit is reached: every phase left ends at once, and the run with them
                return BatchOutcome(processed=0, cursor=cursor, phase_done=True)
            batch_size = min(batch_size, left)
        result = cleanup.BATCH_FUNCTIONS[phase](
            now=self.plan(run.params, run.cutoff),
            batch_size=batch_size,
            cursor=cursor,
            dry_run=run.dry_run,
            upper=upper,
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
