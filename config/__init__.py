"""The Django project that serves the provider and hosts the maintenance worker.

Importing the package loads the Celery app so that ``shared_task`` users find it.
"""

from .celery import app as celery_app

__all__ = ["celery_app"]
