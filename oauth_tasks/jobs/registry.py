"""The registry of job kinds: the names dispatch, beat and the API accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import QuerySet

from .base import Job, make_queryset_job

_registry: dict[str, Job] = {}


def register_job(job: Job | type[Job] | None = None, *, replace: bool = False) -> Any:
    """Register a job instance or class (usable as a class decorator); returns what it was given.

    A second registration of the same name is ImproperlyConfigured unless ``replace`` is true, so
    two apps cannot silently fight over a kind.
    """

    def add(item: Job | type[Job]) -> Job | type[Job]:
        instance = item() if isinstance(item, type) else item
        if not isinstance(instance, Job):
            raise ImproperlyConfigured(f"{item!r} is not a Job")
        if not instance.name or len(instance.name) > 64:
            raise ImproperlyConfigured(f"job {item!r} needs a name of 1 to 64 characters")
        if (
            instance.name in _registry
            and not replace
            and type(_registry[instance.name]) is not type(instance)
        ):
            raise ImproperlyConfigured(f"a job named {instance.name!r} is already registered")
        _registry[instance.name] = instance
        return item

    return add if job is None else add(job)


def register_migration(
    name: str,
    *,
    queryset: QuerySet | Callable[[dict[str, Any]], QuerySet],
    batch: Callable[[QuerySet, dict[str, Any]], int | None],
    replace: bool = False,
    **options: Any,
) -> Job:
    """Register a project's own bulk migration: the rows (a queryset) and what one batch does.

    ``batch`` receives a queryset limited to one batch's key range and returns the number of rows it
    changed (one ``UPDATE`` is the usual body). Options: ``label``, ``description``,
    ``params_schema``, ``clean_params``, ``batch_size``, ``interval``.
    """
    job = make_queryset_job(name, queryset=queryset, batch=batch, **options)
    register_job(job, replace=replace)
    return job


def unregister_job(name: str) -> None:
    _registry.pop(name, None)


def get_job(name: str) -> Job:
    """The job registered as ``name``; ValidationError on ``kind`` otherwise."""
    try:
        return _registry[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_registry)) or "none"
        raise ValidationError({"kind": f"unknown job kind {name!r}; known kinds: {known}"}) from None


def all_jobs() -> dict[str, Job]:
    """Registered jobs by name, sorted by name."""
    return dict(sorted(_registry.items()))
