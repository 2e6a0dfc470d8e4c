"""``manage.py oauth_maintenance``: stats and audit on a seeded database, as text and as JSON."""

from __future__ import annotations

import io
import json
import secrets
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth_provider.cleanup import PHASES
from oauth_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


def app_named(name: str):
    return get_application_model().objects.create(
        name=name, client_type="confidential", authorization_grant_type="authorization-code",
        redirect_uris="https://client.example/cb", client_secret="",
    )  # fmt: skip


def access_token(app, user, *, expires_in: float, age_days: float = 0, **extra):
    token = AccessToken.objects.create(
        application=app,
        user=user,
        token=secrets.token_urlsafe(24),
        expires=timezone.now() + timedelta(seconds=expires_in),
        scope="read",
        **extra,
    )
    if age_days:
        AccessToken.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(days=age_days))
    return token


def refresh_token(app, user, *, age_days: float = 0, **extra):
    token = RefreshToken.objects.create(application=app, user=user, token=secrets.token_urlsafe(24), **extra)
    if age_days:
        RefreshToken.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(days=age_days))
    return token


@pytest.fixture
def seeded():
    """Three applications with a known mix of live, expired, old, used and unused tokens."""
    user = get_user_model().objects.create_user("owner")
    busy, quiet, idle = app_named("busy"), app_named("quiet"), app_named("idle")
    for _ in range(5):
        access_token(busy, user, expires_in=3600)
    for _ in range(2):
        access_token(busy, user, expires_in=-60)
    # Two of busy's live tokens are older than a week.
    old = list(AccessToken.objects.filter(application=busy, expires__gt=timezone.now()).order_by("id")[:2])
    AccessToken.objects.filter(pk__in=[t.pk for t in old]).update(created=timezone.now() - timedelta(days=10))
    # An old token that has expired is not a finding.
    access_token(quiet, user, expires_in=-60, age_days=10)
    access_token(quiet, user, expires_in=3600)

    unused_old = refresh_token(busy, user, age_days=40)
    used_old = refresh_token(busy, user, age_days=40)
    access_token(busy, user, expires_in=-120, source_refresh_token=used_old)
    refresh_token(busy, user, age_days=40, revoked=timezone.now())
    refresh_token(quiet, user, age_days=5)

    get_id_token_model().objects.create(
        application=busy, user=user, expires=timezone.now() + timedelta(hours=1)
    )
    get_id_token_model().objects.create(
        application=busy, user=user, expires=timezone.now() - timedelta(hours=1)
    )
    get_grant_model().objects.create(
        application=quiet, user=user, code=secrets.token_urlsafe(16), redirect_uri="https://client.example/cb",
        expires=timezone.now() - timedelta(minutes=1),
    )  # fmt: skip
    return {"busy": busy, "quiet": quiet, "idle": idle, "unused_old": unused_old, "old_live": old}


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("oauth_maintenance", *args, stdout=out)
    return out.getvalue()


def test_stats_as_json_count_applications_tokens_and_the_busiest_applications(seeded):
    report = json.loads(run_command("--stats", "--json"))
    stats = report["stats"]

    assert stats["applications"] == {"total": 3, "active": 2}
    assert stats["tokens"] == {
        # busy: 5 live + 2 expired + 1 minted from a refresh token; quiet: 1 expired + 1 live
        "access_tokens": {"total": 10, "active": 6},
        "refresh_tokens": {"total": 4, "active": 3},
        "id_tokens": {"total": 2, "active": 1},
        "grants": {"total": 1, "active": 0},
    }
    top = stats["top_applications"]
    assert [row["name"] for row in top] == ["busy", "quiet"]
    assert top[0] == {
        "id": seeded["busy"].pk,
        "name": "busy",
        "client_id": seeded["busy"].client_id,
        "access_tokens": 8,
        "active_access_tokens": 5,
        "refresh_tokens": 3,
        "active_refresh_tokens": 2,
    }
    assert (top[1]["access_tokens"], top[1]["active_access_tokens"], top[1]["active_refresh_tokens"]) == (
        2,
        1,
        1,
    )


