"""A paced batch gives up on a row lock after ``lock_timeout_seconds`` instead of queueing behind it.

* PostgreSQL: ``lock_timeout`` for the batch's transaction only (``set_config(..., true)``), so
  nothing is left to restore, and no statement runs in a transaction an error aborted.
* MySQL and MariaDB: ``innodb_lock_wait_timeout`` is whole seconds (at least 1) and has no
  transaction scope: the batch sets it for its connection (``SET SESSION``) and puts the previous
  value back when the batch ends, also when it failed. A lock wait there rolls back the statement,
  not the transaction, so the connection still answers the restore.
* SQLite has no row locks (its write lock is taken when a transaction starts): nothing is set.

The failed batch raises the database's own lock error; the task retries it, and a paced run's pacer
records "lock wait" and halves the next batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

logger = logging.getLogger(__name__)


def mysql_seconds(seconds: float) -> int:
    """``innodb_lock_wait_timeout`` for a timeout of ``seconds``: rounded up, at least 1."""
    return max(1, math.ceil(seconds))


@contextmanager
def batch_lock_timeout(pace) -> Iterator[None]:
    """Inside: the batch's statements wait at most ``pace.lock_timeout_seconds`` for a row lock
    (a paced run with a timeout above 0); otherwise the database's own wait applies."""
    seconds = float(getattr(pace, "lock_timeout_seconds", 0) or 0)
    if not getattr(pace, "enabled", False) or seconds <= 0:
        yield
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{int(seconds * 1000)}ms"])
        yield
        return
    if connection.vendor != "mysql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.innodb_lock_wait_timeout")
        previous = int(cursor.fetchone()[0])
        cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", [mysql_seconds(seconds)])
    try:
        yield
    except BaseException:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", [previous])
        except Exception as exc:  # the batch's own error is what the caller must see
            logger.warning(
                "innodb_lock_wait_timeout not restored after a failed batch: %s",
                type(exc).__name__,
                extra={"event": "lock_timeout_not_restored"},
            )
        raise
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", [previous])
