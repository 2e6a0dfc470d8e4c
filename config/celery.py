"""The Celery application of the project.

Settings come from the top-level ``celeryconfig`` module, so that a worker, beat and Flower read
exactly the same configuration as the web process.
"""

import os

from celery import Celery

from oauth_tasks.watchdog import WatchdogStep

from .redis_transport import register as register_redis_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Redis URLs go through the project's hardened kombu transport (see config/redis_transport.py).
register_redis_transport()

app = Celery("oauth_provider_maintenance")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["oauth_tasks"])
# Every worker re-enqueues stalled maintenance runs itself, every few seconds (oauth_tasks/watchdog.py).
app.steps["worker"].add(WatchdogStep)
