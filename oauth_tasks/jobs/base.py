"""What a job is: a named kind of maintenance with validated parameters and ordered phases.

A job says *what* one batch does; the engine (``oauth_tasks.engine``) decides when batches run,
records progress on the run row and chains the next batch. A job never sleeps, never loops over
the whole table and never commits on its own: the engine calls :meth:`Job.run_batch` inside the
transaction that also records the run's progress, so the batch and its bookkeeping commit together.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from oauth_provider.cleanup import MAX_BATCH_SIZE, MAX_INTERVAL, json_cursor, queryset_window

if TYPE_CHECKING:
    from oauth_tasks.models import MaintenanceRun


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch of a phase did.

    ``processed`` is added to the run's count for the phase; ``cursor`` is where the next batch of
    the phase starts; ``phase_done`` moves the run on to the next phase. ``detail`` goes to the log
    line and the task's progress meta (never token values). ``other_counts`` adds rows the batch
    processed for other phases (by phase name) to those phases' counts.
    """

    processed: int
    cursor: Any
    phase_done: bool
    detail: dict[str, Any] = field(default_factory=dict)
    other_counts: dict[str, int] = field(default_factory=dict)


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


def _check_value(name: str, value: Any, spec: dict[str, Any]) -> Any:
    expected = spec.get("type")
    if expected:
        types = _TYPES[expected]
        if isinstance(value, bool) and expected in ("integer", "number"):
            raise ValidationError({name: f"{name} must be of type {expected}"})
        if not isinstance(value, types):
            raise ValidationError({name: f"{name} must be of type {expected}, got {type(value).__name__}"})
    if "enum" in spec and value not in spec["enum"]:
        choices = ", ".join(map(str, spec["enum"]))
        raise ValidationError({name: f"{name} must be one of {choices}, got {value!r}"})
    if expected in ("integer", "number"):
        if "minimum" in spec and value < spec["minimum"]:
            raise ValidationError({name: f"{name} must be at least {spec['minimum']}, got {value}"})
        if "maximum" in spec and value > spec["maximum"]:
            raise ValidationError({name: f"{name} must be at most {spec['maximum']}, got {value}"})
    if expected == "string":
        if "minLength" in spec and len(value) < spec["minLength"]:
            raise ValidationError({name: f"{name} must be at least {spec['minLength']} characters"})
        if "maxLength" in spec and len(value) > spec["maxLength"]:
            raise ValidationError({name: f"{name} must be at most {spec['maxLength']} characters"})
        if "pattern" in spec and not re.fullmatch(spec["pattern"], value):
            raise ValidationError({name: f"{name} must match {spec['pattern']}"})
    if expected == "array":
        items = spec.get("items")
        value = [_check_value(f"{name}[{i}]", item, items) if items else item for i, item in enumerate(value)]
        if "minItems" in spec and len(value) < spec["minItems"]:
            raise ValidationError({name: f"{name} must hold at least {spec['minItems']} items"})
        if "maxItems" in spec and len(value) > spec["maxItems"]:
            raise ValidationError({name: f"{name} must hold at most {spec['maxItems']} items"})
    return value


