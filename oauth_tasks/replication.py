"""Replica lag, the brake of a paced run: how far behind the primary the slowest replica is, in seconds.

Read from every place that can tell, and the largest value wins:

* PostgreSQL, on the primary (the ``default`` database): ``replay_lag`` of every standby in
  ``pg_stat_replication``. When ``default`` is itself a standby: ``now()`` minus
  ``pg_last_xact_replay_timestamp()``, unless it replayed all the WAL it received (then 0).
* the databases named in ``OAUTH_MAINTENANCE["REPLICA_DATABASES"]`` (aliases of ``DATABASES``):
  on PostgreSQL the standby measure above, on MySQL/MariaDB ``Seconds_Behind_Source`` /
  ``Seconds_Behind_Master`` of ``SHOW REPLICA STATUS`` (``SHOW SLAVE STATUS`` on older servers),
  a stopped replication thread (NULL) counting as infinitely behind.

SQLite has no replicas: no lag. A replica that cannot be reached counts as unknown (None) and is
logged; the run is not stopped by a monitoring fault.
"""

from __future__ import annotations

import logging
import math

from django.db import connections

logger = logging.getLogger(__name__)

_STANDBY_LAG = """
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN NULL
        WHEN pg_last_wal_receive_lsn() IS NOT NULL
             AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
        ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
    END
"""
_PRIMARY_LAG = "SELECT max(extract(epoch FROM replay_lag)) FROM pg_stat_replication"


def _postgresql_lag(alias: str, *, primary: bool) -> float | None:
    with connections[alias].cursor() as cursor:
        cursor.execute(_STANDBY_LAG)
        standby = cursor.fetchone()[0]
        if standby is not None:
            return float(standby)
        if not primary:
            return None
        cursor.execute(_PRIMARY_LAG)
        value = cursor.fetchone()[0]
        return float(value) if value is not None else None


def _mysql_lag(alias: str) -> float | None:
    with connections[alias].cursor() as cursor:
        for statement in ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS"):
            try:
                cursor.execute(statement)
            except Exception:
                continue
            columns = [column[0] for column in cursor.description or ()]
            rows = cursor.fetchall()
            if not rows:
                return None  # not a replica
            worst = 0.0
            for row in rows:
                record = dict(zip(columns, row, strict=False))
                value = record.get("Seconds_Behind_Source", record.get("Seconds_Behind_Master"))
                worst = max(worst, math.inf if value is None else float(value))
            return worst
    return None


def database_lag(alias: str, *, primary: bool = False) -> float | None:
    """The lag seen from database ``alias``, in seconds; None when it cannot tell."""
    vendor = connections[alias].vendor
    if vendor == "postgresql":
        return _postgresql_lag(alias, primary=primary)
    if vendor == "mysql":
        return _mysql_lag(alias) if not primary else None
    return None


def replica_lag() -> float | None:
    """The largest lag of the default database's replicas and of the configured replica aliases."""
    from .conf import maintenance_settings

    aliases = maintenance_settings.REPLICA_DATABASES
    worst: float | None = None
    for alias, primary in [("default", True), *((alias, False) for alias in aliases)]:
        try:
            lag = database_lag(alias, primary=primary)
        except Exception as exc:
            if alias == "default":
                raise  # the batch's own database: a real error, retried like any other
            logger.warning(
                "replica lag unknown for database %s: %s",
                alias,
                type(exc).__name__,
                extra={"event": "replica_lag_unknown", "database": alias},
            )
            continue
        if lag is not None:
            worst = lag if worst is None else max(worst, lag)
    return worst
