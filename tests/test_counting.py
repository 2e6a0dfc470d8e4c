"""Counts that stay cheap: an exact count gives up after a time, not only after a row limit.

A count that finds few rows walks every row its filter rejects, so the row limit alone did not
bound it: a cleanup's estimate with nothing to delete at 3M access tokens took 2 s on PostgreSQL.
Each row of the counts below sleeps (``pg_sleep``, ``SLEEP``), so a count of 40 rows takes 0.8 s
on any machine and the time limit is what stops it. Past it PostgreSQL gives its planner's
estimate; MySQL and MariaDB have none, and the count is unknown (None).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from oauth_provider.models import get_access_token_model
from oauth_tasks import health
from oauth_tasks.counting import bounded_count, planner_rows
from oauth_tasks.models import MaintenanceRun

from .factories import make_application

POSTGRESQL = connection.vendor == "postgresql"
needs_a_time_limit = pytest.mark.skipif(
    connection.vendor not in ("postgresql", "mysql"), reason="SQLite counts have no time limit"
)

#: Every row the filter looks at sleeps this long: 40 rows take 0.8 s.
SLOW_ROW = "pg_sleep(0.02) IS NOT NULL" if POSTGRESQL else "SLEEP(0.02) = 0"


@pytest.fixture
def tokens(db):
    app = make_application()
    model = get_access_token_model()
    model.objects.bulk_create(
        model(
            application=app,
            token=secrets.token_urlsafe(24),
            expires=timezone.now() + timedelta(hours=-1 if i < 30 else 1),
            scope="read",
        )
        for i in range(40)
    )
    if POSTGRESQL:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    return model.objects.all()


def time_limit() -> str:
    """The connection's own statement time limit."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout" if POSTGRESQL else "SELECT @@SESSION.max_statement_time")
        return str(cursor.fetchone()[0])


@needs_a_time_limit
def test_a_count_over_its_time_gives_the_planner_estimate_or_none(tokens):
    slow = tokens.extra(where=[SLOW_ROW])
    expected = (planner_rows(slow), False) if POSTGRESQL else (None, False)
    assert bounded_count(slow, 1000, 0.1) == expected


@needs_a_time_limit
def test_a_count_within_its_time_is_exact(tokens):
    assert bounded_count(tokens.filter(expires__lt=timezone.now()), 1000, 5.0) == (30, True)
    # No time limit (0) counts as long as it takes.
    assert bounded_count(tokens.extra(where=[SLOW_ROW]), 1000, 0) == (40, True)


@needs_a_time_limit
def test_the_caller_keeps_its_own_time_limit_and_a_usable_transaction(tokens):
    mariadb = connection.vendor == "mysql" and connection.mysql_is_mariadb
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                if POSTGRESQL:
                    cursor.execute("SET LOCAL statement_timeout = '7s'")
                elif mariadb:
                    cursor.execute("SET SESSION max_statement_time = 7")
            before = time_limit() if POSTGRESQL or mariadb else None
            assert bounded_count(tokens.extra(where=[SLOW_ROW]), 1000, 0.1)[1] is False
            assert bounded_count(tokens, 1000, 5.0) == (40, True)
            if before is not None:
                assert time_limit() == before
            assert tokens.count() == 40  # the transaction was not aborted by the stopped count
    finally:
        if mariadb:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION max_statement_time = DEFAULT")


def test_a_run_whose_estimate_missed_a_phase_has_no_estimated_total():
    assert MaintenanceRun(estimated_counts={"grants": 5, "access_tokens": None}).estimated_total is None
    assert MaintenanceRun(estimated_counts={"grants": 5, "access_tokens": 7}).estimated_total == 12
    assert MaintenanceRun(estimated_counts={}).estimated_total is None


@pytest.mark.skipif(not POSTGRESQL, reason="only PostgreSQL's health counts are bounded")
def test_the_health_counts_obey_the_time_setting(tokens, settings):
    """``HEALTH_EXACT_COUNT_SECONDS`` reaches the health check's count of stale rows."""
    model = tokens.model
    slow_rows = tokens.extra(where=[SLOW_ROW]).values("pk")
    stale = health.Q(expires__lt=timezone.now()) & health.Q(pk__in=slow_rows)
    settings.OAUTH_MAINTENANCE = {"HEALTH_EXACT_COUNT_SECONDS": 0.1}
    timed = health.count_rows(model, stale)
    settings.OAUTH_MAINTENANCE = {"HEALTH_EXACT_COUNT_SECONDS": 0}
    untimed = health.count_rows(model, stale)

    assert timed["exact"] is False
    assert untimed == {"total": 40, "stale": 30, "ratio": 0.75, "exact": True}
