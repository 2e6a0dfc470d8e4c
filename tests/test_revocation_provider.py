"""Revocation watermarks and batches, and the bulk data migration batches, run in process."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.utils import timezone

from oauth_provider import data_migrations as dm
from oauth_provider.models import (
    RevocationWatermark,
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)
from oauth_provider.revocation import (
    PHASES,
    RevocationTarget,
    is_revoked_by_watermark,
    record_watermark,
    revoke_all,
    run_revocation_batch,
    validate_scope_name,
)
from tests.factories import (
    issue_login_tokens,
    make_access_token,
    make_application,
    make_grant,
    make_id_token,
    make_refresh_token,
    make_user,
)

pytestmark = pytest.mark.django_db
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


def issue(app, user, scope="read write"):
    """The tokens a login leaves, as (access, refresh, id, grant)."""
    return tuple(issue_login_tokens(app, user, scope).values())


@pytest.fixture
def world():
    alice, bob = make_user("alice"), make_user("bob")
    app1, app2 = make_application(alice, name="one"), make_application(alice, name="two")
    return {
        "alice": alice,
        "bob": bob,
        "app1": app1,
        "app2": app2,
        "alice_app1": issue(app1, alice),
        "alice_app2": issue(app2, alice),
        "bob_app1": issue(app1, bob, scope="read:admin"),
        "bob_app2": issue(app2, bob, scope="write"),
    }


def state(token_set):
    access, refresh, id_token, grant = token_set
    refresh.refresh_from_db()
    return {
        "access": AccessToken.objects.filter(pk=access.pk).exists(),
        "refresh_revoked": refresh.revoked is not None,
        "id": get_id_token_model().objects.filter(pk=id_token.pk).exists(),
        "grant": get_grant_model().objects.filter(pk=grant.pk).exists(),
    }


LIVE = {"access": True, "refresh_revoked": False, "id": True, "grant": True}
GONE = {"access": False, "refresh_revoked": True, "id": False, "grant": False}


@pytest.mark.parametrize(
    "target_of, revoked",
    [
        (lambda w: RevocationTarget(user_id=w["alice"].pk), {"alice_app1", "alice_app2"}),
        (lambda w: RevocationTarget(application_id=w["app1"].pk), {"alice_app1", "bob_app1"}),
        (lambda w: RevocationTarget(user_id=w["bob"].pk, application_id=w["app2"].pk), {"bob_app2"}),
        (lambda w: RevocationTarget(scope="read"), {"alice_app1", "alice_app2"}),
        (lambda w: RevocationTarget(scope="write"), {"alice_app1", "alice_app2", "bob_app2"}),
    ],
)
def test_each_target_revokes_exactly_its_tokens(world, target_of, revoked):
    target = target_of(world)
    # Small batches so every phase takes several of them.
    totals = revoke_all(target, batch_size=1)
    for name in ("alice_app1", "alice_app2", "bob_app1", "bob_app2"):
        assert state(world[name]) == (GONE if name in revoked else LIVE), name
    assert totals == {
        "refresh_tokens": len(revoked),
        "access_tokens": len(revoked),
        "id_tokens": len(revoked),
        "grants": len(revoked),
    }


def test_a_second_pass_changes_nothing(world):
    target = RevocationTarget(application_id=world["app1"].pk)
    revoke_all(target, batch_size=2)
    revoked_at = RefreshToken.objects.get(pk=world["alice_app1"][1].pk).revoked
    assert revoke_all(target, batch_size=2) == dict.fromkeys(PHASES, 0)
    assert RefreshToken.objects.get(pk=world["alice_app1"][1].pk).revoked == revoked_at


def test_dry_run_counts_and_changes_nothing(world):
    target = RevocationTarget(user_id=world["alice"].pk)
    assert revoke_all(target, dry_run=True) == dict.fromkeys(PHASES, 2)
    assert state(world["alice_app1"]) == LIVE
    assert not RevocationWatermark.objects.exists()


def test_batches_walk_the_keys_and_finish(world):
    target = RevocationTarget(scope="write")
    first = run_revocation_batch("access_tokens", target, batch_size=2)
    assert (first.deleted, first.done) == (2, False)
    second = run_revocation_batch("access_tokens", target, batch_size=2, cursor=first.cursor)
    assert (second.deleted, second.done) == (1, True)


def test_watermark_refuses_tokens_issued_before_it_and_only_those(world):
    alice_app1 = world["alice_app1"][0]
    bob_app2 = world["bob_app2"][0]
    assert not is_revoked_by_watermark(alice_app1)
    record_watermark(RevocationTarget(application_id=world["app1"].pk))
    assert is_revoked_by_watermark(AccessToken.objects.get(pk=alice_app1.pk))
    assert is_revoked_by_watermark(RefreshToken.objects.get(pk=world["alice_app1"][1].pk))
    assert not is_revoked_by_watermark(bob_app2)
    newer = make_access_token(world["app1"], world["alice"])
    assert not is_revoked_by_watermark(newer)


@pytest.mark.parametrize(
    "target_of, hit, miss",
    [
        (lambda w: RevocationTarget(user_id=w["bob"].pk), "bob_app1", "alice_app1"),
        (
            lambda w: RevocationTarget(user_id=w["alice"].pk, application_id=w["app2"].pk),
            "alice_app2",
            "alice_app1",
        ),
        (lambda w: RevocationTarget(scope="read:admin"), "bob_app1", "alice_app1"),
    ],
)
def test_watermark_per_target(world, target_of, hit, miss):
    record_watermark(target_of(world))
    assert is_revoked_by_watermark(world[hit][0])
    assert not is_revoked_by_watermark(world[miss][0])


def test_watermark_is_one_row_per_target_and_only_moves_forward(world):
    target = RevocationTarget(user_id=world["alice"].pk)
    later = timezone.now() + timedelta(minutes=5)
    record_watermark(target, at=later)
    record_watermark(target, at=later - timedelta(minutes=10))
    marks = RevocationWatermark.objects.filter(user=world["alice"])
    assert marks.count() == 1
    assert marks.get().not_before == later


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({}, "target"),
        ({"scope": "read write"}, "scope"),
        ({"scope": "read", "user_id": 1}, "scope"),
    ],
)
def test_bad_targets_are_refused_with_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RevocationTarget(**kwargs)


def test_scope_name_validation():
    assert validate_scope_name("profile:read") == "profile:read"
    for bad in ("", "a b", 'a"b', "a\\b", "é"):
        with pytest.raises(ValueError, match="scope"):
            validate_scope_name(bad)


# Data migrations


def scopes_of(model):
    return sorted(model.objects.values_list("scope", flat=True))


def test_scope_rename_matches_whole_words_only():
    user = make_user()
    app = make_application(user)
    for scope in ("read", "read write", "read:admin", "unread", "Read", "write read", "read:admin read"):
        make_access_token(app, user, scope=scope)
    mapping = dm.validate_scope_mapping({"read": "profile:read"})
    cursor, changed = None, 0
    while True:
        result = dm.rewrite_scopes_batch("access_tokens", mapping, batch_size=2, cursor=cursor)
        changed += result.deleted
        cursor = result.cursor
        if result.done:
            break
    assert changed == 4
    assert scopes_of(AccessToken) == sorted(
        [
            "profile:read",
            "profile:read write",
            "read:admin",
            "unread",
            "Read",
            "write profile:read",
            "read:admin profile:read",
        ]
    )
    again = dm.rewrite_scopes_batch("access_tokens", mapping, batch_size=100)
    assert again.deleted == 0


def test_scope_split_and_merge_deduplicate():
    user = make_user()
    app = make_application(user)
    make_grant(app, user, scope="profile email")
    make_grant(app, user, scope="profile openid")
    mapping = dm.validate_scope_mapping({"profile": ["profile:read", "email"], "openid": "email"})
    result = dm.rewrite_scopes_batch("grants", mapping, batch_size=10)
    assert result.deleted == 2
    assert scopes_of(get_grant_model()) == ["profile:read email", "profile:read email"]


def test_scope_rewrite_dry_run_counts_without_changing():
    user = make_user()
    app = make_application(user)
    make_id_token(app, user, scope="read")
    result = dm.rewrite_scopes_batch("id_tokens", {"read": ["x"]}, batch_size=10, dry_run=True)
    assert result.deleted == 1
    assert scopes_of(get_id_token_model()) == ["read"]


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({}, "non-empty"),
        ({"read": "read write"}, "space"),
        ({"read": "write", "write": "other"}, "both renamed"),
        ({"read": []}, "non-empty list"),
        ("read", "non-empty object"),
    ],
)
def test_bad_scope_mappings_are_refused(mapping, message):
    with pytest.raises(ValueError, match=message):
        dm.validate_scope_mapping(mapping)


def test_hashing_legacy_secrets_leaves_hashed_and_opted_out_rows_alone():
    Application = get_application_model()
    legacy = make_application(name="legacy")
    Application.objects.filter(pk=legacy.pk).update(client_secret="legacy-plaintext")
    hashed = make_application(name="hashed", client_secret="already")
    hashed_value = Application.objects.get(pk=hashed.pk).client_secret
    opted_out = make_application(name="hs256", client_secret="kept-plain", hash_client_secret=False)

    dry = dm.hash_client_secrets_batch(batch_size=10, dry_run=True)
    assert dry.deleted == 1
    assert Application.objects.get(pk=legacy.pk).client_secret == "legacy-plaintext"

    result = dm.hash_client_secrets_batch(batch_size=10)
    assert result.deleted == 1
    legacy.refresh_from_db()
    assert identify_hasher(legacy.client_secret)
    assert legacy.check_client_secret("legacy-plaintext")
    assert Application.objects.get(pk=hashed.pk).client_secret == hashed_value
    assert Application.objects.get(pk=opted_out.pk).client_secret == "kept-plain"
    assert dm.hash_client_secrets_batch(batch_size=10).deleted == 0


def test_inactive_applications_are_listed_then_removed():
    Application = get_application_model()
    user = make_user()
    long_ago = timezone.now() - timedelta(days=400)
    dormant = make_application(user, name="dormant")
    dead_token = make_access_token(dormant, user, expires_in=-86400 * 300)
    make_refresh_token(dormant, user, access_token=None, revoked=long_ago)
    busy = make_application(user, name="busy")
    make_access_token(busy, user)
    fresh = make_application(user, name="fresh")
    idle_but_live = make_application(user, name="live refresh")
    make_refresh_token(idle_but_live, user)
    for app in (dormant, busy, idle_but_live):
        Application.objects.filter(pk=app.pk).update(created=long_ago)
    AccessToken.objects.filter(application__in=[dormant, busy]).update(created=long_ago)
    RefreshToken.objects.filter(application__in=[dormant, idle_but_live]).update(created=long_ago)

    listed = dm.list_inactive_applications(90)
    assert [row["name"] for row in listed] == ["dormant"]
    now = timezone.now()
    dry = dm.remove_inactive_applications_batch(90, now=now, batch_size=10, dry_run=True)
    assert dry.deleted == 1 and Application.objects.filter(pk=dormant.pk).exists()
    result = dm.remove_inactive_applications_batch(90, now=now, batch_size=10)
    assert result.deleted == 1
    assert set(Application.objects.values_list("name", flat=True)) == {"busy", "fresh", "live refresh"}
    assert not AccessToken.objects.filter(pk=dead_token.pk).exists()
    assert fresh.pk


def test_a_watermarked_token_is_refused_by_the_shared_token_check(world):
    from oauth_provider.tokens import is_issued_token_allowed, is_token_usable

    access, refresh, _, _ = world["alice_app1"]
    assert is_token_usable(AccessToken.objects.get(pk=access.pk))
    record_watermark(RevocationTarget(application_id=world["app1"].pk))
    assert not is_token_usable(AccessToken.objects.get(pk=access.pk))
    assert not is_issued_token_allowed(RefreshToken.objects.get(pk=refresh.pk))
    assert is_token_usable(AccessToken.objects.get(pk=world["alice_app2"][0].pk))


def test_scope_matching_is_case_sensitive_on_every_backend():
    """``Read`` is another scope than ``read``, also under MariaDB's case-insensitive collations:
    for the whole-word predicate, a scope revocation's batches and its watermark."""
    user = make_user()
    app = make_application(user)
    tokens = {scope: make_access_token(app, user, scope=scope).pk for scope in ("read", "Read", "READ write")}
    target = RevocationTarget(scope="read")
    assert list(
        AccessToken.objects.filter(target.predicate("access_tokens")).values_list("pk", flat=True)
    ) == [tokens["read"]]
    record_watermark(RevocationTarget(scope="Read"))
    assert is_revoked_by_watermark(AccessToken.objects.get(pk=tokens["Read"]))
    assert not is_revoked_by_watermark(AccessToken.objects.get(pk=tokens["read"]))
    record_watermark(target)
    assert RevocationWatermark.objects.filter(scope__in=["read", "Read"]).count() == 2
    assert revoke_all(target)["access_tokens"] == 1
    assert sorted(AccessToken.objects.values_list("scope", flat=True)) == ["READ write", "Read"]
