"""Settings of the maintenance app, in the ``OAUTH_MAINTENANCE`` dict of the Django settings.

Keys not set keep the defaults below. Values are read on every access, so ``override_settings`` in
tests and a changed settings module both take effect without a restart of the accessor.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    # Watchdog: how long past its due time a run's next batch may be before the run counts as
    # stalled (shown as such, and re-enqueued when no batch holds the run row's lock).
    "STALL_SECONDS": 15,
    # Watchdog: seconds between two passes of the watchdog every worker runs in a thread (0: none;
    # the beat entry installed by ``install_schedule`` still runs it every minute, as a backstop).
    "WATCHDOG_INTERVAL_SECONDS": 10,
    # Schedule: when the daily cleanup entry runs (crontab "m h dom mon dow", UTC). A change moves an
    # entry nobody edited in the admin at the next ``install_schedule`` (run by migrate and setup).
    "CLEANUP_CRONTAB": "17 3 * * *",
    # Schedule: install the default beat entries after every ``migrate``.
    "INSTALL_SCHEDULE_ON_MIGRATE": True,
    # Health: expired share of a token table above which the health endpoint warns.
    "HEALTH_EXPIRED_RATIO_WARNING": 0.5,
    # Health: how late the last successful cleanup may be, past its schedule, before a warning.
    "HEALTH_CLEANUP_GRACE_SECONDS": 3600,
    # Health: the largest age of the last successful cleanup when no cleanup schedule is installed.
    "HEALTH_CLEANUP_MAX_AGE_SECONDS": 26 * 3600,
    # Health: how long beat may stay silent past the period of its most frequent task. Beat's
    # database scheduler writes ``last_run_at`` back only every few minutes, hence the margin.
    "HEALTH_BEAT_GRACE_SECONDS": 600,
    # Health: messages waiting in the maintenance queue above which the health endpoint warns.
    "HEALTH_QUEUE_BACKLOG_WARNING": 1000,
    # Health: name of the broker queue whose backlog is reported.
    "HEALTH_QUEUE_NAME": "maintenance",
    # Health: connect and read timeout towards the broker, in seconds.
    "HEALTH_BROKER_TIMEOUT_SECONDS": 2.0,
    # Health: token counts are cached this many seconds (0 disables the cache).
    "HEALTH_COUNT_CACHE_SECONDS": 60,
    # Health: an exact count stops at this many rows; above it, PostgreSQL's planner estimate is used.
    "HEALTH_EXACT_COUNT_LIMIT": 100_000,
    # Health: anonymous callers see statuses only; staff always see the numbers.
    "HEALTH_PUBLIC_DETAILS": False,
    # Audit: access tokens created longer ago than this and still valid are reported.
    "AUDIT_ACCESS_TOKEN_AGE_DAYS": 7,
    # Audit: refresh tokens never used (never exchanged) and older than this are reported.
    "AUDIT_UNUSED_REFRESH_TOKEN_DAYS": 30,
    # Scopes a scope migration may give tokens only with ``allow_privileged`` and the permission
    # ``oauth_tasks.grant_privileged_scopes``: they open other users' data or the maintenance API.
    "PRIVILEGED_SCOPES": ["introspection", "maintenance"],
}

_NON_NEGATIVE_NUMBERS = {
    "STALL_SECONDS",
    "WATCHDOG_INTERVAL_SECONDS",
    "HEALTH_EXPIRED_RATIO_WARNING",
    "HEALTH_CLEANUP_GRACE_SECONDS",
    "HEALTH_CLEANUP_MAX_AGE_SECONDS",
    "HEALTH_BEAT_GRACE_SECONDS",
    "HEALTH_QUEUE_BACKLOG_WARNING",
    "HEALTH_BROKER_TIMEOUT_SECONDS",
    "HEALTH_COUNT_CACHE_SECONDS",
    "HEALTH_EXACT_COUNT_LIMIT",
    "AUDIT_ACCESS_TOKEN_AGE_DAYS",
    "AUDIT_UNUSED_REFRESH_TOKEN_DAYS",
}


class MaintenanceSettings:
    """Attribute access to ``OAUTH_MAINTENANCE`` with defaults and validation of known keys.

    Keys this accessor does not know are passed through untouched, so other parts of the app can
    keep their own keys in the same dict.
    """

    def _user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "OAUTH_MAINTENANCE", None) or {}
        if not isinstance(value, dict):
            raise ImproperlyConfigured("OAUTH_MAINTENANCE must be a dict")
        return value

    def __getattr__(self, name: str) -> Any:
        if not name.isupper():
            raise AttributeError(name)
        user = self._user_settings()
        if name in user:
            value = user[name]
        elif name in DEFAULTS:
            value = DEFAULTS[name]
        else:
            raise AttributeError(f"OAUTH_MAINTENANCE has no setting {name!r}")
        if name in _NON_NEGATIVE_NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ImproperlyConfigured(
                    f"OAUTH_MAINTENANCE[{name!r}] must be a non-negative number, got {value!r}"
                )
        return value


maintenance_settings = MaintenanceSettings()
