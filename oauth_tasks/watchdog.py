"""The watchdog inside every worker: re-enqueue stalled runs within seconds, without beat.

A worker that loads this bootstep (the project's Celery app adds it: ``app.steps["worker"].add(
WatchdogStep)``) runs :func:`oauth_tasks.engine.requeue_stalled_runs` in a thread of its main process
every ``OAUTH_MAINTENANCE["WATCHDOG_INTERVAL_SECONDS"]`` (10 s by default; 0 turns it off). A thread,
not a task: it does not queue behind a long batch on a busy pool, and a pass costs one indexed query.
Several workers may each run it: the watchdog acts only under the run row's lock and leaves a run it
re-enqueued alone for a stall margin, so one lost batch gets one new message. The beat entry
``install_schedule`` installs runs the same function as a task every minute, a backstop for workers
of a project that does not add this step.
"""

from __future__ import annotations

import logging
import threading

from celery import bootsteps

logger = logging.getLogger(__name__)


def watchdog_pass() -> list[int]:
    """One pass: re-enqueue stalled runs; a database or broker error is logged, the next pass retries."""
    from django.db import connection

    from . import engine

    try:
        return engine.requeue_stalled_runs()
    except Exception as exc:  # the database or the broker is away: the thread must outlive it
        logger.warning(
            "maintenance watchdog pass failed: %s", type(exc).__name__, extra={"event": "watchdog_error"}
        )
        return []
    finally:
        # Hold no connection between passes: a pool process forked meanwhile inherits none.
        connection.close()


class WatchdogStep(bootsteps.StartStopStep):
    """Worker bootstep running :func:`watchdog_pass` every ``WATCHDOG_INTERVAL_SECONDS``."""

    label = "maintenance watchdog"
    # Start after the pool has forked its processes.
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent) -> None:
        from .conf import maintenance_settings

        interval = float(maintenance_settings.WATCHDOG_INTERVAL_SECONDS)
        if not interval:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="maintenance-watchdog", daemon=True
        )
        self._thread.start()
        logger.info(
            "maintenance watchdog every %gs (stall margin %gs)",
            interval,
            float(maintenance_settings.STALL_SECONDS),
            extra={"event": "watchdog_started"},
        )

    def _loop(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            watchdog_pass()

    def stop(self, parent) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    shutdown = stop
