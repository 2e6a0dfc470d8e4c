"""Job kinds of the maintenance engine and their registry.

Built-in jobs register on import of this package; a project registers its own from its
``AppConfig.ready()`` with :func:`register_job` or :func:`register_migration`.
"""

from . import adoption, cleanup, migrations, revocation  # noqa: F401  (register the built-in jobs)
from .base import BatchOutcome, Job, QuerysetJob, keyset_window, make_queryset_job, validate_against_schema
from .registry import all_jobs, get_job, register_job, register_migration, unregister_job

__all__ = [
    "BatchOutcome",
    "Job",
    "QuerysetJob",
    "all_jobs",
    "get_job",
    "keyset_window",
    "make_queryset_job",
    "register_job",
    "register_migration",
    "unregister_job",
    "validate_against_schema",
]
