"""The runs admin: a logged-in operator sees progress and cancels or resumes through the engine."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from oauth_tasks import engine
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import wait_until


@pytest.fixture
def operator_client(client):
    admin = get_user_model().objects.create_superuser("operator", "op@example.com", "pw-12345!")
    client.force_login(admin)
    return client


@pytest.mark.django_db(transaction=True)
def test_changelist_shows_kind_status_progress_and_counts(operator_client):
    run, _ = engine.dispatch("cleanup", {}, trigger="admin", batch_size=50)
    MaintenanceRun.objects.filter(pk=run.pk).update(
        counts={"access_tokens": 1234, "grants": 5}, batch_number=7, status=RunStatus.RUNNING
    )
    response = operator_client.get(reverse("admin:oauth_tasks_maintenancerun_changelist"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "cleanup" in body and "running" in body.lower()
    assert "1,239 of about 0 rows" in body  # nothing to delete was estimated at dispatch
    assert "batch 7" in body
    detail = operator_client.get(reverse("admin:oauth_tasks_maintenancerun_change", args=[run.pk]))
    assert detail.status_code == 200
    assert "access_tokens: 1234" in detail.content.decode()


@pytest.mark.django_db(transaction=True)
def test_cancel_then_resume_actions_go_through_the_engine(operator_client, worker_factory):
    run, _ = engine.dispatch("cleanup", {}, trigger="admin", batch_size=50)
    url = reverse("admin:oauth_tasks_maintenancerun_changelist")

    response = operator_client.post(url, {"action": "cancel_runs", "_selected_action": [run.pk]}, follow=True)
    assert response.status_code == 200
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "cancelled by operator" in run.last_error

    response = operator_client.post(url, {"action": "resume_runs", "_selected_action": [run.pk]}, follow=True)
    assert "1 run(s) resumed." in response.content.decode()
    run.refresh_from_db()
    assert run.status in (RunStatus.PENDING, RunStatus.RUNNING)

    # The resumed run's batch message is on the broker: a worker finishes it.
    worker_factory()
    wait_until(
        lambda: MaintenanceRun.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED,
        message="the resumed run to succeed",
    )


@pytest.mark.django_db(transaction=True)
def test_a_user_without_staff_rights_cannot_see_runs(client):
    user = get_user_model().objects.create_user("plain", password="pw-12345!")
    client.force_login(user)
    response = client.get(reverse("admin:oauth_tasks_maintenancerun_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
