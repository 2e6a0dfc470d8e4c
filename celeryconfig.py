"""Celery settings for the maintenance worker, beat and Flower.

Read by ``config.celery`` with ``app.config_from_object("celeryconfig")``. Every value a deployment
changes comes from the environment.
"""

import os

from config.embedded_redis import recorded_broker_url

# Unset: the embedded Redis of a running ``oauth-provider-run`` (its URL is recorded in DATA_DIR),
# else a Redis on this machine's default port.
broker_url = os.environ.get("CELERY_BROKER_URL") or recorded_broker_url() or "redis://127.0.0.1:6379/0"
result_backend = os.environ.get("CELERY_RESULT_BACKEND") or broker_url

# JSON only: a task message never carries pickled objects.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# A batch is acknowledged after it ran, and given back to the queue when its worker dies, so a
# killed worker loses nothing; the engine's batch number makes the redelivery harmless.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_track_started = True
result_extended = True
result_expires = 7 * 24 * 3600

# The longest countdown the engine schedules (the batch interval is capped at one hour, the
# watchdog re-enqueues after a stale heartbeat) is far below this: Redis redelivers an
# unacknowledged message only after the visibility timeout.
MAX_COUNTDOWN_SECONDS = 3600
broker_transport_options = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 2 * MAX_COUNTDOWN_SECONDS)),
}
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}}
broker_connection_retry_on_startup = True

task_default_queue = "celery"
task_routes = {"oauth_tasks.*": {"queue": "maintenance"}}

# Events for Flower: the worker's (received, started, succeeded...), which carry each batch's
# "(run=.., job=.., batch=..)" label. No "task-sent" events from the publisher: the watchdog, sent
# by beat every minute and silent on the worker (send_events=False), would otherwise fill Flower's
# task list with a SENT row a minute.
# Celery's Django fixup closes the database connections around every task unless this is set;
# with it, oauth_tasks.worker_connections applies Django's own rules instead (CONN_MAX_AGE,
# CONN_HEALTH_CHECKS), so a worker with DATABASE_CONN_MAX_AGE keeps its connection from one batch
# to the next. The fixup still closes them every this many tasks, and after a pool process forks.
CELERY_DB_REUSE_MAX = 1000

worker_send_task_events = True
task_send_sent_event = False

# Per-task limits live on the tasks; this is the backstop for anything else.
task_soft_time_limit = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", 300))
task_time_limit = int(os.environ.get("CELERY_TASK_TIME_LIMIT", 360))

beat_scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
timezone = os.environ.get("TIME_ZONE", "UTC")
enable_utc = True
worker_hijack_root_logger = False
