"""The ``revoke`` job: parameters, the watermark written with the run, and real worker runs.

The key property: a revocation is in force once dispatch returns, while no worker has touched a
row; introspection over HTTP already answers ``{"active": false}``. The worker then removes exactly
the rows issued before the run's cutoff.
"""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from oauth_provider.models import (
    RevocationWatermark,
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)
from oauth_provider.revocation import PHASES
from oauth_tasks import engine
from oauth_tasks.jobs.revocation import affected_counts
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import run_status, wait_until
from tests.factories import (
    issue_login_tokens,
    make_access_token,
    make_application,
    make_id_token,
    make_user,
)
from tests.test_endpoints_support import make_client

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
IDToken = get_id_token_model()
Grant = get_grant_model()


issue = issue_login_tokens


def is_gone(rows) -> bool:
    """True when the login's rows are revoked: access, ID token and grant deleted, refresh revoked."""
    refresh = RefreshToken.objects.get(pk=rows["refresh"].pk)
    return (
        not AccessToken.objects.filter(pk=rows["access"].pk).exists()
        and not IDToken.objects.filter(pk=rows["id"].pk).exists()
        and not Grant.objects.filter(pk=rows["grant"].pk).exists()
        and refresh.revoked is not None
        and refresh.access_token_id is None
    )


def is_intact(rows) -> bool:
    refresh = RefreshToken.objects.get(pk=rows["refresh"].pk)
    return (
        AccessToken.objects.filter(pk=rows["access"].pk).exists()
        and IDToken.objects.filter(pk=rows["id"].pk).exists()
        and Grant.objects.filter(pk=rows["grant"].pk).exists()
        and refresh.revoked is None
        and refresh.access_token_id == rows["access"].pk
    )


def introspect(client, resource_server, token: str) -> dict:
    """POST /o/introspect/ as a resource server authenticating with its client credentials."""
    basic = base64.b64encode(f"{resource_server.client_id}:{resource_server.secret}".encode()).decode()
    response = client.post("/o/introspect/", {"token": token}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200, response.content
    return response.json()


def wait_finished(run_id: int, timeout: float = 90) -> MaintenanceRun:
    return wait_until(
        lambda: (lambda r: r if not r.is_active else None)(run_status(run_id)),
        timeout=timeout,
        message=f"run {run_id} to finish",
    )


@pytest.fixture
def world(db):
    alice, bob = make_user("alice"), make_user("bob")
    leaky, other = make_application(alice, name="leaky"), make_application(alice, name="other")
    return {
        "alice": alice,
        "bob": bob,
        "leaky": leaky,
        "other": other,
        "alice_leaky": issue(leaky, alice),
        "bob_leaky": issue(leaky, bob, scope="read:admin"),
        "alice_other": issue(other, alice, scope="read"),
        "bob_other": issue(other, bob, scope="write"),
    }


# ------------------------------------------------------------------------------------------------
# Parameters


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, field",
    [
        ({"user": "nobody-here"}, "user"),
        ({"user": 10**9}, "user"),
        ({"user": True}, "user"),
        ({"application": "no-such-client"}, "application"),
        ({"application": 10**9}, "application"),
        ({"application": 1.5}, "application"),
        ({"scope": "read write"}, "scope"),
        ({"scope": ""}, "scope"),
        ({"scope": 'say"hi'}, "scope"),
        ({"scope": "read", "user": "alice"}, "scope"),
        ({}, "params"),
        ({"users": "alice"}, "users"),
    ],
)
def test_bad_revoke_parameters_name_the_field_and_create_nothing(world, params, field):
    with pytest.raises(ValidationError) as excinfo:
        engine.dispatch("revoke", params, trigger="test")
    assert field in excinfo.value.message_dict, excinfo.value.message_dict
    assert not MaintenanceRun.objects.exists()
    assert not RevocationWatermark.objects.exists()


