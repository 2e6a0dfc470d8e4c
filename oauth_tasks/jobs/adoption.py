"""The ``adopt_dot`` job: copy a django-oauth-toolkit 3.x installation's rows into the provider.

The batches are those of ``oauth_provider.adoption``; this job orders them into phases and keeps
the run's report in ``run.result``: the catch-up state it started from, the problems found, the
verification counts and sample, and the sequences' next ids. Phases, in order:

* the five tables, by key window: applications, grants, ID tokens, access tokens, refresh tokens
  (on a catch-up, only the ids above the previous run's high-water mark: new tokens come first);
* ``relink``: each access token's ``source_refresh_token``, once the refresh tokens are in;
* ``prune_*``: adopted rows DOT deleted since the previous adoption (nothing on a first one);
* ``changed_*``: on a catch-up, the rows below the high-water mark that DOT updated since;
* ``sequences``: this provider's next ids past every adopted id, plus ``headroom``;
* ``verify_*`` and ``verify_sample``: counts per table and a sample compared column by column.

A dry run walks the same windows, counts what a real run would copy and lists the problems.
A run after a successful one is a catch-up: it copies ids above that run's high-water mark and
rows whose ``updated`` moved since that run started (less ``overlap_seconds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime

from oauth_provider import adoption

from .base import BatchOutcome, Job
from .registry import register_job

COPY_PHASES = list(adoption.TABLES)
PRUNE_PHASES = [f"prune_{table}" for table in adoption.PRUNED_TABLES]
CHANGED_PHASES = [f"changed_{table}" for table in adoption.TABLES]
VERIFY_PHASES = [f"verify_{table}" for table in adoption.TABLES]
PHASES = [
    *COPY_PHASES,
    "relink",
    *PRUNE_PHASES,
    *CHANGED_PHASES,
    "sequences",
    *VERIFY_PHASES,
    "verify_sample",
]

#: Problems kept per table and kind in the run's report (counts are always complete).
PROBLEM_EXAMPLES = 5


def previous_adoptions(prefix: str, exclude: int | None = None):
    """Earlier real (not dry) adoption runs from the same source tables, newest first."""
    from oauth_tasks.models import MaintenanceRun

    runs = MaintenanceRun.objects.filter(kind=AdoptDotJob.name, dry_run=False, params__source_prefix=prefix)
    if exclude is not None:
        runs = runs.exclude(pk=exclude)
    return runs.order_by("-created_at", "-pk")


def merge_problems(known: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged = {(p["table"], p["problem"]): dict(p) for p in known}
    for problem in found:
        key = (problem["table"], problem["problem"])
        if key in merged:
            entry = merged[key]
            entry["count"] += problem["count"]
            entry["ids"] = (entry["ids"] + problem["ids"])[:PROBLEM_EXAMPLES]
        else:
            merged[key] = dict(problem)
    return list(merged.values())


@register_job
class AdoptDotJob(Job):
    """Copy django-oauth-toolkit's applications, tokens and grants into this provider, ids and all."""

    name = "adopt_dot"
    label = "Adopt django-oauth-toolkit data"
    description = (
        "Copy applications, grants, access, refresh and ID tokens from django-oauth-toolkit 3.x tables "
        "(oauth2_provider_*) into this provider, keeping ids, token strings, hashed secrets and times, "
        "so every token keeps working. Run it again to copy what DOT wrote since."
    )
    params_schema = {
        "type": "object",
        "properties": {
            "source_prefix": {
                "type": "string",
                "default": adoption.DEFAULT_SOURCE_PREFIX,
                "pattern": r"[A-Za-z_][A-Za-z0-9_]{0,40}",
                "description": "Table name prefix of DOT's tables (its app label).",
            },
            "skip_dead": {
                "type": "boolean",
                "default": True,
                "description": "Skip rows the cleanup would delete at once (expired, revoked).",
            },
            "headroom": {
                "type": "integer",
                "default": 1_000_000,
                "minimum": 0,
                "maximum": 10**12,
                "description": "Ids left free above DOT's for the rows DOT writes until the switch.",
            },
            "sample": {
                "type": "integer",
                "default": 100,
                "minimum": 0,
                "maximum": 10_000,
                "description": "Rows per table the verification compares column by column.",
            },
            "overlap_seconds": {
                "type": "integer",
                "default": 300,
                "minimum": 0,
                "maximum": 86_400,
                "description": "A catch-up re-reads rows updated this long before the previous run.",
            },
        },
        "additionalProperties": False,
    }

    def default_batch_size(self) -> int:
        return 5000

    def clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
        missing = adoption.missing_source_tables(params["source_prefix"])
        if missing:
            names = ", ".join(missing)
            raise ValidationError(
                {"source_prefix": f"django-oauth-toolkit's tables are not in the database: {names}"}
            )
        return params

    def on_dispatch(self, run) -> None:
        """Record where this run starts from: the previous adoption (catch-up) and DOT's largest ids."""
        prefix = run.params["source_prefix"]
        ctx = adoption.Context(now=run.cutoff, prefix=prefix)
        earlier = previous_adoptions(prefix, exclude=run.pk)
        if not run.dry_run and not earlier.exists():
            held = {table: n for table, n in adoption.adopted_rows(ctx).items() if n}
            if held:
                rows = ", ".join(f"{n} {table.replace('_', ' ')}" for table, n in held.items())
                raise ValidationError(
                    {
                        "kind": f"this provider's tables already hold rows ({rows}): a first adoption "
                        "copies into empty tables, so that no id of DOT meets a row of this provider"
                    }
                )
        succeeded = earlier.filter(status="succeeded").first()
        catch_up = None
        if succeeded is not None and (succeeded.result or {}).get("high_water") is not None:
            since = succeeded.cutoff - timedelta(seconds=run.params["overlap_seconds"])
            catch_up = {
                "after_run": succeeded.pk,
                "since": since.isoformat(),
                **succeeded.result["high_water"],
            }
        run.result = {
            "catch_up": catch_up,
            "high_water": {table: adoption.source_bounds(ctx, table)[1] or 0 for table in adoption.TABLES},
            "problems": [],
        }
        run.save(update_fields=["result"])

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        return PHASES

    def context(self, run) -> adoption.Context:
        catch_up = (run.result or {}).get("catch_up") or {}
        return adoption.Context(
            now=run.cutoff,
            prefix=run.params["source_prefix"],
            skip_dead=run.params["skip_dead"],
            since=parse_datetime(catch_up["since"]) if catch_up else None,
            high_water={t: catch_up[t] for t in adoption.TABLES if t in catch_up},
        )

    def run_batch(self, run, phase: str, cursor: Any) -> BatchOutcome:
        ctx = self.context(run)
        result = dict(run.result or {})
        detail: dict[str, Any] = {}
        if phase in PRUNE_PHASES:
            table = phase.removeprefix("prune_")
            if not result.get("catch_up"):
                return BatchOutcome(processed=0, cursor=None, phase_done=True)
            window = adoption.prune_window(ctx, table, cursor, run.batch_size, dry_run=run.dry_run)
        elif phase in COPY_PHASES or phase in CHANGED_PHASES:
            table = phase.removeprefix("changed_")
            window = adoption.copy_window(
                ctx, table, cursor, run.batch_size, dry_run=run.dry_run, changed=phase != table
            )
            if window.problems:
                result["problems"] = merge_problems(result.get("problems", []), window.problems)
                detail["problems"] = sum(p["count"] for p in window.problems)
        elif phase == "relink":
            window = adoption.relink_window(ctx, cursor, run.batch_size, dry_run=run.dry_run)
        elif run.dry_run:
            return BatchOutcome(processed=0, cursor=None, phase_done=True)
        elif phase == "sequences":
            result["sequences"] = adoption.reset_sequences(ctx, run.params["headroom"])
            run.result = result
            return BatchOutcome(processed=len(adoption.TABLES), cursor=None, phase_done=True)
        elif phase in VERIFY_PHASES:
            table = phase.removeprefix("verify_")
            window, counts = adoption.verify_window(ctx, table, cursor, run.batch_size)
            verify = dict(result.get("verify", {}))
            totals = dict(verify.get(table, {}))
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            verify[table] = totals
            result["verify"] = verify
        else:  # verify_sample
            result["sample"] = {
                table: adoption.verify_sample(ctx, table, run.params["sample"]) for table in adoption.TABLES
            }
            result["verified"] = not any(
                counts.get("missing") or counts.get("extra") for counts in result.get("verify", {}).values()
            ) and not any(sample["mismatched"] for sample in result["sample"].values())
            run.result = result
            return BatchOutcome(
                processed=sum(s["checked"] for s in result["sample"].values()), cursor=None, phase_done=True
            )
        run.result = result
        return BatchOutcome(
            processed=window.processed, cursor=window.cursor, phase_done=window.done, detail=detail
        )
