"""A run whose next batch is overdue reads as stalled everywhere an operator looks, until a batch commits.

No worker here: the run's message waits in the broker, the test moves ``next_batch_at`` into the
past as a lost message would leave it, and the batch that ends the stall runs in process.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from oauth_tasks import engine
from oauth_tasks.models import MaintenanceRun
from tests.conftest import make_expired_grants

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    admin = get_user_model().objects.create_superuser("operator", "op@example.com", "pw-12345!")
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
    return client


def overdue_run(seconds: float) -> MaintenanceRun:
    make_expired_grants(3)
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=2)
    past = timezone.now() - timedelta(seconds=seconds)
    MaintenanceRun.objects.filter(pk=run.pk).update(next_batch_at=past, heartbeat_at=past)
    run.refresh_from_db()
    return run


def test_a_run_within_the_stall_margin_is_not_stalled(operator_client):
    run = overdue_run(5)  # late, but less than the 15 s margin: a busy worker, not a lost batch
    assert not run.is_stalled and run.display_status == "pending"
    body = operator_client.get(f"/maintenance/api/runs/{run.pk}/").json()
    assert body["stalled"] is False and body["display_status"] == "pending"
    health = operator_client.get("/maintenance/health/?check=runs").json()
    assert health["checks"]["runs"]["status"] == "ok"


def test_a_stalled_run_shows_in_the_api_admin_and_health_until_a_batch_commits(operator_client):
    run = overdue_run(120)
    other = overdue_run_of_another_kind()

    body = operator_client.get(f"/maintenance/api/runs/{run.pk}/").json()
    assert body["status"] == "pending" and body["stalled"] is True and body["display_status"] == "stalled"
    listing = operator_client.get("/maintenance/api/runs/").json()
    assert any(r["id"] == run.pk and r["stalled"] for r in listing["runs"])

    changelist = operator_client.get(reverse("admin:oauth_tasks_maintenancerun_changelist")).content.decode()
    assert "stalled</strong> (pending" in changelist
    page = operator_client.get(reverse("admin:oauth_tasks_maintenancerun_change", args=[run.pk]))
    assert "stalled</strong> (pending" in page.content.decode()

    health = operator_client.get("/maintenance/health/")
    assert health.status_code == 200
    report = health.json()
    assert report["status"] == "warning"
    runs = report["checks"]["runs"]
    assert runs["status"] == "warning"
    assert [s["run_id"] for s in runs["stalled"]] == [run.pk, other.pk]
    assert f"run #{run.pk} (cleanup" in runs["message"]

    # The watchdog's copy does not end the stall; a committed batch does.
    assert engine.requeue_stalled_runs() == [run.pk, other.pk]
    assert MaintenanceRun.objects.get(pk=run.pk).is_stalled
    engine.run_batch(run.pk, run.batch_number)
    run.refresh_from_db()
    assert not run.is_stalled
    assert operator_client.get(f"/maintenance/api/runs/{run.pk}/").json()["stalled"] is False
    runs = operator_client.get("/maintenance/health/?check=runs").json()["checks"]["runs"]
    assert [s["run_id"] for s in runs["stalled"]] == [other.pk]


def overdue_run_of_another_kind() -> MaintenanceRun:
    run, _ = engine.dispatch("cleanup", {}, trigger="test", dry_run=True)
    past = timezone.now() - timedelta(seconds=60)
    MaintenanceRun.objects.filter(pk=run.pk).update(next_batch_at=past, heartbeat_at=past)
    return run


def test_anonymous_health_says_warning_without_naming_runs(client):
    overdue_run(120)
    body = client.get("/maintenance/health/").json()
    assert body["status"] == "warning"
    assert body["checks"]["runs"]["status"] == "warning"
    assert "stalled" not in body["checks"]["runs"] and "message" not in body["checks"]["runs"]