def test_stats_are_the_default_and_print_as_a_table(seeded):
    text = run_command()

    assert "total 3, active 2" in text
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert lines["access_tokens"] == ["10", "6"]
    assert lines["refresh_tokens"] == ["4", "3"]
    assert lines[str(seeded["busy"].pk)] == ["busy", "8", "5", "3", "2"]


def test_audit_finds_old_live_access_tokens_and_unused_old_refresh_tokens(seeded):
    report = json.loads(run_command("--audit", "--json"))
    audit = report["audit"]
    assert "stats" not in report

    old = audit["long_lived_access_tokens"]
    assert old["older_than_days"] == 7
    assert old["count"] == 2
    assert sorted(row["id"] for row in old["oldest"]) == sorted(t.pk for t in seeded["old_live"])
    assert old["by_application"] == [{"id": seeded["busy"].pk, "name": "busy", "count": 2}]

    unused = audit["unused_refresh_tokens"]
    assert unused["older_than_days"] == 30
    # Not the one an access token was minted from, not the revoked one, not the 5-day-old one.
    assert unused["count"] == 1
    assert [row["id"] for row in unused["oldest"]] == [seeded["unused_old"].pk]


def test_audit_thresholds_come_from_the_options(seeded):
    audit = json.loads(run_command("--audit", "--json", "--refresh-days", "1", "--access-days", "30"))[
        "audit"
    ]

    assert audit["long_lived_access_tokens"]["count"] == 0
    # The 5-day-old unused refresh token is now old enough too.
    assert audit["unused_refresh_tokens"]["count"] == 2


def test_audit_text_lists_rows_by_id_and_never_a_token_value(seeded):
    text = run_command("--audit", "--stats")

    assert "access tokens older than 7 days and still valid: 2" in text
    assert "refresh tokens never used and older than 30 days: 1" in text
    assert f"#{seeded['unused_old'].pk} application {seeded['busy'].pk}" in text
    values = [*AccessToken.objects.values_list("token", flat=True)]
    values += RefreshToken.objects.values_list("token", flat=True)
    assert values and not [value for value in values if value in text]


def test_stats_and_audit_take_a_fixed_number_of_queries_whatever_the_data(seeded):
    with CaptureQueriesContext(connection) as few:
        run_command("--stats", "--audit", "--json")
    user = get_user_model().objects.get(username="owner")
    for index in range(15):
        app = app_named(f"more-{index}")
        access_token(app, user, expires_in=3600, age_days=20)
        refresh_token(app, user, age_days=60)
    with CaptureQueriesContext(connection) as many:
        run_command("--stats", "--audit", "--json")

    assert len(many.captured_queries) == len(few.captured_queries)


def test_negative_days_are_refused_naming_the_option(seeded):
    with pytest.raises(CommandError, match="--refresh-days"):
        run_command("--audit", "--refresh-days", "-1")


def test_cleanup_reports_numbers_per_phase_in_json(seeded):
    expired_before = AccessToken.objects.filter(expires__lt=timezone.now()).count()
    assert expired_before > 0

    report = json.loads(run_command("--cleanup", "--json"))

    cleanup = report["cleanup"]
    assert set(cleanup) == {"deleted", "total", "seconds"}
    assert set(cleanup["deleted"]) == set(PHASES)
    assert all(isinstance(count, int) for count in cleanup["deleted"].values())
    assert cleanup["total"] == sum(cleanup["deleted"].values()) > 0
    assert cleanup["deleted"]["access_tokens"] == expired_before - AccessToken.objects.count() + 6
    # Expired access tokens with no refresh token pointing at them are gone; live ones stay.
    assert AccessToken.objects.filter(expires__gt=timezone.now()).count() == 6
    assert not AccessToken.objects.filter(expires__lt=timezone.now(), refresh_token__isnull=True).exists()
