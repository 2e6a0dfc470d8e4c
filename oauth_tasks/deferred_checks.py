"""A batch's deferred foreign key checks run inside the batch, where its duration is measured.

Django declares foreign keys ``DEFERRABLE INITIALLY DEFERRED`` on PostgreSQL, so the checks of a
batch's deletes and updates (one trigger call per changed row) run at ``COMMIT``, after the engine
has measured the batch. For a cleanup batch that is a large part of its database time (the
revoked-refresh-token phase: about 19,000 checks a batch), so the pacer's duty cycle counted too
little of it and the run held the database for more of the wall time than ``max_busy_share`` allows
(43 % measured at a share of 0.25). :func:`run_deferred_checks` switches the transaction's
deferrable constraints to ``IMMEDIATE``, which makes PostgreSQL run every outstanding check at that
moment; the batch's measured duration then includes them, and its ``COMMIT`` has none left.

Only in a transaction the caller itself opened (``outermost``): the mode lasts until that
transaction ends, and a transaction someone else opened around the batch keeps its own. MySQL and
MariaDB check foreign keys per statement, SQLite's checks are cheap: nothing to do there.
"""

from __future__ import annotations

from django.db import connection


def run_deferred_checks(*, outermost: bool) -> None:
    """Run the outstanding deferred constraint checks of this transaction now (PostgreSQL)."""
    if not outermost or connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
