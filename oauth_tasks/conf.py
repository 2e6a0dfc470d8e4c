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
    # Health and a run's estimate: an exact count gives up after this many seconds (0: no time
    # limit); PostgreSQL then uses the planner's estimate, and a run's estimate on MySQL or MariaDB
    # leaves that phase unknown. A count that finds few rows in a big table walks every row it
    # rejects, whatever the row limit.
    "HEALTH_EXACT_COUNT_SECONDS": 0.1,
    # Health: anonymous callers see statuses only; staff always see the numbers.
    "HEALTH_PUBLIC_DETAILS": False,
    # Audit: access tokens created longer ago than this and still valid are reported.
    "AUDIT_ACCESS_TOKEN_AGE_DAYS": 7,
    # Audit: refresh tokens never used (never exchanged) and older than this are reported.
    "AUDIT_UNUSED_REFRESH_TOKEN_DAYS": 30,
    # Scopes a scope migration may give tokens only with ``allow_privileged`` and the permission
    # ``oauth_tasks.grant_privileged_scopes``: they open other users' data or the maintenance API.
    "PRIVILEGED_SCOPES": ["introspection", "maintenance"],
    # Pacing: adapt every run's batch size and pause to how long its batches take and to the
    # database's signals (lock waits, replica lag). Off: batch size and interval stay fixed, with
    # CLEAR_EXPIRED_TOKENS_BATCH_SIZE and _BATCH_INTERVAL meaning what they mean in django-oauth-toolkit.
    # A run's ``pacing`` parameter overrides this and every PACING_* key below for that run.
    "PACING": False,
    # Pacing: the batch duration the size is steered toward, in seconds (AIMD: a batch under it
    # grows the next by PACING_BATCH_SIZE_STEP rows, a batch over it halves the next).
    "PACING_TARGET_BATCH_SECONDS": 0.3,
    # Pacing: the largest share of wall time a run spends inside batches (0 < share <= 1); a batch
    # of d seconds is followed by a pause of d * (1 - share) / share seconds.
    "PACING_MAX_BUSY_SHARE": 0.35,
    # Pacing: bounds of the batch size (the job's own maximum still applies).
    "PACING_MIN_BATCH_SIZE": 100,
    "PACING_MAX_BATCH_SIZE": 10_000,
    # Pacing: rows added to the next batch after a batch under the target duration.
    "PACING_BATCH_SIZE_STEP": 500,
    # Pacing: how long a batch's statement waits for a row lock before it gives up, is retried
    # with half the rows and the run records "lock wait" (PostgreSQL; 0: no limit).
    "PACING_LOCK_TIMEOUT_SECONDS": 2.0,
    # Pacing: replica lag in seconds above which a paced run waits before its next batch (0: never).
    "MAX_REPLICA_LAG": 5.0,
    # Pacing: while the lag is too high, seconds between two looks at it (no worker waits meanwhile).
    "REPLICA_LAG_RECHECK_SECONDS": 5.0,
    # Pacing: aliases of DATABASES that are replicas of the default database, whose lag is read
    # (PostgreSQL standbys, MySQL/MariaDB replicas). The primary's own view of its PostgreSQL
    # standbys (pg_stat_replication) is read without being listed.
    "REPLICA_DATABASES": [],
    # Lanes: how many chains (disjoint key ranges, one worker each) a run of a job that supports
    # them splits each phase into, unless the run says otherwise; 1 is one chain per run.
    "LANES": 1,
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
    "HEALTH_EXACT_COUNT_SECONDS",
    "AUDIT_ACCESS_TOKEN_AGE_DAYS",
    "AUDIT_UNUSED_REFRESH_TOKEN_DAYS",
}

#: Checked by ``oauth_tasks.pacing`` (ranges between keys, booleans, integers).
_PACING_KEYS = {
    "PACING",
    "PACING_TARGET_BATCH_SECONDS",
    "PACING_MAX_BUSY_SHARE",
    "PACING_MIN_BATCH_SIZE",
    "PACING_MAX_BATCH_SIZE",
    "PACING_BATCH_SIZE_STEP",
    "PACING_LOCK_TIMEOUT_SECONDS",
    "MAX_REPLICA_LAG",
    "REPLICA_LAG_RECHECK_SECONDS",
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
        if name in _PACING_KEYS:
            self._check_pacing(name, value)
        if name == "LANES":
            from .lanes import MAX_LANES

            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LANES:
                raise ImproperlyConfigured(
                    f"OAUTH_MAINTENANCE['LANES'] must be a whole number from 1 to {MAX_LANES}, got {value!r}"
                )
        if name == "REPLICA_DATABASES":
            self._check_replicas(value)
        return value

    def _check_pacing(self, name: str, value: Any) -> None:
        from .pacing import SETTING_KEYS, check

        user = self._user_settings()
        values = {key: user.get(setting, DEFAULTS[setting]) for key, setting in SETTING_KEYS.items()}
        values[{setting: key for key, setting in SETTING_KEYS.items()}[name]] = value
        try:
            check(values, prefix="\0")
        except ValueError as exc:
            # Name the settings as they are written: OAUTH_MAINTENANCE['PACING_...'].
            message = str(exc)
            for key, setting in SETTING_KEYS.items():
                message = message.replace(f"\0{key}", f"OAUTH_MAINTENANCE[{setting!r}]")
            raise ImproperlyConfigured(message) from None

    def _check_replicas(self, value: Any) -> None:
        if not isinstance(value, list | tuple) or not all(isinstance(alias, str) for alias in value):
            raise ImproperlyConfigured(
                f"OAUTH_MAINTENANCE['REPLICA_DATABASES'] must be a list of DATABASES aliases, got {value!r}"
            )
        unknown = [alias for alias in value if alias not in settings.DATABASES]
        if unknown:
            raise ImproperlyConfigured(
                f"OAUTH_MAINTENANCE['REPLICA_DATABASES'] names {unknown[0]!r}, which is not in DATABASES"
            )


maintenance_settings = MaintenanceSettings()
