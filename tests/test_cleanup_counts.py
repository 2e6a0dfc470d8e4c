"""A phase whose rule selects nothing stops without walking the rows other tables keep.

Rules 4 and 5 ("expired, and nothing points at it") are first counted without an anti-join on
MySQL and MariaDB (``cleanup._unreferenced_expired_count``); only a count of 0 skips the walk.
These tests pin that the count is the anti-join's, in every mix of expired and live rows, pointed
at or not, and that a row freed between two runs is still found.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Exists, OuterRef
from django.utils import timezone

from oauth_provider import cleanup
from oauth_provider.cleanup import ACCESS_TOKENS, ID_TOKENS, CleanupPlan, clear_expired
from oauth_provider.models import get_access_token_model, get_id_token_model, get_refresh_token_model

from .factories import make_access_token, make_application, make_id_token, make_refresh_token, make_user

pytestmark = pytest.mark.django_db

DOT_DEFAULTS = {"REFRESH_TOKEN_REUSE_PROTECTION": False}


@pytest.fixture
def kept_tokens(settings):
    """Expired access tokens kept by live refresh tokens, each with an expired ID token; live ones."""
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, **DOT_DEFAULTS}
    user = make_user()
    application = make_application(user)
    kept = []
    for _ in range(4):
        id_token = make_id_token(application, user, expires_in=-3600)
        access = make_access_token(application, user, expires_in=-3600, id_token=id_token)
        kept.append(make_refresh_token(application, user, access_token=access))
    for _ in range(2):  # live and pointed at: the term the count adds back
        id_token = make_id_token(application, user, expires_in=3600)
        access = make_access_token(application, user, expires_in=3600, id_token=id_token)
        make_refresh_token(application, user, access_token=access)
    make_access_token(application, user, expires_in=3600)  # live, nothing points at it
    make_id_token(application, user, expires_in=3600)
    return kept


def anti_join_count(phase: str, now) -> int:
    """What the rule selects, counted the plain way."""
    if phase == ACCESS_TOKENS:
        pointing = get_refresh_token_model().objects.filter(access_token=OuterRef("pk"))
        return get_access_token_model().objects.filter(expires__lt=now).exclude(Exists(pointing)).count()
    pointing = get_access_token_model().objects.filter(id_token=OuterRef("pk"))
    return get_id_token_model().objects.filter(expires__lt=now).exclude(Exists(pointing)).count()


def test_tokens_kept_by_live_refresh_tokens_are_not_deleted_and_a_freed_one_is(kept_tokens):
    first = clear_expired(batch_size=2, interval=0)
    assert first[ACCESS_TOKENS] == 0 and first[ID_TOKENS] == 0
    assert clear_expired(batch_size=2, interval=0) == dict.fromkeys(cleanup.PHASES, 0)

    # The refresh token goes some other way (an admin, a script): its access token is free now,
    # and the ID token goes with it in the same run.
    freed = kept_tokens[1]
    access_pk, id_pk = freed.access_token_id, freed.access_token.id_token_id
    get_refresh_token_model().objects.filter(pk=freed.pk).delete()

    again = clear_expired(batch_size=2, interval=0)

    assert again[ACCESS_TOKENS] == 1 and again[ID_TOKENS] == 1
    assert not get_access_token_model().objects.filter(pk=access_pk).exists()
    assert not get_id_token_model().objects.filter(pk=id_pk).exists()
    assert get_access_token_model().objects.filter(expires__lt=timezone.now()).count() == 3


def test_a_refresh_token_unlinked_frees_its_access_token(kept_tokens):
    unlinked = kept_tokens[0]
    access_pk = unlinked.access_token_id
    get_refresh_token_model().objects.filter(pk=unlinked.pk).update(access_token=None)

    counts = clear_expired(batch_size=10, interval=0)

    # Rule 2 deletes the refresh token that points nowhere, rule 4 the access token it held.
    assert counts["orphaned_refresh_tokens"] == 1
    assert counts[ACCESS_TOKENS] == 1
    assert not get_access_token_model().objects.filter(pk=access_pk).exists()


@pytest.mark.parametrize("phase", [ACCESS_TOKENS, ID_TOKENS])
def test_the_count_is_the_anti_joins_in_every_mix(kept_tokens, phase):
    user, application = kept_tokens[0].user, kept_tokens[0].application
    # Rows the rule selects: expired with nothing pointing at them.
    for _ in range(3):
        make_access_token(application, user, expires_in=-60)
        make_id_token(application, user, expires_in=-60)
    plan = CleanupPlan.from_settings()

    counted = cleanup._unreferenced_expired_count(phase, plan)

    if connection.vendor != "mysql":
        assert counted is None  # the anti-join is a hash join there: no shortcut taken
        return
    assert counted == anti_join_count(phase, plan.now) == 3
    # A later "now" moves live rows into E; the count follows.
    later = CleanupPlan.from_settings(plan.now + timedelta(hours=2))
    assert cleanup._unreferenced_expired_count(phase, later) == anti_join_count(phase, later.now)


def test_no_count_where_keep_if_younger_narrows_the_rule(kept_tokens):
    plan = CleanupPlan.from_settings(keep_if_younger=60)
    assert cleanup._unreferenced_expired_count(ACCESS_TOKENS, plan) is None
