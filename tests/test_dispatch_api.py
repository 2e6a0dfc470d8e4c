"""The dispatch API under /maintenance/api/: who may call it, what it validates, what it answers.

Requests go through Django's full stack (middleware included: sessions, CSRF, the bearer token
middleware). Session tests use a client that enforces CSRF like a browser would.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from oauth_provider.models import RevocationWatermark, get_application_model
from oauth_tasks import engine
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import wait_until
from tests.factories import make_access_token, make_application, make_user
from tests.test_endpoints_support import PASSWORD, make_client

pytestmark = pytest.mark.django_db

JOBS = "/maintenance/api/jobs/"
RUNS = "/maintenance/api/runs/"
CSRF = "k" * 32  # a CSRF secret; cookie and header carry the same value


def staff(username: str, *codenames: str, is_staff: bool = True, **extra):
    user = make_user(username, is_staff=is_staff, **extra)
    user.set_password(PASSWORD)
    user.save()
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="oauth_tasks", codename=codename)
        )
    return get_user_model().objects.get(pk=user.pk)  # a fresh object: no cached permissions


ALL = ("view_maintenancerun", "add_maintenancerun", "change_maintenancerun")


def session(user=None, csrf: bool = True) -> Client:
    """A browser-like client: CSRF enforced; with ``csrf`` its requests carry the token."""
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        # As the admin's login form does: authenticated by the model backend.
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    if csrf:
        client.cookies["csrftoken"] = CSRF
        client.defaults["HTTP_X_CSRFTOKEN"] = CSRF
    return client


def bearer(token: str) -> Client:
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}")


def post_json(client: Client, url: str, body) -> object:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json")


@pytest.fixture
def app():
    return make_application(name="leaky")


@pytest.fixture
def api_log():
    """The records of the ``oauth_tasks.api`` logger (which does not propagate to the root)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger("oauth_tasks.api")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def revoke_body(app, **extra) -> dict:
    return {"kind": "revoke", "params": {"application": app.client_id}, **extra}


# ------------------------------------------------------------------------------------------------
# Who may call


def test_anonymous_gets_401_with_a_bearer_challenge_and_the_refusal_is_logged(app, api_log):
    for response in (Client().get(JOBS), post_json(Client(), RUNS, revoke_body(app))):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer ")
        assert 'scope="maintenance"' in response["WWW-Authenticate"]
        assert response.json()["error"] == "unauthenticated"
    assert [r.status for r in api_log if getattr(r, "event", "") == "api_refused"] == [401, 401]
    assert not MaintenanceRun.objects.exists()


@pytest.mark.parametrize(
    "who, expected_get, expected_post",
    [
        ("plain user", 403, 403),
        ("staff without permission", 403, 403),
        ("staff who may only view", 200, 403),
        ("staff who may only start", 403, 202),
        ("staff with the permissions", 200, 202),
        ("inactive staff", 401, 401),
        ("superuser", 200, 202),
    ],
)
def test_the_session_permission_matrix(app, api_log, who, expected_get, expected_post):
    user = {
        "plain user": lambda: staff("plain", *ALL, is_staff=False),
        "staff without permission": lambda: staff("bare"),
        "staff who may only view": lambda: staff("viewer", "view_maintenancerun"),
        "staff who may only start": lambda: staff("starter", "add_maintenancerun"),
        "staff with the permissions": lambda: staff("operator", *ALL),
        "inactive staff": lambda: staff("gone", *ALL, is_active=False),
        "superuser": lambda: staff("root", is_superuser=True),
    }[who]()
    client = session(user)
    assert client.get(JOBS).status_code == expected_get
    response = post_json(client, RUNS, revoke_body(app))
    assert response.status_code == expected_post, response.content
    assert MaintenanceRun.objects.count() == (1 if expected_post == 202 else 0)
    refusals = [r for r in api_log if getattr(r, "event", "") == "api_refused"]
    assert len(refusals) == (expected_get != 200) + (expected_post != 202)


