"""The Celery application of the project.

Settings come from the top-level ``celeryconfig`` module, so that a worker, beat and Flower read
exactly the same configuration as the web process.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("oauth_provider_maintenance")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["oauth_tasks"])
