"""Access tokens refreshed from deleted refresh tokens: deleted with them when rule 4 would delete
them anyway, unlinked otherwise; the counts and the rows are those of the rules either way."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models.signals import post_delete
from django.utils import timezone

from oauth_provider.cleanup import clear_expired
from oauth_provider.models import get_access_token_model, get_refresh_token_model
from tests.factories import make_access_token, make_application, make_refresh_token, make_user

pytestmark = pytest.mark.django_db
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


@pytest.fixture(autouse=True)
def revoked_refresh_tokens_are_deleted(settings):
    """django-oauth-toolkit's default: without reuse protection, rule 1 deletes revoked refresh tokens."""
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "REFRESH_TOKEN_REUSE_PROTECTION": False}


@pytest.fixture
def rotated():
    user = make_user()
    app = make_application(user)
    long_ago = timezone.now() - timedelta(days=30)
    r1, r2, r4 = (make_refresh_token(app, user, revoked=long_ago) for _ in range(3))
    a1 = make_access_token(app, user, expires_in=-3600, source_refresh_token=r1)  # due under rule 4
    a2 = make_access_token(app, user, expires_in=-3600, source_refresh_token=r2)  # a live refresh holds it
    r3 = make_refresh_token(app, user, access_token=a2)
    a4 = make_access_token(app, user, expires_in=3600, source_refresh_token=r4)  # live
    a5 = make_access_token(app, user, expires_in=-3600)  # plain expired
    return {"r1": r1, "r2": r2, "r3": r3, "r4": r4, "a1": a1, "a2": a2, "a4": a4, "a5": a5}


def expected_counts():
    return {
        "revoked_refresh_tokens": 3,
        "orphaned_refresh_tokens": 0,
        "expired_refresh_tokens": 0,
        "access_tokens": 2,
        "id_tokens": 0,
        "grants": 0,
    }


def check_rows(rows):
    assert set(AccessToken.objects.values_list("pk", flat=True)) == {rows["a2"].pk, rows["a4"].pk}
    assert set(RefreshToken.objects.values_list("pk", flat=True)) == {rows["r3"].pk}
    for key in ("a2", "a4"):
        assert AccessToken.objects.get(pk=rows[key].pk).source_refresh_token_id is None


@pytest.mark.parametrize("batch_size", [1, 100])
def test_successors_due_anyway_go_with_their_refresh_tokens_and_count_as_access_tokens(rotated, batch_size):
    assert clear_expired(batch_size=batch_size, dry_run=True) == expected_counts()
    assert clear_expired(batch_size=batch_size) == expected_counts()
    check_rows(rotated)


def test_with_delete_receivers_the_access_tokens_go_through_the_orm_and_get_their_signals(rotated):
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    post_delete.connect(receiver, sender=AccessToken)
    try:
        assert clear_expired(batch_size=2) == expected_counts()
    finally:
        post_delete.disconnect(receiver, sender=AccessToken)
    assert sorted(seen) == sorted([rotated["a1"].pk, rotated["a5"].pk])
    check_rows(rotated)


def test_the_engine_counts_them_under_access_tokens(rotated):
    from oauth_tasks import engine
    from oauth_tasks.models import MaintenanceRun, RunStatus

    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=1)
    for _ in range(100):
        run.refresh_from_db()
        if run.status != RunStatus.PENDING and run.status != RunStatus.RUNNING:
            break
        engine.run_batch(run.pk, run.batch_number)
    run = MaintenanceRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.SUCCEEDED
    assert {k: v for k, v in run.counts.items() if v} == {"revoked_refresh_tokens": 3, "access_tokens": 2}
    check_rows(rotated)
