"""The health endpoint reports real states of the real database and broker, and their numbers."""

from __future__ import annotations

import json
import re
import secrets
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.embedded_redis import free_port
from oauth_provider.models import get_access_token_model, get_application_model, get_refresh_token_model
from oauth_tasks import health
from oauth_tasks.models import InstalledScheduleEntry, MaintenanceRun
from oauth_tasks.schedule import install_schedule
from oauth_tasks.tasks import CLEANUP_TASK_NAME, WATCHDOG_TASK_NAME

URL = "/maintenance/health/"


@pytest.fixture(autouse=True)
def maintenance_settings(settings):
    settings.OAUTH_MAINTENANCE = {"HEALTH_COUNT_CACHE_SECONDS": 0}
    return settings.OAUTH_MAINTENANCE


@pytest.fixture
def empty_broker(redis_client):
    redis_client.flushdb()
    yield redis_client
    redis_client.flushdb()


def make_app():
    return get_application_model().objects.create(
        name=f"app-{secrets.token_hex(3)}",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret="",
    )


def make_access_tokens(app, count: int, *, expires_in: float) -> None:
    model = get_access_token_model()
    for _ in range(count):
        model.objects.create(
            application=app,
            token=secrets.token_urlsafe(24),
            expires=timezone.now() + timedelta(seconds=expires_in),
            scope="read",
        )


def install_fresh_schedule(now=None) -> PeriodicTask:
    """The app's default schedule, installed just now, with a watchdog beat ran a moment ago."""
    now = now or timezone.now()
    PeriodicTask.objects.all().delete()
    InstalledScheduleEntry.objects.all().delete()
    install_schedule()
    PeriodicTask.objects.filter(task=WATCHDOG_TASK_NAME).update(last_run_at=now)
    return PeriodicTask.objects.get(task=CLEANUP_TASK_NAME)


def record_cleanup_run(finished_at, status: str = "succeeded", dry_run: bool = False) -> MaintenanceRun:
    return MaintenanceRun.objects.create(
        kind="cleanup",
        params_key=secrets.token_hex(8),
        status=status,
        dry_run=dry_run,
        batch_size=1000,
        interval=0,
        cutoff=finished_at - timedelta(minutes=5),
        trigger="beat",
        started_at=finished_at - timedelta(minutes=5),
        finished_at=finished_at,
    )


@pytest.fixture(autouse=True)
def no_schedule(request):
    """Each test starts from no beat entry (migrate installs the default one in the test database)."""
    if "db" in request.fixturenames or request.node.get_closest_marker("django_db"):
        request.getfixturevalue("db")
        PeriodicTask.objects.all().delete()


def get_json(client, url: str = URL):
    response = client.get(url)
    return response.status_code, response.json()


