"""A worker's database connections follow Django's rules for a request, task by task.

Celery's Django fixup closes every database connection before and after each task, whatever
``CONN_MAX_AGE`` says, unless ``CELERY_DB_REUSE_MAX`` is set (then it closes them every that many
tasks). A maintenance run is hundreds of short batch tasks in a row, and a new PostgreSQL
connection costs about 8 ms before its first query, which at 10,000 rows a batch is a twentieth of a
fast batch. The project's ``celeryconfig`` sets ``CELERY_DB_REUSE_MAX``, and these receivers do
what Django does at the start and end of a request: ``close_old_connections()``, which closes a
connection past its ``CONN_MAX_AGE`` (at once with the default of 0, so nothing changes unless a
deployment asks for persistent connections) and, with ``CONN_HEALTH_CHECKS``, checks a kept one
before the task's first query, so a connection the database dropped between two batches is
replaced instead of failing the batch.
"""

from __future__ import annotations

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections


def _close_old_connections(sender=None, **kwargs) -> None:
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # a task run in the caller's process uses the caller's connection
    close_old_connections()


task_prerun.connect(_close_old_connections, dispatch_uid="oauth_tasks_close_old_connections_before")
task_postrun.connect(_close_old_connections, dispatch_uid="oauth_tasks_close_old_connections_after")