@pytest.mark.django_db
def test_a_user_and_an_application_may_be_named_by_id_or_by_name_and_mean_the_same_run(world):
    alice, leaky = world["alice"], world["leaky"]
    by_name, created = engine.dispatch(
        "revoke", {"user": "alice", "application": leaky.client_id}, trigger="test"
    )
    assert created and by_name.params == {"user": alice.pk, "application": leaky.pk}
    by_id, created_again = engine.dispatch(
        "revoke", {"user": alice.pk, "application": str(leaky.pk)}, trigger="test"
    )
    assert not created_again and by_id.pk == by_name.pk


# ------------------------------------------------------------------------------------------------
# The watermark, written with the run


@pytest.mark.django_db
def test_dispatch_writes_the_watermark_with_the_run_and_a_dry_run_writes_none(world):
    leaky = world["leaky"]
    token = world["alice_leaky"]["access"]
    from oauth_provider.tokens import is_token_usable

    dry, _ = engine.dispatch("revoke", {"application": leaky.pk}, trigger="test", dry_run=True)
    assert not RevocationWatermark.objects.exists()
    assert is_token_usable(AccessToken.objects.get(pk=token.pk))

    run, created = engine.dispatch("revoke", {"application": leaky.pk}, trigger="test")
    assert created
    mark = RevocationWatermark.objects.get()
    assert (mark.application_id, mark.user_id, mark.scope) == (leaky.pk, None, "")
    assert mark.not_before == run.cutoff and f"#{run.pk}" in mark.reason
    assert not is_token_usable(AccessToken.objects.get(pk=token.pk))
    assert is_token_usable(AccessToken.objects.get(pk=world["alice_other"]["access"].pk))

    # A duplicate dispatch returns the active run and writes nothing.
    again, created_again = engine.dispatch("revoke", {"application": leaky.pk}, trigger="test")
    assert (again.pk, created_again) == (run.pk, False)
    assert RevocationWatermark.objects.get().not_before == run.cutoff


@pytest.mark.django_db(transaction=True)
def test_the_watermark_rolls_back_with_the_run(world):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        engine.dispatch("revoke", {"user": world["bob"].pk}, trigger="test")
        assert RevocationWatermark.objects.filter(user=world["bob"]).exists()
        raise Boom
    assert not MaintenanceRun.objects.exists()
    assert not RevocationWatermark.objects.exists()


@pytest.mark.django_db
def test_affected_counts_are_what_the_run_then_changes(world):
    params = {"user": world["bob"].pk}
    counts = affected_counts(params)
    assert counts == dict.fromkeys(PHASES, 2)
    run, _ = engine.dispatch("revoke", params, trigger="test", batch_size=1)
    for _ in range(50):
        run.refresh_from_db()
        if not run.is_active:
            break
        engine.run_batch(run.pk, run.batch_number)
    assert run.status == RunStatus.SUCCEEDED and run.counts == counts
    assert affected_counts(params) == dict.fromkeys(PHASES, 0)