def validate_against_schema(schema: dict[str, Any], params: Any) -> dict[str, Any]:
    """Check ``params`` against the small JSON-schema subset jobs use; ValidationError names the field.

    Supported: an ``object`` with ``properties`` (``type``, ``enum``, ``minimum``/``maximum``,
    ``minLength``/``maxLength``/``pattern``, ``items``/``minItems``/``maxItems``, ``default``),
    ``required`` and ``additionalProperties: false``. Enough for an HTTP API to publish the schema
    and for a client to build a form from it, without a dependency.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValidationError({"params": "params must be a JSON object"})
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    if schema.get("additionalProperties", True) is False:
        unknown = sorted(set(params) - set(properties))
        if unknown:
            raise ValidationError(
                {unknown[0]: f"unknown parameter {unknown[0]!r}; known: {sorted(properties)}"}
            )
    cleaned: dict[str, Any] = {}
    for name, spec in properties.items():
        if name in params and params[name] is not None:
            cleaned[name] = _check_value(name, params[name], spec)
        elif name in schema.get("required", ()):
            raise ValidationError({name: f"{name} is required"})
        elif "default" in spec:
            cleaned[name] = spec["default"]
    for name in set(params) - set(properties):
        cleaned[name] = params[name]
    return cleaned


class Job:
    """A kind of maintenance work. Subclass, set ``name``, and register with ``register_job``.

    Override :meth:`phases` and :meth:`run_batch`; describe parameters in ``params_schema`` (read by
    the dispatch API to list job kinds) and add checks the schema cannot express in
    :meth:`clean_params`. Instances are shared by every run: keep no per-run state on them.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }

    #: The largest batch a run of this job accepts; lower it when a row is expensive.
    max_batch_size: ClassVar[int] = MAX_BATCH_SIZE

    def default_batch_size(self) -> int:
        return 1000

    def default_interval(self) -> float:
        return 0.0

    def validate_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """The parameters a run stores, or ValidationError naming the faulty field."""
        return self.clean_params(validate_against_schema(self.params_schema, params))

    def clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Checks across fields or against the database; return the cleaned dict."""
        return params

    def required_permissions(self, params: dict[str, Any]) -> list[str]:
        """Permissions a user needs, beyond starting runs, to start a run with cleaned ``params``.

        Checked by dispatch when it is given the user (the API and the admin give it).
        """
        return []

    def on_dispatch(self, run: MaintenanceRun) -> None:
        """Called by dispatch in the transaction that creates ``run``, and only for a new run.

        For one small write whose effect must be immediate and must commit or roll back with the
        run (a revocation's "not valid before" watermark). Never called for a run that already
        existed, nor on resume.
        """

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        raise NotImplementedError

    def estimate(self, params: dict[str, Any], cutoff: datetime) -> dict[str, int]:
        """Rows each phase should process, for progress bars and ETAs; ``{}`` when unknown.

        Called once by dispatch before the run is created. Keep it cheap on big tables (see
        ``oauth_tasks.counting``): it is an estimate, never a limit.
        """
        return {}

    def run_batch(self, run: MaintenanceRun, phase: str, cursor: Any) -> BatchOutcome:
        """Do (or on ``run.dry_run`` only count) one batch of ``phase`` above ``cursor``.

        Must be safe to run again after a rollback: evaluate what to touch at run time.
        """
        raise NotImplementedError

    def lane_key_range(self, run: MaintenanceRun, phase: str) -> tuple[int, int] | None:
        """The smallest and largest integer key ``phase`` walks, for splitting it into lanes.

        None (the default) when the phase cannot be split: it then runs as one chain. A job whose
        phases return a range must implement :meth:`run_lane_batch`.
        """
        return None

    def lanes_refused(self, params: dict[str, Any]) -> str:
        """Why a run with these parameters cannot be split into lanes ('' when it can)."""
        return f"{self.name} runs do not support lanes"

    def run_lane_batch(self, run: MaintenanceRun, phase: str, cursor: Any, upper: int | None) -> BatchOutcome:
        """One batch of ``phase`` over keys in ``(cursor, upper]`` (``upper`` None: no bound)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The job as the HTTP API lists it."""
        return {
            "name": self.name,
            "label": self.label or self.name,
            "description": self.description or (self.__doc__ or "").strip().split("\n")[0],
            "params_schema": self.params_schema,
            "batch_size": {
                "default": self.default_batch_size(),
                "minimum": 1,
                "maximum": self.max_batch_size,
            },
            "interval": {"default": self.default_interval(), "minimum": 0, "maximum": MAX_INTERVAL},
        }


def keyset_window(queryset: QuerySet, cursor: Any, batch_size: int) -> tuple[int, Any]:
    """Count and largest key of the next ``batch_size`` rows of ``queryset`` above ``cursor``.

    The provider's keyset window (one query, one row, no ``OFFSET``), with the key in the form a
    run stores in its JSON cursor.
    """
    count, last = queryset_window(queryset, cursor=cursor, batch_size=batch_size)
    return count, json_cursor(last)


class QuerysetJob(Job):
    """A one-phase job over the rows of a queryset, walked by primary key.

    The base for bulk migrations: :meth:`get_queryset` says which rows, :meth:`process_batch` does
    the work on a queryset of one batch's key range (one ``UPDATE``, ideally) and returns how many
    rows it changed. A dry run only counts the rows.
    """

    phase_name: ClassVar[str] = "rows"

    def get_queryset(self, params: dict[str, Any]) -> QuerySet:
        raise NotImplementedError

    def process_batch(self, rows: QuerySet, params: dict[str, Any]) -> int | None:
        raise NotImplementedError

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        return [self.phase_name]

    def run_batch(self, run: MaintenanceRun, phase: str, cursor: Any) -> BatchOutcome:
        queryset = self.get_queryset(run.params)
        count, last = keyset_window(queryset, cursor, run.batch_size)
        if count == 0:
            return BatchOutcome(processed=0, cursor=cursor, phase_done=True)
        if run.dry_run:
            processed = count
        else:
            rows = queryset.filter(pk__lte=last)
            if cursor is not None:
                rows = rows.filter(pk__gt=cursor)
            result = self.process_batch(rows, run.params)
            processed = count if result is None else int(result)
        return BatchOutcome(processed=processed, cursor=last, phase_done=count < run.batch_size)


def make_queryset_job(
    name: str,
    *,
    queryset: QuerySet | Callable[[dict[str, Any]], QuerySet],
    batch: Callable[[QuerySet, dict[str, Any]], int | None],
    label: str = "",
    description: str = "",
    params_schema: dict[str, Any] | None = None,
    clean_params: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    batch_size: int = 1000,
    interval: float = 0.0,
) -> QuerysetJob:
    """A :class:`QuerysetJob` from a queryset (or a function of the params) and a per-batch function."""

    schema = params_schema or {"type": "object", "properties": {}, "additionalProperties": False}

    class _Job(QuerysetJob):
        def get_queryset(self, params):
            return queryset(params) if callable(queryset) else queryset.all()

        def process_batch(self, rows, params):
            return batch(rows, params)

        def clean_params(self, params):
            return clean_params(params) if clean_params else params

        def default_batch_size(self) -> int:
            return batch_size

        def default_interval(self) -> float:
            return interval

    _Job.name = name
    _Job.label = label or name
    _Job.description = description
    _Job.params_schema = schema
    _Job.__name__ = _Job.__qualname__ = f"QuerysetJob[{name}]"
    return _Job()