def test_a_session_post_without_the_csrf_token_is_refused(app, api_log):
    user = staff("operator", *ALL)
    response = post_json(session(user, csrf=False), RUNS, revoke_body(app))
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
    assert not MaintenanceRun.objects.exists() and not RevocationWatermark.objects.exists()
    assert any(r.status == 403 and r.error == "csrf_failed" for r in api_log if hasattr(r, "error"))
    # A GET needs no CSRF token; the same POST with it is accepted.
    assert session(user, csrf=False).get(JOBS).status_code == 200
    assert post_json(session(user), RUNS, revoke_body(app)).status_code == 202


@pytest.mark.parametrize(
    "case, status, error",
    [
        ("scope, staff, permission", 202, None),
        ("scope among others", 202, None),
        ("no maintenance scope", 403, "insufficient_scope"),
        ("client credentials token (no user)", 403, "forbidden"),
        ("scope, staff without permission", 403, "forbidden"),
        ("scope, not staff", 403, "forbidden"),
        ("expired token", 401, "invalid_token"),
        ("unknown token", 401, "invalid_token"),
    ],
)
def test_the_bearer_token_permission_matrix(app, api_log, case, status, error):
    client_app = make_application(name="ops-cli")
    operator = staff("operator", *ALL)
    token_args = {
        "scope, staff, permission": (operator, "maintenance", 3600),
        "scope among others": (operator, "read maintenance write", 3600),
        "no maintenance scope": (operator, "read write", 3600),
        "client credentials token (no user)": (None, "maintenance", 3600),
        "scope, staff without permission": (staff("bare"), "maintenance", 3600),
        "scope, not staff": (staff("plain", *ALL, is_staff=False), "maintenance", 3600),
        "expired token": (operator, "maintenance", -60),
        "unknown token": None,
    }[case]
    if token_args is None:
        raw = "not-a-token-of-this-provider"
    else:
        user, scope, expires_in = token_args
        raw = make_access_token(client_app, user, scope=scope, expires_in=expires_in).token
    response = post_json(bearer(raw), RUNS, revoke_body(app))
    assert response.status_code == status, response.content
    if error:
        assert response.json()["error"] == error
        assert not MaintenanceRun.objects.exists()
        refusal = [r for r in api_log if getattr(r, "event", "") == "api_refused"]
        assert len(refusal) == 1 and raw not in refusal[0].getMessage()
        if status == 401:
            assert "invalid_token" in response["WWW-Authenticate"]
        if error == "insufficient_scope":
            assert 'scope="maintenance"' in response["WWW-Authenticate"]
    else:
        run = MaintenanceRun.objects.get()
        assert run.trigger == "api" and run.triggered_by.startswith("operator (bearer, client ")
        # Bearer requests need no CSRF token: the credential is a header no other site can set.
        assert bearer(raw).get(f"{RUNS}{run.pk}/").json()["id"] == run.pk


