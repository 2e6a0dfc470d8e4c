"""Bulk data migration jobs on real workers, and the documented API for a project's own migration.

Scope renames must touch whole words only, every job must be idempotent and resumable, and a run
whose worker is SIGKILLed mid-run must finish with a new worker with every row changed exactly once.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import check_password, identify_hasher
from django.core.exceptions import ValidationError
from django.utils import timezone

from oauth_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)
from oauth_tasks import engine
from oauth_tasks.jobs import all_jobs, get_job, register_migration, unregister_job
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import run_status, wait_until
from tests.factories import make_access_token, make_application, make_grant, make_id_token, make_user
from tests.test_endpoints_support import provider_settings

AccessToken = get_access_token_model()
Application = get_application_model()


def wait_finished(run_id: int, timeout: float = 90) -> MaintenanceRun:
    def finished():
        run = run_status(run_id)
        return run if not run.is_active else None

    return wait_until(finished, timeout=timeout, message=f"run {run_id} to finish")


def drive(run: MaintenanceRun, limit: int = 1000) -> MaintenanceRun:
    """Run batches in process, as the worker would (same engine.run_batch)."""
    for _ in range(limit):
        run.refresh_from_db()
        if not run.is_active:
            return run
        engine.run_batch(run.pk, run.batch_number)
    raise AssertionError("the run did not finish")


def scopes(model) -> dict[int, str]:
    return dict(model.objects.values_list("pk", "scope"))


@pytest.fixture(autouse=True)
def profile_scope(settings):
    """``profile:read``, the rename target of these tests, among the configured scopes."""
    scopes = {**settings.OAUTH2_PROVIDER["SCOPES"], "profile:read": "Read the profile"}
    provider_settings(settings, SCOPES=scopes)


# ------------------------------------------------------------------------------------------------
# migrate_scope


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mapping",
    [
        None,
        {},
        "read",
        {"read": ""},
        {"read": "profile read"},
        {"read write": "rw"},
        {"read": []},
        {"read": "write", "write": "read"},
    ],
)
def test_bad_scope_mappings_name_the_mapping_and_create_nothing(mapping):
    params = {} if mapping is None else {"mapping": mapping}
    with pytest.raises(ValidationError) as excinfo:
        engine.dispatch("migrate_scope", params, trigger="test")
    assert "mapping" in excinfo.value.message_dict
    assert not MaintenanceRun.objects.exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_scope_rename_on_the_worker_leaves_look_alike_scopes_alone(worker):
    app, user = make_application(), make_user()
    texts = [
        "read",
        "read write",
        "write read",
        "read:admin",
        "readonly",
        "xread",
        "Read",
        "openid read:admin read",
        "write",
        "",
    ]
    tokens = {text: make_access_token(app, user, scope=text).pk for text in texts}
    grant = make_grant(app, user, scope="read:admin read").pk
    id_token = make_id_token(app, user, scope="openid read").pk

    dry, _ = engine.dispatch(
        "migrate_scope", {"mapping": {"read": "profile:read"}}, trigger="test", dry_run=True
    )
    dry = wait_finished(dry.pk)
    assert dry.counts == {"access_tokens": 4, "id_tokens": 1, "grants": 1}
    assert scopes(AccessToken)[tokens["read"]] == "read"

    run, _ = engine.dispatch(
        "migrate_scope", {"mapping": {"read": "profile:read"}}, trigger="test", batch_size=2
    )
    done = wait_finished(run.pk)
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.counts == {"access_tokens": 4, "id_tokens": 1, "grants": 1}
    after = scopes(AccessToken)
    assert {text: after[pk] for text, pk in tokens.items()} == {
        "read": "profile:read",
        "read write": "profile:read write",
        "write read": "write profile:read",
        "read:admin": "read:admin",
        "readonly": "readonly",
        "xread": "xread",
        "Read": "Read",
        "openid read:admin read": "openid read:admin profile:read",
        "write": "write",
        "": "",
    }
    assert get_grant_model().objects.get(pk=grant).scope == "read:admin profile:read"
    assert get_id_token_model().objects.get(pk=id_token).scope == "openid profile:read"

    # Idempotent: the same migration again finds nothing to change.
    again, _ = engine.dispatch("migrate_scope", {"mapping": {"read": "profile:read"}}, trigger="test")
    assert wait_finished(again.pk).counts == {"access_tokens": 0, "id_tokens": 0, "grants": 0}
    assert scopes(AccessToken) == after


@pytest.mark.django_db
def test_split_and_merge_rewrite_words_in_place_without_duplicates():
    app, user = make_application(), make_user()
    a = make_access_token(app, user, scope="rw openid").pk
    b = make_access_token(app, user, scope="r w read").pk
    run, _ = engine.dispatch(
        "migrate_scope", {"mapping": {"rw": ["read", "write"], "r": "read", "w": "write"}}, trigger="test"
    )
    assert drive(run).counts["access_tokens"] == 2
    assert scopes(AccessToken) == {a: "read write openid", b: "read write"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_migration_whose_worker_is_killed_finishes_with_a_new_worker(worker_factory, celery_app):
    app, user = make_application(), make_user()
    now = timezone.now()
    AccessToken.objects.bulk_create(
        AccessToken(
            application=app,
            user=user,
            token=f"kill-{i}-{uuid.uuid4().hex}",
            expires=now + timedelta(hours=1),
            scope="read write" if i % 3 else "write read:admin",
        )
        for i in range(60)
    )
    expected = {
        pk: "profile:read write" if scope == "read write" else scope
        for pk, scope in scopes(AccessToken).items()
    }
    to_change = sum(1 for pk, scope in scopes(AccessToken).items() if expected[pk] != scope)
    assert to_change == 40

    run, _ = engine.dispatch(
        "migrate_scope", {"mapping": {"read": "profile:read"}}, trigger="test", batch_size=2, interval=0.3
    )
    first = worker_factory()
    wait_until(lambda: run_status(run.pk).batch_number >= 3, message="the run to be under way")
    first.kill()
    killed_at = run_status(run.pk)
    assert killed_at.status == RunStatus.RUNNING, "the run finished before the kill: make it longer"
    assert 0 < killed_at.counts.get("access_tokens", 0) < to_change

    worker_factory()
    wait_until(
        lambda: engine.find_stalled_runs(0).filter(pk=run.pk).exists(), message="the run to be overdue"
    )
    celery_app.send_task("oauth_tasks.watchdog", kwargs={"stale_after": 0}).get(timeout=30)
    done = wait_finished(run.pk)

    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.batch_number > killed_at.batch_number and done.requeue_count >= 1
    assert done.counts["access_tokens"] == to_change  # every row changed once, none twice
    assert scopes(AccessToken) == expected


# ------------------------------------------------------------------------------------------------
# hash_client_secrets


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_hashing_client_secrets_on_the_worker_hashes_only_plaintext_ones(worker):
    legacy = [make_application(name=f"legacy-{i}") for i in range(3)]
    for i, app in enumerate(legacy):
        Application.objects.filter(pk=app.pk).update(client_secret=f"plain-secret-{i}")
    hashed = make_application(name="hashed", client_secret="already-hashed-secret")
    opted_out = make_application(name="opted-out", hash_client_secret=False, client_secret="kept-as-is")
    empty = make_application(name="public", client_type="public", client_secret="")
    before = dict(Application.objects.values_list("pk", "client_secret"))
    identify_hasher(before[hashed.pk])  # stored hashed by the model

    dry, _ = engine.dispatch("hash_client_secrets", {}, trigger="test", dry_run=True)
    assert wait_finished(dry.pk).counts == {"client_secrets": 3}
    assert dict(Application.objects.values_list("pk", "client_secret")) == before

    run, _ = engine.dispatch("hash_client_secrets", {}, trigger="test", batch_size=2)
    done = wait_finished(run.pk)
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.counts == {"client_secrets": 3}
    after = dict(Application.objects.values_list("pk", "client_secret"))
    for i, app in enumerate(legacy):
        assert check_password(f"plain-secret-{i}", after[app.pk])
    assert after[hashed.pk] == before[hashed.pk]
    assert after[opted_out.pk] == "kept-as-is"
    assert after[empty.pk] == ""

    again, _ = engine.dispatch("hash_client_secrets", {}, trigger="test")
    assert wait_finished(again.pk).counts == {"client_secrets": 0}
    assert dict(Application.objects.values_list("pk", "client_secret")) == after


# ------------------------------------------------------------------------------------------------
# remove_inactive_applications


@pytest.mark.django_db
@pytest.mark.parametrize("params, field", [({}, "days"), ({"days": 0}, "days"), ({"days": "30"}, "days")])
def test_bad_removal_parameters_name_the_field(params, field):
    with pytest.raises(ValidationError) as excinfo:
        engine.dispatch("remove_inactive_applications", params, trigger="test")
    assert field in excinfo.value.message_dict
    assert not MaintenanceRun.objects.exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_removing_inactive_applications_lists_them_on_a_dry_run_then_deletes_only_them(worker):
    user = make_user()
    long_ago = timezone.now() - timedelta(days=120)
    dormant = [make_application(user, name=f"dormant-{i}") for i in range(3)]
    expired = make_access_token(dormant[0], user, expires_in=-3600)
    recent_token = make_application(user, name="recent-token")
    make_access_token(recent_token, user, expires_in=-60)
    live_refresh = make_application(user, name="live-refresh")
    get_refresh_token_model().objects.create(application=live_refresh, user=user, token="rt-live")
    young = make_application(user, name="young")
    old = [*dormant, recent_token, live_refresh]
    Application.objects.filter(pk__in=[a.pk for a in old]).update(created=long_ago)
    AccessToken.objects.filter(pk=expired.pk).update(created=long_ago)
    get_refresh_token_model().objects.update(created=long_ago)
    dormant_ids = sorted(a.pk for a in dormant)

    dry, _ = engine.dispatch(
        "remove_inactive_applications", {"days": 90}, trigger="test", dry_run=True, batch_size=2
    )
    dry = wait_finished(dry.pk)
    assert dry.status == RunStatus.SUCCEEDED and dry.counts == {"applications": 3}
    assert dry.result["action"] == "would delete" and dry.result["total"] == 3
    assert [a["id"] for a in dry.result["applications"]] == dormant_ids
    assert {a["name"] for a in dry.result["applications"]} == {"dormant-0", "dormant-1", "dormant-2"}
    assert Application.objects.count() == 6

    run, _ = engine.dispatch("remove_inactive_applications", {"days": 90}, trigger="test", batch_size=2)
    done = wait_finished(run.pk)
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.counts == {"applications": 3}
    assert (
        done.result["action"] == "deleted" and [a["id"] for a in done.result["applications"]] == dormant_ids
    )
    assert set(Application.objects.values_list("pk", flat=True)) == {
        recent_token.pk,
        live_refresh.pk,
        young.pk,
    }
    assert not AccessToken.objects.filter(pk=expired.pk).exists()


# ------------------------------------------------------------------------------------------------
# A project's own migration: the example of docs/jobs.md


def test_every_built_in_job_publishes_its_parameters():
    jobs = all_jobs()
    assert {"revoke", "migrate_scope", "hash_client_secrets", "remove_inactive_applications"} <= set(jobs)
    assert set(get_job("revoke").describe()["params_schema"]["properties"]) == {
        "user",
        "application",
        "scope",
    }
    assert get_job("migrate_scope").describe()["params_schema"]["required"] == ["mapping"]
    assert get_job("remove_inactive_applications").describe()["params_schema"]["required"] == ["days"]


@pytest.mark.django_db
def test_the_documented_backfill_example_is_dry_runnable_resumable_and_idempotent():
    # --- as in docs/jobs.md --------------------------------------------------------------------
    from oauth_provider.models import get_refresh_token_model

    RefreshToken = get_refresh_token_model()

    def backfill_token_family(rows, params):
        """One batch: give each refresh token of the batch a family of its own."""
        changed = list(rows.only("pk"))
        for row in changed:
            row.token_family = uuid.uuid4()
        RefreshToken.objects.bulk_update(changed, ["token_family"])
        return len(changed)

    register_migration(
        "backfill_token_family",
        queryset=RefreshToken.objects.filter(token_family__isnull=True),
        batch=backfill_token_family,
        label="Backfill refresh token families",
        batch_size=500,
    )
    # ----------------------------------------------------------------------------------------------
    try:
        app, user = make_application(), make_user()
        RefreshToken.objects.bulk_create(
            RefreshToken(application=app, user=user, token=f"bf-{i}", token_family=None) for i in range(7)
        )
        has_family = RefreshToken.objects.create(
            application=app, user=user, token="bf-x", token_family=uuid.uuid4()
        )
        kept_family = has_family.token_family

        dry, _ = engine.dispatch("backfill_token_family", {}, trigger="test", dry_run=True, batch_size=3)
        assert drive(dry).counts == {"rows": 7}
        assert RefreshToken.objects.filter(token_family__isnull=True).count() == 7

        run, _ = engine.dispatch("backfill_token_family", {}, trigger="test", batch_size=3)
        engine.run_batch(run.pk, 0)
        run.refresh_from_db()
        assert (
            run.counts == {"rows": 3} and RefreshToken.objects.filter(token_family__isnull=True).count() == 4
        )
        # Interrupted here: it fails, is resumed from its cursor and finishes.
        engine.mark_failed(run.pk, run.batch_number, "worker lost")
        done = drive(engine.resume(run))
        assert done.status == RunStatus.SUCCEEDED and done.counts == {"rows": 7}
        assert not RefreshToken.objects.filter(token_family__isnull=True).exists()
        assert len(set(RefreshToken.objects.values_list("token_family", flat=True))) == 8
        assert RefreshToken.objects.get(pk=has_family.pk).token_family == kept_family

        # A batch run twice (a replayed message after a rollback) changes nothing more.
        again, _ = engine.dispatch("backfill_token_family", {}, trigger="test")
        assert drive(again).counts == {"rows": 0}
    finally:
        unregister_job("backfill_token_family")
