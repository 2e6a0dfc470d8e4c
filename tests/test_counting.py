"""Counts that stay cheap: on PostgreSQL an exact count gives up after a time, not only a row limit.

A count that finds few rows walks every row its filter rejects, so the row limit alone did not
bound it: a cleanup's estimate with nothing to delete at 3M access tokens took 2 s. Each row of the
counts below sleeps in ``pg_sleep``, so a count of 40 rows takes 0.8 s on any machine and the time
limit is what stops it.
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

from .factories import make_application

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="time-bounded counts are PostgreSQL's"),
]

#: Every row the filter looks at sleeps this long: 40 rows take 0.8 s.
SLOW_ROW = "pg_sleep(0.02) IS NOT NULL"


@pytest.fixture
def tokens():
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
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    return model.objects.all()


def statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_a_count_over_its_time_gives_the_planner_estimate(tokens):
    slow = tokens.extra(where=[SLOW_ROW])

    assert bounded_count(slow, 1000, 0.1) == (planner_rows(slow), False)


def test_a_count_within_its_time_is_exact(tokens):
    assert bounded_count(tokens.filter(expires__lt=timezone.now()), 1000, 5.0) == (30, True)
    # No time limit (0) counts as long as it takes.
    assert bounded_count(tokens.extra(where=[SLOW_ROW]), 1000, 0) == (40, True)


def test_the_caller_keeps_its_own_statement_timeout_and_a_usable_transaction(tokens):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '7s'")
        assert bounded_count(tokens.extra(where=[SLOW_ROW]), 1000, 0.1)[1] is False
        assert statement_timeout() == "7s"
        assert bounded_count(tokens, 1000, 5.0) == (40, True)
        assert statement_timeout() == "7s"
        assert tokens.count() == 40  # the transaction was not aborted by the cancelled count


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
