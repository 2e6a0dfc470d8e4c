"""Row counts that stay cheap on tables of any size.

On PostgreSQL an exact count stops at a limit; above it the planner's estimate (``EXPLAIN``,
nothing executed) stands in, so the health check and a run's progress estimate never scan a huge
table. Other databases have no such estimate and count exactly.
"""

from __future__ import annotations

import json

from django.db import connections
from django.db.models import QuerySet


def planner_rows(queryset: QuerySet) -> int:
    """The planner's row estimate for ``queryset`` (PostgreSQL ``EXPLAIN``), nothing executed."""
    sql, params = queryset.values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def bounded_count(queryset: QuerySet, limit: int) -> tuple[int, bool]:
    """``(rows, exact)``: on PostgreSQL the exact count up to ``limit`` and an estimate above it."""
    if connections[queryset.db].vendor != "postgresql":
        return queryset.count(), True
    count = queryset.values("pk")[: limit + 1].count()
    if count <= limit:
        return count, True
    return max(planner_rows(queryset), limit), False
