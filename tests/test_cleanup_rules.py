"""Cleanup deletes exactly what django-oauth-toolkit 3.4's clear_expired() selects, and no live token.

The expected outcome is computed independently by ``CleanupDataset.expected`` from the rows'
attributes; the cleanup under test runs its own SQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models.signals import post_delete, pre_delete

from oauth_provider import cleanup
from oauth_provider.cleanup import PHASES, CleanupPlan, clear_expired, run_phase_batch
from oauth_provider.settings import DEFAULTS

# Reuse protection is on by default here (off in django-oauth-toolkit): every config says which.
DOT_DEFAULTS = {"REFRESH_TOKEN_REUSE_PROTECTION": False}
CONFIGS = {
    "defaults": {},
    "dot-defaults": DOT_DEFAULTS,
    "grace": {**DOT_DEFAULTS, "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 3600},
    "expire": {**DOT_DEFAULTS, "REFRESH_TOKEN_EXPIRE_SECONDS": 86400},
    "expire+grace": {
        **DOT_DEFAULTS,
        "REFRESH_TOKEN_EXPIRE_SECONDS": 86400,
        "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 60,
    },
    "reuse+expire": {"REFRESH_TOKEN_EXPIRE_SECONDS": 86400, "REFRESH_TOKEN_REUSE_PROTECTION": True},
    "reuse-without-expire": {"REFRESH_TOKEN_REUSE_PROTECTION": True},
    "expire-as-timedelta": {**DOT_DEFAULTS, "REFRESH_TOKEN_EXPIRE_SECONDS": timedelta(days=1)},
}


def configure(settings, overrides: dict) -> dict:
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, **overrides}
    expire = overrides.get("REFRESH_TOKEN_EXPIRE_SECONDS")
    if isinstance(expire, timedelta):
        expire = int(expire.total_seconds())
    return {
        "grace": overrides.get("REFRESH_TOKEN_GRACE_PERIOD_SECONDS", 0),
        "expire": expire,
        "reuse": overrides.get("REFRESH_TOKEN_REUSE_PROTECTION", DEFAULTS["REFRESH_TOKEN_REUSE_PROTECTION"]),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("batch_size", [1, 3, 10_000])
def test_clear_expired_deletes_exactly_the_rows_the_rules_select(
    settings, cleanup_dataset, config, batch_size
):
    rule = configure(settings, CONFIGS[config])
    ds = cleanup_dataset(grace=rule["grace"] or 3600, expire=rule["expire"] or 86400)
    expected_kept, expected_counts = ds.expected(**rule)
    before = ds.snapshot()

    counts = clear_expired(now=ds.now, batch_size=batch_size, interval=0)

    assert counts == expected_counts
    assert ds.kept_now() == expected_kept
    assert sum(counts.values()) > 0
    # Live rows are never touched: every access token, ID token and grant that has not expired stays.
    after = ds.snapshot()
    assert {k for k, a in before["access"].items() if a["expires"] >= ds.now} <= set(after["access"])
    assert {k for k, i in before["id"].items() if i["expires"] >= ds.now} <= set(after["id"])
    assert {k for k, g in before["grant"].items() if g["expires"] >= ds.now} <= set(after["grant"])


@pytest.mark.django_db
def test_deleted_refresh_tokens_unlink_the_access_tokens_minted_from_them(settings, cleanup_dataset):
    configure(settings, DOT_DEFAULTS)  # revoked refresh tokens are deleted, not kept for reuse detection
    ds = cleanup_dataset()
    before = ds.snapshot()
    sources = {
        k: a["source_refresh_token_id"] for k, a in before["access"].items() if a["source_refresh_token_id"]
    }
    assert sources

    clear_expired(now=ds.now)

    after = ds.snapshot()
    for access_id, source_id in sources.items():
        assert access_id in after["access"], "a live rotated access token was deleted"
        expected_link = source_id if source_id in after["refresh"] else None
        assert after["access"][access_id]["source_refresh_token_id"] == expected_link
    assert any(after["access"][k]["source_refresh_token_id"] is None for k in sources)


@pytest.mark.django_db
@pytest.mark.parametrize("config", ["defaults", "expire", "reuse+expire"])
def test_dry_run_counts_what_a_real_run_deletes_and_changes_nothing(settings, cleanup_dataset, config):
    rule = configure(settings, CONFIGS[config])
    ds = cleanup_dataset(expire=rule["expire"] or 86400)
    _, expected_counts = ds.expected(**rule)
    before = ds.snapshot()

    dry = clear_expired(now=ds.now, batch_size=2, dry_run=True)

    assert ds.snapshot() == before
    assert dry == expected_counts
    assert clear_expired(now=ds.now, batch_size=2) == dry


@pytest.mark.django_db
def test_a_second_run_finds_nothing_and_a_repeated_batch_deletes_nothing(settings, cleanup_dataset):
    configure(settings, CONFIGS["expire"])
    ds = cleanup_dataset()
    plan = CleanupPlan.from_settings(ds.now)
    first = run_phase_batch(cleanup.ACCESS_TOKENS, now=plan, batch_size=2)
    assert first.deleted == 2 and not first.done
    again = run_phase_batch(cleanup.ACCESS_TOKENS, now=plan, batch_size=2, cursor=None)
    # The same window again: the rows already went, the predicate is evaluated afresh.
    assert again.cursor > first.cursor or again.deleted == 0
    clear_expired(now=ds.now)
    assert sum(clear_expired(now=ds.now).values()) == 0


@pytest.mark.django_db
def test_batches_walk_the_primary_key_upwards(settings, cleanup_dataset):
    configure(settings, {})
    ds = cleanup_dataset()
    cursors = []
    cursor = None
    while True:
        result = run_phase_batch(cleanup.GRANTS, now=ds.now, batch_size=1, cursor=cursor)
        if result.deleted:
            cursors.append(result.cursor)
        cursor = result.cursor
        if result.done:
            break
    assert cursors == sorted(cursors) and len(cursors) == 2


@pytest.mark.django_db
def test_delete_signal_receivers_are_honoured_through_the_orm(settings, cleanup_dataset):
    configure(settings, {})
    ds = cleanup_dataset()
    expected_kept, expected_counts = ds.expected()
    access_model = ds.models["access"]
    seen_pre, seen_post = [], []

    def on_pre(sender, instance, **kwargs):
        seen_pre.append(instance.pk)

    def on_post(sender, instance, **kwargs):
        seen_post.append(instance.pk)

    pre_delete.connect(on_pre, sender=access_model, weak=False)
    post_delete.connect(on_post, sender=access_model, weak=False)
    try:
        counts = clear_expired(now=ds.now, batch_size=2)
    finally:
        pre_delete.disconnect(on_pre, sender=access_model)
        post_delete.disconnect(on_post, sender=access_model)

    assert counts == expected_counts
    assert ds.kept_now() == expected_kept
    assert len(seen_post) == counts["access_tokens"] == len(seen_pre)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides",
    [
        {"REFRESH_TOKEN_GRACE_PERIOD_SECONDS": -1},
        {"REFRESH_TOKEN_GRACE_PERIOD_SECONDS": "an hour"},
        {"REFRESH_TOKEN_EXPIRE_SECONDS": -5},
        {"REFRESH_TOKEN_EXPIRE_SECONDS": "soon"},
        {"REFRESH_TOKEN_EXPIRE_SECONDS": timedelta(seconds=-1)},
        {"CLEAR_EXPIRED_TOKENS_BATCH_SIZE": 0},
        {"CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL": -1},
    ],
)
def test_negative_or_non_numeric_settings_are_improperly_configured(settings, cleanup_dataset, overrides):
    ds = cleanup_dataset()
    before = ds.snapshot()
    configure(settings, overrides)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        clear_expired(now=ds.now)
    assert next(iter(overrides)) in str(excinfo.value)
    assert ds.snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", [0, -1, 100_001, "ten", 1.5, True])
def test_out_of_range_batch_size_is_refused_by_name(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        clear_expired(batch_size=batch_size)


@pytest.mark.django_db
@pytest.mark.parametrize("interval", [-1, 3601, "later", float("nan")])
def test_out_of_range_interval_is_refused_by_name(interval):
    with pytest.raises(ValueError, match="interval"):
        clear_expired(interval=interval)


@pytest.mark.django_db
def test_progress_is_reported_after_every_batch_and_totals_match(settings, cleanup_dataset):
    configure(settings, {})
    ds = cleanup_dataset()
    reports = []
    counts = clear_expired(
        now=ds.now, batch_size=1, progress=lambda result, totals: reports.append((result, totals))
    )
    assert reports[-1][1] == counts
    assert {result.phase for result, _ in reports} <= set(PHASES)
    assert sum(result.deleted for result, _ in reports) == sum(counts.values())


@pytest.mark.django_db
def test_models_module_exposes_clear_expired_like_django_oauth_toolkit(settings, cleanup_dataset):
    from oauth_provider.models import clear_expired as models_clear_expired

    configure(settings, {})
    ds = cleanup_dataset()
    expected_kept, expected_counts = ds.expected()
    assert models_clear_expired(now=ds.now) == expected_counts
    assert ds.kept_now() == expected_kept