def test_a_token_from_the_token_endpoint_with_the_maintenance_scope_can_start_a_run(app):
    """The README's curl recipe, through Django's stack: password grant, then POST."""
    staff("operator", *ALL)
    cli = make_client(name="ops-cli", authorization_grant_type="password", redirect_uris="")
    basic = base64.b64encode(f"{cli.client_id}:{cli.secret}".encode()).decode()
    token = Client().post(
        "/o/token/",
        {"grant_type": "password", "username": "operator", "password": PASSWORD, "scope": "maintenance"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert token.status_code == 200, token.content
    assert token.json()["scope"] == "maintenance"
    response = post_json(bearer(token.json()["access_token"]), RUNS, revoke_body(app))
    assert response.status_code == 202, response.content


# ------------------------------------------------------------------------------------------------
# What it answers


@pytest.fixture
def operator_client():
    return session(staff("operator", *ALL))


def test_jobs_lists_every_kind_with_its_parameter_schema(operator_client):
    jobs = {job["name"]: job for job in operator_client.get(JOBS).json()["jobs"]}
    assert {
        "cleanup",
        "revoke",
        "migrate_scope",
        "hash_client_secrets",
        "remove_inactive_applications",
    } <= set(jobs)
    assert set(jobs["revoke"]["params_schema"]["properties"]) == {"user", "application", "scope"}
    assert jobs["revoke"]["batch_size"] == {"default": 5000, "minimum": 1, "maximum": 100_000}
    assert jobs["hash_client_secrets"]["batch_size"] == {"default": 50, "minimum": 1, "maximum": 500}


def test_starting_a_run_answers_202_with_a_status_url_and_the_watermark_is_already_written(
    operator_client, app
):
    response = post_json(operator_client, RUNS, revoke_body(app, batch_size=100, interval=0.5))
    assert response.status_code == 202
    body = response.json()
    run = MaintenanceRun.objects.get()
    assert body["run_id"] == run.pk and response["Location"] == body["status_url"]
    assert body["status_url"] == f"http://testserver/maintenance/api/runs/{run.pk}/"
    assert (run.kind, run.params, run.batch_size, run.interval) == (
        "revoke",
        {"application": app.pk},
        100,
        0.5,
    )
    assert RevocationWatermark.objects.filter(application=app, not_before=run.cutoff).exists()

    status = operator_client.get(body["status_url"]).json()
    assert status["status"] == RunStatus.PENDING and status["phase"] == "refresh_tokens"
    assert status["batch_number"] == 0 and status["counts"] == {} and status["last_error"] == ""
    assert {"created_at", "started_at", "finished_at", "duration_seconds", "result"} <= set(status)


def test_a_duplicate_start_answers_409_with_the_active_run(operator_client, app):
    first = post_json(operator_client, RUNS, revoke_body(app)).json()["run_id"]
    # The same target by id rather than client_id is the same work.
    second = post_json(operator_client, RUNS, {"kind": "revoke", "params": {"application": app.pk}})
    assert second.status_code == 409
    assert second.json()["run_id"] == first and second.json()["status_url"].endswith(f"/runs/{first}/")
    assert MaintenanceRun.objects.count() == 1
    # A dry run of the same target is other work.
    assert post_json(operator_client, RUNS, revoke_body(app, dry_run=True)).status_code == 202


@pytest.mark.parametrize(
    "body, field",
    [
        ("{not json", "body"),
        (b"\xff\xfe", "body"),
        ("[1, 2]", "body"),
        ("", "body"),
        ({"params": {}}, "kind"),
        ({"kind": "no_such_job"}, "kind"),
        ({"kind": "revoke", "params": {"application": "no-such-client"}}, "application"),
        ({"kind": "revoke", "params": {"user": "no-such-user"}}, "user"),
        ({"kind": "revoke", "params": {"user": 987654}}, "user"),
        ({"kind": "revoke", "params": {"scope": "read write"}}, "scope"),
        ({"kind": "revoke", "params": {}}, "params"),
        ({"kind": "revoke", "params": {"client": "x"}}, "client"),
        ({"kind": "revoke", "params": ["x"]}, "params"),
        ({"kind": "migrate_scope", "params": {"mapping": {"read": "a b"}}}, "mapping"),
        ({"kind": "remove_inactive_applications", "params": {"days": -1}}, "days"),
        ({"kind": "cleanup", "batch_size": 0}, "batch_size"),
        ({"kind": "cleanup", "batch_size": 100_001}, "batch_size"),
        ({"kind": "cleanup", "batch_size": "many"}, "batch_size"),
        ({"kind": "cleanup", "batch_size": 1.5}, "batch_size"),
        ({"kind": "cleanup", "batch_size": True}, "batch_size"),
        ({"kind": "hash_client_secrets", "batch_size": 501}, "batch_size"),
        ({"kind": "cleanup", "interval": -1}, "interval"),
        ({"kind": "cleanup", "interval": 4000}, "interval"),
        ({"kind": "cleanup", "dry_run": "yes"}, "dry_run"),
        ({"kind": "cleanup", "priority": 1}, "priority"),
        ({"kind": "cleanup", "pacing": {"max_busy_share": 0}}, "pacing"),
        ({"kind": "cleanup", "pacing": {"min_batch_size": 500, "max_batch_size": 100}}, "pacing"),
        ({"kind": "cleanup", "pacing": {"speed": "slow"}}, "pacing"),
        ({"kind": "cleanup", "pacing": "on"}, "pacing"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_creates_nothing(operator_client, app, body, field):
    response = post_json(operator_client, RUNS, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["error"] == "invalid_request" and answer["field"] == field
    assert field in answer["errors"] and field in answer["detail"]
    assert not MaintenanceRun.objects.exists()
    assert not RevocationWatermark.objects.exists()


def test_a_run_started_with_pacing_settings_shows_its_pace(operator_client, app):
    response = post_json(
        operator_client, RUNS, {"kind": "cleanup", "batch_size": 800, "pacing": {"max_replica_lag": 2}}
    )
    assert response.status_code == 202, response.content
    run = MaintenanceRun.objects.get()
    assert run.pacing["settings"]["enabled"] is True and run.pacing["settings"]["max_replica_lag"] == 2.0
    status = operator_client.get(response.json()["status_url"]).json()
    assert status["pacing"]["enabled"] is True
    assert (status["pacing"]["batch_size"], status["pacing"]["reason"], status["pacing"]["waiting"]) == (
        800,
        "",
        False,
    )


def test_listing_runs_filters_and_validates(operator_client, app):
    engine.dispatch("cleanup", {}, trigger="test")
    engine.dispatch("revoke", {"application": app.pk}, trigger="test")
    runs = operator_client.get(RUNS).json()["runs"]
    assert [r["kind"] for r in runs] == ["revoke", "cleanup"]
    assert [r["kind"] for r in operator_client.get(RUNS, {"kind": "cleanup"}).json()["runs"]] == ["cleanup"]
    assert len(operator_client.get(RUNS, {"limit": "1"}).json()["runs"]) == 1
    for query, field in (({"limit": "0"}, "limit"), ({"kind": "x"}, "kind"), ({"status": "done"}, "status")):
        response = operator_client.get(RUNS, query)
        assert response.status_code == 400 and response.json()["field"] == field


def test_cancel_and_resume(app, api_log):
    viewer = session(staff("viewer", "view_maintenancerun"))
    operator = session(staff("operator", *ALL))
    run, _ = engine.dispatch("revoke", {"application": app.pk}, trigger="test")
    url = f"{RUNS}{run.pk}/"

    assert viewer.post(f"{url}cancel/").status_code == 403
    assert viewer.get(f"{url}cancel/").status_code == 405
    cancelled = operator.post(f"{url}cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == RunStatus.CANCELLED
    assert cancelled.json()["last_error"] == "cancelled by operator"
    assert operator.post(f"{url}cancel/").status_code == 409

    resumed = operator.post(f"{url}resume/")
    assert resumed.status_code == 202 and resumed.json()["status"] == RunStatus.PENDING
    assert operator.post(f"{RUNS}999999/cancel/").status_code == 404
    assert operator.get(f"{RUNS}999999/").status_code == 404

    MaintenanceRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, active_key=None)
    assert operator.post(f"{url}resume/").json()["error"] == "not_resumable"


def test_resuming_into_a_run_that_does_the_same_work_is_409(operator_client, app):
    run, _ = engine.dispatch("revoke", {"application": app.pk}, trigger="test")
    engine.cancel(run)
    other, _ = engine.dispatch("revoke", {"application": app.pk}, trigger="test")
    response = operator_client.post(f"{RUNS}{run.pk}/resume/")
    assert response.status_code == 409 and response.json()["run_id"] == other.pk


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_dry_run_started_by_the_api_shows_its_listing_when_the_worker_is_done(worker):
    from datetime import timedelta

    from django.utils import timezone

    client = session(staff("operator", *ALL))
    dormant = make_application(name="dormant")
    get_application_model().objects.filter(pk=dormant.pk).update(created=timezone.now() - timedelta(days=400))
    make_application(name="young")
    response = post_json(
        client, RUNS, {"kind": "remove_inactive_applications", "params": {"days": 365}, "dry_run": True}
    )
    assert response.status_code == 202
    url = response.json()["status_url"]

    status = wait_until(
        lambda: (lambda s: s if s["status"] == RunStatus.SUCCEEDED else None)(client.get(url).json()),
        timeout=60,
        message="the dry run to finish",
    )
    assert status["dry_run"] and status["counts"] == {"applications": 1}
    assert status["result"]["action"] == "would delete"
    assert [(a["id"], a["name"]) for a in status["result"]["applications"]] == [(dormant.pk, "dormant")]
    assert status["finished_at"] and status["duration_seconds"] is not None
    assert get_application_model().objects.filter(pk=dormant.pk).exists()