@pytest.mark.django_db
def test_healthy_with_reachable_services_fresh_schedule_and_live_tokens(admin_client, empty_broker):
    app = make_app()
    make_access_tokens(app, 3, expires_in=3600)
    install_fresh_schedule()

    status, body = get_json(admin_client)

    assert status == 200, body
    assert body["status"] == "healthy", body
    checks = body["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["database"]["vendor"] == connection.vendor
    assert checks["broker"] == {**checks["broker"], "status": "ok", "backlog": 0, "queue": "maintenance"}
    access = checks["tokens"]["tables"]["access_tokens"]
    assert access == {"total": 3, "active": 3, "expired": 0, "expired_ratio": 0.0, "exact": True}
    assert checks["cleanup"]["status"] == "ok"
    assert checks["cleanup"]["schedule"]["task"] == CLEANUP_TASK_NAME
    assert checks["beat"]["status"] == "ok"
    assert checks["beat"]["last_seen"] is not None


@pytest.mark.django_db
def test_expired_ratio_above_the_threshold_is_a_warning_not_an_outage(admin_client, empty_broker, settings):
    app = make_app()
    make_access_tokens(app, 3, expires_in=-60)
    make_access_tokens(app, 1, expires_in=3600)
    install_fresh_schedule()

    status, body = get_json(admin_client)

    assert status == 200
    assert body["status"] == "warning"
    tokens = body["checks"]["tokens"]
    assert tokens["status"] == "warning"
    assert tokens["tables"]["access_tokens"] == {
        "total": 4,
        "active": 1,
        "expired": 3,
        "expired_ratio": 0.75,
        "exact": True,
    }
    assert "access_tokens" in tokens["message"]

    settings.OAUTH_MAINTENANCE = {"HEALTH_COUNT_CACHE_SECONDS": 0, "HEALTH_EXPIRED_RATIO_WARNING": 0.8}
    status, body = get_json(admin_client)
    assert body["checks"]["tokens"]["status"] == "ok"
    assert body["status"] == "healthy"


@pytest.mark.django_db
def test_revoked_refresh_tokens_are_reported_without_a_warning(admin_client, empty_broker):
    app = make_app()
    user = get_user_model().objects.create_user("owner")
    get_refresh_token_model().objects.create(
        application=app, user=user, token=secrets.token_urlsafe(24), revoked=timezone.now()
    )
    install_fresh_schedule()

    status, body = get_json(admin_client)

    refresh = body["checks"]["tokens"]["tables"]["refresh_tokens"]
    assert refresh["revoked"] == 1 and refresh["revoked_ratio"] == 1.0
    assert body["checks"]["tokens"]["status"] == "ok"
    assert status == 200


@pytest.mark.django_db
def test_a_cleanup_overdue_against_its_crontab_is_a_warning(admin_client, empty_broker):
    cleanup = install_fresh_schedule()
    # Installed three days ago, daily at 03:00, and no run ever succeeded.
    PeriodicTask.objects.filter(pk=cleanup.pk).update(date_changed=timezone.now() - timedelta(days=3))

    status, body = get_json(admin_client)

    assert status == 200
    assert body["status"] == "warning"
    assert body["checks"]["cleanup"]["status"] == "warning"
    assert body["checks"]["cleanup"]["last_success"] is None
    assert (
        "overdue" in body["checks"]["cleanup"]["message"]
        or "no successful" in body["checks"]["cleanup"]["message"]
    )


@pytest.mark.django_db
def test_the_last_successful_cleanup_is_measured_against_the_schedule(admin_client, empty_broker):
    cleanup = install_fresh_schedule()
    PeriodicTask.objects.filter(pk=cleanup.pk).update(date_changed=timezone.now() - timedelta(days=30))
    now = timezone.now()
    record_cleanup_run(now - timedelta(days=3))
    # Newer runs that did not succeed, or only pretended to, do not count.
    record_cleanup_run(now - timedelta(hours=1), status="failed")
    record_cleanup_run(now - timedelta(hours=1), dry_run=True)

    status, body = get_json(admin_client)
    cleanup_check = body["checks"]["cleanup"]
    assert cleanup_check["status"] == "warning"
    assert cleanup_check["age_seconds"] >= 3 * 86400
    assert "overdue" in cleanup_check["message"]

    record_cleanup_run(now - timedelta(minutes=10))
    status, body = get_json(admin_client)
    cleanup_check = body["checks"]["cleanup"]
    assert cleanup_check["status"] == "ok", cleanup_check
    assert cleanup_check["age_seconds"] < 86400
    assert status == 200


@pytest.mark.django_db
def test_without_a_cleanup_schedule_the_configured_maximum_age_applies(admin_client, empty_broker):
    status, body = get_json(admin_client)

    cleanup = body["checks"]["cleanup"]
    assert cleanup["status"] == "warning"
    assert cleanup["schedule"] is None
    assert cleanup["max_age_seconds"] == 26 * 3600
    assert body["checks"]["beat"]["status"] == "warning"


@pytest.mark.django_db
def test_a_late_beat_entry_means_beat_is_not_running(admin_client, empty_broker):
    install_fresh_schedule()
    watchdog = PeriodicTask.objects.get(task=WATCHDOG_TASK_NAME)
    PeriodicTask.objects.filter(pk=watchdog.pk).update(last_run_at=timezone.now() - timedelta(hours=2))

    status, body = get_json(admin_client)

    beat = body["checks"]["beat"]
    assert beat["status"] == "warning"
    assert beat["late_entries"] == [watchdog.name]
    assert beat["seconds_since"] >= 7200
    assert status == 200


@pytest.mark.django_db
def test_backlog_is_the_number_of_messages_waiting_in_the_maintenance_queue(
    admin_client, empty_broker, celery_app, maintenance_settings, settings
):
    install_fresh_schedule()
    for _ in range(3):
        celery_app.send_task("oauth_tasks.health_probe_never_consumed", queue="maintenance")
    # A message on another queue is not the maintenance backlog.
    celery_app.send_task("oauth_tasks.health_probe_never_consumed", queue="celery")

    status, body = get_json(admin_client)
    assert body["checks"]["broker"]["backlog"] == 3
    assert body["checks"]["broker"]["status"] == "ok"

    settings.OAUTH_MAINTENANCE = {"HEALTH_COUNT_CACHE_SECONDS": 0, "HEALTH_QUEUE_BACKLOG_WARNING": 2}
    status, body = get_json(admin_client)
    assert body["checks"]["broker"]["status"] == "warning"
    assert body["status"] == "warning"
    assert status == 200


@pytest.mark.django_db
def test_503_when_the_broker_is_down(admin_client, celery_app, monkeypatch):
    install_fresh_schedule()
    closed = f"redis://127.0.0.1:{free_port()}/0"
    # Celery reads CELERY_BROKER_URL before its configuration, as the worker does.
    monkeypatch.setenv("CELERY_BROKER_URL", closed)
    monkeypatch.setitem(celery_app.conf, "broker_url", closed)

    status, body = get_json(admin_client)

    assert status == 503, body["checks"]["broker"]
    assert body["status"] == "unhealthy"
    assert body["checks"]["broker"]["status"] == "error"
    assert "Connection" in body["checks"]["broker"]["error"]
    # The database side still answers.
    assert body["checks"]["database"]["status"] == "ok"


@pytest.fixture
def broken_database(transactional_db):
    """The default connection pointed at a database that cannot be opened, for the test's duration."""
    original = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict["HOST"] = "127.0.0.1"
        connection.settings_dict["PORT"] = str(free_port())
    else:
        connection.settings_dict["NAME"] = f"/nonexistent-{secrets.token_hex(4)}/db.sqlite3"
    yield
    connection.close()
    connection.settings_dict.clear()
    connection.settings_dict.update(original)
    connection.ensure_connection()


def test_503_when_the_database_is_down(broken_database, client):
    status, body = get_json(client)

    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"] == {"status": "error", "reason": "database_unreachable"}
    # Checks that read the database are skipped, not reported as five more failures.
    assert body["checks"]["tokens"] == {"status": "skipped", "reason": "database_unreachable"}
    assert body["checks"]["cleanup"] == {"status": "skipped", "reason": "database_unreachable"}


def test_the_database_error_is_described_without_connection_secrets(broken_database):
    report = health.run_health_checks(["database", "tokens"])

    assert report["status"] == "unhealthy"
    assert report["checks"]["database"]["status"] == "error"
    assert "OperationalError" in report["checks"]["database"]["error"]
    assert report["checks"]["tokens"]["status"] == "skipped"
    password = connection.settings_dict.get("PASSWORD")
    if password:
        assert password not in report["checks"]["database"]["error"]


@pytest.mark.django_db
def test_anonymous_callers_see_statuses_only(client, empty_broker):
    make_access_tokens(make_app(), 2, expires_in=3600)

    status, body = get_json(client)

    assert set(body) == {"status", "time", "checks"}
    assert body["checks"]["tokens"] == {"status": "ok"}
    assert body["checks"]["broker"] == {"status": "ok"}


@pytest.mark.django_db
def test_anonymous_callers_see_why_a_check_warns_as_a_code_without_numbers(client, empty_broker):
    make_access_tokens(make_app(), 3, expires_in=-60)
    make_access_tokens(make_app(), 1, expires_in=3600)

    status, body = get_json(client)

    assert status == 200 and body["status"] == "warning"
    assert body["checks"]["tokens"] == {"status": "warning", "reason": "expired_share_high"}
    assert body["checks"]["cleanup"] == {"status": "warning", "reason": "no_cleanup_recorded"}
    assert not re.search(r"\d", json.dumps(body["checks"]))


@pytest.mark.django_db
def test_check_parameter_runs_only_the_named_checks(admin_client, empty_broker):
    status, body = get_json(admin_client, URL + "?check=database")
    assert status == 200
    assert set(body["checks"]) == {"database"}
    assert body["status"] == "healthy"

    response = admin_client.get(URL + "?check=database,nonsense")
    assert response.status_code == 400
    assert "nonsense" in response.json()["error"]


@pytest.mark.django_db
def test_token_counts_are_cached_for_the_configured_seconds(settings):
    app = make_app()
    make_access_tokens(app, 1, expires_in=3600)
    settings.OAUTH_MAINTENANCE = {"HEALTH_COUNT_CACHE_SECONDS": 300}
    from django.core.cache import cache

    cache.delete("oauth_tasks:health:token_counts:default")
    try:
        first = health.token_counts()["access_tokens"]["total"]
        make_access_tokens(app, 2, expires_in=3600)
        cached = health.token_counts()["access_tokens"]["total"]
        settings.OAUTH_MAINTENANCE = {"HEALTH_COUNT_CACHE_SECONDS": 0}
        fresh = health.token_counts()["access_tokens"]["total"]
    finally:
        cache.delete("oauth_tasks:health:token_counts:default")
    assert (first, cached, fresh) == (1, 1, 3)


@pytest.mark.django_db
def test_large_tables_on_postgresql_use_the_planner_beyond_the_exact_limit(settings):
    if connection.vendor != "postgresql":
        pytest.skip("planner estimates are PostgreSQL's; SQLite counts exactly")
    app = make_app()
    make_access_tokens(app, 30, expires_in=-60)
    make_access_tokens(app, 10, expires_in=3600)
    model = get_access_token_model()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")

    settings.OAUTH_MAINTENANCE = {"HEALTH_EXACT_COUNT_LIMIT": 1000}
    exact = health.count_rows(model, health.Q(expires__lt=timezone.now()))
    settings.OAUTH_MAINTENANCE = {"HEALTH_EXACT_COUNT_LIMIT": 5}
    estimated = health.count_rows(model, health.Q(expires__lt=timezone.now()))

    assert exact == {"total": 40, "stale": 30, "ratio": 0.75, "exact": True}
    assert estimated["exact"] is False
    # ANALYZE read every row of so small a table: the estimate of the total is the count.
    assert estimated["total"] == 40
    assert 5 <= estimated["stale"] <= estimated["total"]


@pytest.mark.django_db
def test_sqlite_counts_exactly_whatever_the_limit(settings):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    app = make_app()
    make_access_tokens(app, 7, expires_in=-60)
    settings.OAUTH_MAINTENANCE = {"HEALTH_EXACT_COUNT_LIMIT": 2}

    counts = health.count_rows(get_access_token_model(), health.Q(expires__lt=timezone.now()))

    assert counts == {"total": 7, "stale": 7, "ratio": 1.0, "exact": True}


def test_a_negative_setting_is_improperly_configured(settings):
    from django.core.exceptions import ImproperlyConfigured

    from oauth_tasks.conf import maintenance_settings

    settings.OAUTH_MAINTENANCE = {"HEALTH_EXPIRED_RATIO_WARNING": -1}
    with pytest.raises(ImproperlyConfigured, match="HEALTH_EXPIRED_RATIO_WARNING"):
        maintenance_settings.HEALTH_EXPIRED_RATIO_WARNING
