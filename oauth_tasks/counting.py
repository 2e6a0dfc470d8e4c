"""Row counts that stay cheap on tables of any size.

On PostgreSQL an exact count stops at a number of rows and at a time; past either, the planner's
estimate (``EXPLAIN``, nothing executed) stands in, so the health check and a run's progress
estimate never scan a huge table. The row limit alone did not bound the work: a count that finds
few rows walks all the rows its filter has to reject, and a cleanup's rules 4 and 5 with nothing to
delete compare every expired token with the tokens pointing at it (2 s at 3M access tokens, four
times the run it was estimating). MySQL and MariaDB have no such estimate: they count exactly, and a
count stopped by its time limit is unknown. SQLite counts exactly.
"""

from __future__ import annotations

import json

from django.db import OperationalError, connections, transaction
from django.db.models import QuerySet

#: PostgreSQL's SQLSTATE for a statement cancelled by ``statement_timeout``.
QUERY_CANCELED = "57014"
#: The errors of a statement stopped by its time limit: MariaDB's ``max_statement_time`` (1969),
#: MySQL's ``MAX_EXECUTION_TIME`` (3024).
MYSQL_TIMEOUTS = (1969, 3024)


def planner_rows(queryset: QuerySet) -> int:
    """The planner's row estimate for ``queryset`` (PostgreSQL ``EXPLAIN``), nothing executed."""
    sql, params = queryset.values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def bounded_count(queryset: QuerySet, limit: int, seconds: float = 0.0) -> tuple[int | None, bool]:
    """``(rows, exact)``: the exact count up to ``limit`` rows and within ``seconds`` (0: no time
    bound); past either, PostgreSQL's planner estimate. MySQL and MariaDB count without a row limit
    and have no such estimate: past ``seconds`` the rows are unknown, ``(None, False)``."""
    if connections[queryset.db].vendor != "postgresql":
        count = count_within(queryset, seconds)
        return count, count is not None
    count = count_within(queryset.values("pk")[: limit + 1], seconds)
    if count is None:
        return planner_rows(queryset), False
    if count <= limit:
        return count, True
    return max(planner_rows(queryset), limit), False


def count_within(rows: QuerySet, seconds: float) -> int | None:
    """``rows.count()``, or None when the database stopped it after ``seconds`` (0: no limit).

    PostgreSQL: ``statement_timeout`` set in a savepoint (or a transaction of its own) that is
    always rolled back, the count being read-only, so the setting ends with it and an enclosing
    transaction keeps its own. MariaDB: ``SET STATEMENT max_statement_time=... FOR`` the count
    alone; MySQL: the ``MAX_EXECUTION_TIME`` hint of the count alone; a stopped ``SELECT`` leaves
    the transaction as it was. SQLite: counted without a limit.
    """
    connection = connections[rows.db]
    if seconds <= 0 or connection.vendor not in ("postgresql", "mysql"):
        return rows.count()
    if connection.vendor == "mysql":
        return _mysql_count_within(rows, seconds)
    milliseconds = max(1, round(seconds * 1000))
    try:
        with transaction.atomic(using=rows.db):
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{milliseconds}ms"])
            count = rows.count()
            transaction.set_rollback(True, using=rows.db)  # takes the timeout with it
            return count
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != QUERY_CANCELED:
            raise
        return None


def _mysql_count_within(rows: QuerySet, seconds: float) -> int | None:
    connection = connections[rows.db]
    sql, params = rows.values("pk").query.get_compiler(rows.db).as_sql()
    if connection.mysql_is_mariadb:
        statement = f"SET STATEMENT max_statement_time={seconds:.3f} FOR SELECT COUNT(*) FROM ({sql}) c"
    else:
        milliseconds = max(1, round(seconds * 1000))
        statement = f"SELECT /*+ MAX_EXECUTION_TIME({milliseconds}) */ COUNT(*) FROM ({sql}) c"
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return int(cursor.fetchone()[0])
    except OperationalError as exc:
        code = exc.__cause__.args[0] if exc.__cause__ is not None and exc.__cause__.args else None
        if code not in MYSQL_TIMEOUTS:
            raise
        return None