# ------------------------------------------------------------------------------------------------
# On a real worker


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_revoked_applications_token_is_refused_by_introspection_before_the_worker_runs(
    world, worker_factory, client
):
    resource_server = make_client(name="resource-server")
    leaky = world["leaky"]
    doomed = world["alice_leaky"]
    raw = doomed["access"].token
    assert introspect(client, resource_server, raw)["active"] is True

    run, created = engine.dispatch("revoke", {"application": leaky.client_id}, trigger="test", batch_size=1)
    assert created
    # No worker is running: every row is still there, and the token is already refused.
    assert AccessToken.objects.filter(pk=doomed["access"].pk).exists()
    assert run_status(run.pk).status == RunStatus.PENDING
    assert introspect(client, resource_server, raw) == {"active": False}
    assert introspect(client, resource_server, doomed["refresh"].token) == {"active": False}
    assert introspect(client, resource_server, world["alice_other"]["access"].token)["active"] is True

    # A token the application obtains after the revocation is valid, and the run leaves it alone.
    fresh = issue(leaky, world["alice"])
    assert introspect(client, resource_server, fresh["access"].token)["active"] is True

    worker_factory()
    done = wait_finished(run.pk)
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.counts == dict.fromkeys(PHASES, 2)
    assert done.batch_number >= 8  # batch size 1: at least one batch per row
    assert is_gone(doomed) and is_gone(world["bob_leaky"])
    assert is_intact(fresh) and is_intact(world["alice_other"]) and is_intact(world["bob_other"])
    assert introspect(client, resource_server, fresh["access"].token)["active"] is True


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "target, gone, kept",
    [
        ("user", ["bob_leaky", "bob_other"], ["alice_leaky", "alice_other"]),
        ("user_application", ["bob_leaky"], ["bob_other", "alice_leaky", "alice_other"]),
        ("scope", ["alice_leaky", "alice_other"], ["bob_leaky", "bob_other"]),
    ],
)
def test_each_revocation_target_removes_exactly_its_tokens_on_the_worker(world, worker, target, gone, kept):
    params = {
        "user": {"user": "bob"},
        "user_application": {"user": world["bob"].pk, "application": world["leaky"].pk},
        # "read" is a whole word of "read write" and "read", not of "read:admin".
        "scope": {"scope": "read"},
    }[target]
    run, _ = engine.dispatch("revoke", params, trigger="test", batch_size=2)
    done = wait_finished(run.pk)
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.counts == dict.fromkeys(PHASES, len(gone))
    for name in gone:
        assert is_gone(world[name]), name
    for name in kept:
        assert is_intact(world[name]), name


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_dry_run_on_the_worker_counts_and_changes_nothing(world, worker):
    params = {"application": world["leaky"].pk}
    expected = affected_counts(params)
    run, _ = engine.dispatch("revoke", params, trigger="test", dry_run=True, batch_size=1)
    done = wait_finished(run.pk)
    assert done.status == RunStatus.SUCCEEDED and done.dry_run
    assert done.counts == expected == dict.fromkeys(PHASES, 2)
    assert all(is_intact(world[name]) for name in ("alice_leaky", "bob_leaky", "alice_other"))
    assert not RevocationWatermark.objects.exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_revocation_run_twice_changes_nothing_the_second_time(world, worker):
    params = {"user": world["alice"].pk}
    first, _ = engine.dispatch("revoke", params, trigger="test")
    assert wait_finished(first.pk).counts == dict.fromkeys(PHASES, 2)
    revoked_at = RefreshToken.objects.get(pk=world["alice_leaky"]["refresh"].pk).revoked
    second, created = engine.dispatch("revoke", params, trigger="test")
    assert created and second.pk != first.pk
    assert wait_finished(second.pk).counts == dict.fromkeys(PHASES, 0)
    assert RefreshToken.objects.get(pk=world["alice_leaky"]["refresh"].pk).revoked == revoked_at


@pytest.mark.django_db
def test_an_id_token_held_by_a_token_issued_after_the_cutoff_is_kept(world):
    """An ID token created before the cutoff whose access token came after it: deleting the ID
    token would cascade to the live access token, so the run keeps both."""
    leaky, alice = world["leaky"], world["alice"]
    id_token = make_id_token(leaky, alice)
    run, _ = engine.dispatch("revoke", {"application": leaky.pk}, trigger="test")
    late = make_access_token(leaky, alice, id_token=id_token)
    for _ in range(50):
        run.refresh_from_db()
        if not run.is_active:
            break
        engine.run_batch(run.pk, run.batch_number)
    assert run.status == RunStatus.SUCCEEDED
    assert AccessToken.objects.filter(pk=late.pk).exists()
    assert IDToken.objects.filter(pk=id_token.pk).exists()
    assert is_gone(world["alice_leaky"])
