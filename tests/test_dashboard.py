"""The maintenance dashboard: progress against the estimate made at dispatch, the cleanup button,
cancel and resume, the charts and the next scheduled cleanup; and the run pages' "N of about M"."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from oauth_provider import cleanup
from oauth_tasks import engine
from oauth_tasks.models import MaintenanceRun, RunStatus, TokenTableSnapshot
from oauth_tasks.progress import run_progress
from tests.conftest import wait_until
from tests.factories import make_access_token, make_application, make_grant, make_user
from tests.test_engine_dispatch import drive

DASHBOARD = "admin:oauth_tasks_maintenancedashboard_changelist"
POLL = "admin:oauth_tasks_dashboard_poll"
CLEANUP = "admin:oauth_tasks_dashboard_cleanup"


@pytest.fixture
def operator_client(client):
    client.force_login(get_user_model().objects.create_superuser("operator", "op@example.com", "pw-12345!"))
    return client


def expired_rows(access_tokens: int = 7, grants: int = 3) -> None:
    application = make_application()
    user = make_user()
    for _ in range(access_tokens):
        make_access_token(application, user, expires_in=-60)
    make_access_token(application, user, expires_in=3600)  # live: kept, not estimated
    for _ in range(grants):
        make_grant(application, user, expires_in=-60)


@pytest.mark.django_db
def test_dispatch_estimates_per_phase_what_the_run_then_deletes():
    expired_rows(access_tokens=7, grants=3)

    run, _ = engine.dispatch("cleanup", {}, trigger="admin", batch_size=2)

    assert run.estimated_counts[cleanup.ACCESS_TOKENS] == 7
    assert run.estimated_counts[cleanup.GRANTS] == 3
    assert run.estimated_total == 10
    assert run_progress(run).summary == "0 of about 10 rows (0 %)"
    run = drive(run)
    assert run.counts[cleanup.ACCESS_TOKENS] == 7 and run.counts[cleanup.GRANTS] == 3
    progress = run_progress(run)
    assert (progress.percent, progress.done, progress.estimated_total) == (100.0, 10, 10)
    assert run.batch_number > 1 and run.slowest_batch_seconds > 0
    assert run.busy_seconds >= run.slowest_batch_seconds


def running_cleanup(**fields) -> MaintenanceRun:
    """A cleanup run row in the middle of its work, as a worker leaves it between two batches."""
    return MaintenanceRun.objects.create(
        kind="cleanup",
        params={},
        params_key="x",
        status=RunStatus.RUNNING,
        batch_size=10,
        interval=0,
        cutoff=timezone.now(),
        trigger="admin",
        **fields,
    )


@pytest.mark.django_db
def test_progress_mid_run_gives_percent_rate_and_eta():
    run = running_cleanup(
        started_at=timezone.now() - timezone.timedelta(seconds=10),
        heartbeat_at=timezone.now(),
        counts={"access_tokens": 250},
        estimated_counts={"access_tokens": 1000},
    )

    progress = run_progress(run)

    assert progress.percent == 25.0
    assert 20 <= progress.rows_per_second <= 25
    assert 29 <= progress.eta_seconds <= 38  # 750 rows left at about 25 rows/s
    assert progress.summary == "250 of about 1,000 rows (25 %)"


@pytest.mark.django_db
def test_a_run_that_finishes_while_the_run_list_is_read_is_listed_once_as_finished():
    """The list reads active runs, then recently finished ones: a run finishing in between (its
    last batch committed by a worker) is in both reads. The page once showed it twice, one bar
    stuck short of 100 %."""
    from django.db import connection

    from oauth_tasks.dashboard import current_runs

    run = running_cleanup(started_at=timezone.now(), counts={"grants": 3}, estimated_counts={"grants": 5})
    table = connection.ops.quote_name(MaintenanceRun._meta.db_table)
    finished = []

    def finish_after_the_active_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if (
            not finished
            and sql.startswith("SELECT")
            and table in sql
            and "finished_at" not in sql.split("WHERE")[-1]
        ):
            finished.append(True)
            with connection.cursor() as cursor:  # what the worker's last batch commits
                cursor.execute(
                    f"UPDATE {table} SET status = %s, finished_at = %s, counts = %s, active_key = NULL"
                    " WHERE id = %s",
                    [RunStatus.SUCCEEDED, timezone.now(), '{"grants": 5}', run.pk],
                )
        return result

    with connection.execute_wrapper(finish_after_the_active_read):
        listed = current_runs()

    assert finished, "the active runs were never read"
    rows = [(listed_run.pk, listed_run.status, progress.percent) for listed_run, progress in listed]
    assert rows == [(run.pk, RunStatus.SUCCEEDED, 100.0)]


@pytest.mark.django_db
def test_a_run_beyond_its_estimate_shows_99_percent_until_it_finishes():
    run = MaintenanceRun(status=RunStatus.RUNNING, counts={"grants": 50}, estimated_counts={"grants": 10})

    assert run_progress(run).percent == 99.0


@pytest.mark.django_db
def test_a_cleanup_dispatch_records_todays_table_snapshot():
    expired_rows(access_tokens=3, grants=1)

    engine.dispatch("cleanup", {}, trigger="admin")

    snapshot = TokenTableSnapshot.objects.get(day=timezone.localdate())
    assert snapshot.tables["access_tokens"]["total"] == 4
    assert snapshot.tables["access_tokens"]["expired"] == 3
    assert snapshot.tables["grants"]["expired_ratio"] == 1.0


@pytest.mark.django_db
def test_a_dry_run_dispatch_records_no_snapshot():
    engine.dispatch("cleanup", {}, trigger="admin", dry_run=True)

    assert not TokenTableSnapshot.objects.exists()


@pytest.mark.django_db
def test_dashboard_shows_runs_with_bars_charts_and_the_next_scheduled_cleanup(operator_client):
    expired_rows(access_tokens=4, grants=0)
    finished, _ = engine.dispatch("cleanup", {}, trigger="admin", batch_size=2)
    drive(finished)
    active, _ = engine.dispatch("cleanup", {}, trigger="admin", dry_run=True)

    response = operator_client.get(reverse(DASHBOARD))

    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-run-id="{active.pk}"' in html and f'data-run-id="{finished.pk}"' in html
    assert 'aria-valuenow="100"' in html
    assert "4 of about 4 rows (100 %)" in html
    assert html.count('<svg class="chart"') == 4
    assert "Rows removed by cleanup per day" in html
    assert re.search(r"<title>\d\d \w\w\w: 4 rows removed</title>", html)
    assert 'id="nextCleanup">' in html and "oauth_tasks: daily cleanup of expired tokens" in html
    assert 'id="runCleanup"' in html
    assert "<script src" not in html.split('id="content-main"')[1]  # no external script


@pytest.mark.django_db
def test_poll_document_follows_the_runs(operator_client):
    expired_rows(access_tokens=4, grants=0)
    run, _ = engine.dispatch("cleanup", {}, trigger="admin", batch_size=2)

    before = operator_client.get(reverse(POLL)).json()
    drive(run)
    after = operator_client.get(reverse(POLL)).json()

    [row] = [r for r in before["runs"] if r["run_id"] == run.pk]
    assert (row["status"], row["percent"], row["estimated_total"]) == ("pending", 0.0, 4)
    [row] = [r for r in after["runs"] if r["run_id"] == run.pk]
    assert (row["status"], row["percent"], row["done"]) == ("succeeded", 100.0, 4)
    assert row["summary"] == "4 of about 4 rows (100 %)"


@pytest.mark.django_db
def test_a_stalled_run_is_marked_stalled_on_the_dashboard(operator_client):
    run, _ = engine.dispatch("cleanup", {}, trigger="admin")
    MaintenanceRun.objects.filter(pk=run.pk).update(
        next_batch_at=timezone.now() - timezone.timedelta(hours=1)
    )

    html = operator_client.get(reverse(DASHBOARD)).content.decode()
    row = operator_client.get(reverse(POLL)).json()["runs"][0]

    assert f'<tr data-run-id="{run.pk}" data-status="pending-stalled" class="pending stalled">' in html
    assert row["stalled"] is True


@pytest.mark.django_db
def test_run_cleanup_now_button_dispatches_a_run_and_a_dry_run(operator_client):
    response = operator_client.post(reverse(CLEANUP), {"dry_run": "on"})
    assert response.status_code == 302
    dry = MaintenanceRun.objects.get()
    assert (dry.kind, dry.dry_run, dry.trigger, dry.triggered_by) == ("cleanup", True, "admin", "operator")

    operator_client.post(reverse(CLEANUP))
    operator_client.post(reverse(CLEANUP))  # a second click gets the same run back

    assert MaintenanceRun.objects.filter(dry_run=False).count() == 1
    assert operator_client.get(reverse(CLEANUP)).status_code == 405


@pytest.mark.django_db
def test_cancel_and_resume_buttons_go_through_the_engine(operator_client):
    run, _ = engine.dispatch("cleanup", {}, trigger="admin")

    operator_client.post(reverse("admin:oauth_tasks_dashboard_run", args=[run.pk, "cancel"]))
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    operator_client.post(reverse("admin:oauth_tasks_dashboard_run", args=[run.pk, "resume"]))
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING
    response = operator_client.post(reverse("admin:oauth_tasks_dashboard_run", args=[run.pk, "delete"]))
    assert response.status_code == 404


@pytest.mark.django_db
def test_view_only_staff_sees_the_dashboard_but_cannot_start_or_cancel(client):
    user = get_user_model().objects.create_user("viewer", password="pw-12345!", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_maintenancerun"))
    client.force_login(user)
    run, _ = engine.dispatch("cleanup", {}, trigger="admin")

    page = client.get(reverse(DASHBOARD))

    assert page.status_code == 200 and 'id="runCleanup"' not in page.content.decode()
    assert client.post(reverse(CLEANUP)).status_code == 403
    assert client.post(reverse("admin:oauth_tasks_dashboard_run", args=[run.pk, "cancel"])).status_code == 403
    assert MaintenanceRun.objects.get(pk=run.pk).status == RunStatus.PENDING


@pytest.mark.django_db
def test_staff_without_run_permissions_cannot_see_the_dashboard(client):
    client.force_login(get_user_model().objects.create_user("staff", password="pw-12345!", is_staff=True))

    assert client.get(reverse(DASHBOARD)).status_code == 403
    assert client.get(reverse(POLL)).status_code == 403


@pytest.mark.django_db
def test_the_dashboard_is_listed_in_the_maintenance_section_of_the_admin(operator_client):
    html = operator_client.get(reverse("admin:index")).content.decode()

    assert f'href="{reverse(DASHBOARD)}"' in html


# --- in a real browser -----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_browser_run_cleanup_now_and_watch_the_bar_reach_100(live_server, worker, page, screenshot):
    get_user_model().objects.create_superuser("operator", "op@example.com", "pw-12345!")
    expired_rows(access_tokens=30, grants=5)
    page.goto(f"{live_server.url}/admin/login/?next={reverse(DASHBOARD)}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw-12345!")
    page.click("input[type=submit]")
    page.wait_for_selector("#runCleanup")

    page.click("#runCleanup")

    run = wait_until(lambda: MaintenanceRun.objects.filter(kind="cleanup", dry_run=False).first())
    bar = page.locator(f'tr[data-run-id="{run.pk}"] [role=progressbar]')
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    assert "35 of about 35 rows (100 %)" in page.inner_text(f'tr[data-run-id="{run.pk}"]')
    screenshot(page, "dashboard")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_every_admin_page_the_project_adds_opens_without_a_server_error(live_server, page):
    from oauth_provider.models import get_application_model

    get_user_model().objects.create_superuser("operator", "op@example.com", "pw-12345!")
    expired_rows(access_tokens=1, grants=1)
    run, _ = engine.dispatch("cleanup", {}, trigger="admin")
    application = get_application_model().objects.first()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw-12345!")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    sections = ("oauth_tasks", "oauth_provider", "django_celery_beat")
    listed = page.eval_on_selector_all("#content-main a", "links => links.map(a => a.getAttribute('href'))")
    urls = sorted({url for url in listed if url and any(f"/admin/{s}/" in url for s in sections)})
    urls += [
        reverse("admin:oauth_tasks_maintenancerun_change", args=[run.pk]),
        reverse("admin:oauth_tasks_maintenancerun_rename_scope"),
        reverse("admin:oauth_provider_application_change", args=[application.pk]),
        reverse(POLL),
    ]

    failures = {}
    for url in urls:
        response = page.goto(f"{live_server.url}{url}")
        if response.status >= 400:
            failures[url] = response.status
    assert len(urls) > 15
    assert failures == {}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_the_runs_list_fits_a_1280_px_screen(live_server, page):
    get_user_model().objects.create_superuser("operator", "op@example.com", "pw-12345!")
    expired_rows(access_tokens=3, grants=1)
    drive(engine.dispatch("cleanup", {}, trigger="admin", batch_size=1)[0])
    engine.dispatch("cleanup", {"only": ["tokens", "id_tokens"], "keep_if_younger": "30d"}, trigger="api")
    engine.dispatch("cleanup", {}, trigger="admin", dry_run=True)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw-12345!")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}{reverse('admin:oauth_tasks_maintenancerun_changelist')}")

    assert page.locator("#result_list tbody tr").count() == 3
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert page.evaluate("document.querySelector('#result_list').getBoundingClientRect().right") <= 1280
