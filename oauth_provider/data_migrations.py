"""Bulk data migrations over the provider's tables, one bounded batch at a time.

Each function here is one batch: it takes a cursor and a batch size, changes at most that many
rows with one read of the window and one write, returns a :class:`~oauth_provider.cleanup.BatchResult`
whose ``deleted`` field counts the rows changed, and on a dry run only counts. Every batch selects
the rows that still need the change, so running a batch twice changes nothing more, and a run
can resume from any cursor.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import models, router, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from .cleanup import (
    BatchResult,
    delete_keyset_batch,
    json_cursor,
    keyset_batch,
    keyset_window,
    validate_batch_size,
)
from .models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    is_hashed_secret,
)
from .revocation import scope_word_q, validate_scope_name

SCOPE_PHASES: tuple[str, ...] = ("access_tokens", "id_tokens", "grants")


def scope_phase_model(phase: str) -> type[models.Model]:
    return {
        "access_tokens": get_access_token_model,
        "id_tokens": get_id_token_model,
        "grants": get_grant_model,
    }[phase]()


def validate_scope_mapping(mapping: Any, name: str = "mapping") -> dict[str, list[str]]:
    """``{old: [new, ...]}``: rename (one new), split (several new) or merge (several olds, same new).

    No new scope may also be an old one: the change would then apply again on every run, and a
    run would not be idempotent.
    """
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"{name} must be a non-empty object of old scope to new scope(s)")
    clean: dict[str, list[str]] = {}
    for old, new in mapping.items():
        validate_scope_name(old, f"{name}.{old}")
        news = [new] if isinstance(new, str) else new
        if not isinstance(news, list) or not news:
            raise ValueError(f"{name}.{old} must be a scope name or a non-empty list of scope names")
        for item in news:
            validate_scope_name(item, f"{name}.{old}")
        clean[old] = list(dict.fromkeys(news))
    overlap = sorted({n for news in clean.values() for n in news} & set(clean))
    if overlap:
        raise ValueError(f"{name}: {', '.join(overlap)} is both renamed and a rename target")
    return clean


def rewrite_scope_text(scope: str, mapping: dict[str, list[str]]) -> str:
    """The scope string with each old word replaced by its new words, first occurrence kept."""
    words: list[str] = []
    for word in scope.split():
        words.extend(mapping.get(word, [word]))
    return " ".join(dict.fromkeys(words))


def rewrite_scopes_batch(
    phase: str,
    mapping: dict[str, list[str]],
    *,
    batch_size: int,
    cursor: Any = None,
    dry_run: bool = False,
) -> BatchResult:
    """Rewrite the scopes of at most ``batch_size`` rows of ``phase`` that carry an old scope word."""
    batch_size = validate_batch_size(batch_size)
    model = scope_phase_model(phase)
    predicate = Q()
    for old in mapping:
        predicate |= scope_word_q(old)

    def rewrite(rows: models.QuerySet, using: str) -> int:
        # At most batch_size rows: read them under lock, rewrite in Python, write back in one UPDATE.
        changed = []
        for row in rows.select_for_update().only("pk", "scope"):
            new_scope = rewrite_scope_text(row.scope, mapping)
            if new_scope != row.scope:
                row.scope = new_scope
                changed.append(row)
        if changed:
            model._base_manager.bulk_update(changed, ["scope"], batch_size=len(changed))
        return len(changed)

    return keyset_batch(
        model, predicate, phase=phase, cursor=cursor, batch_size=batch_size, dry_run=dry_run, change=rewrite
    )


def legacy_secret_q() -> Q:
    """Applications that should hold a hashed secret. Every Django hash contains ``$``; a row
    without one is certainly plaintext, a row with one is checked in Python."""
    return Q(hash_client_secret=True) & ~Q(client_secret="")


def hash_client_secrets_batch(*, batch_size: int, cursor: Any = None, dry_run: bool = False) -> BatchResult:
    """Hash the plaintext client secrets of at most ``batch_size`` applications; hashed ones stay."""
    batch_size = validate_batch_size(batch_size)
    model = get_application_model()
    predicate = legacy_secret_q()
    using = router.db_for_write(model)
    with transaction.atomic(using=using):
        count, last = keyset_window(model, predicate, cursor=cursor, batch_size=batch_size, using=using)
        if count == 0:
            return BatchResult(
                phase="client_secrets", deleted=0, cursor=json_cursor(cursor), done=True, dry_run=dry_run
            )
        rows = model._base_manager.filter(predicate, pk__lte=last)
        if cursor is not None:
            rows = rows.filter(pk__gt=cursor)
        if not dry_run:
            rows = rows.select_for_update()
        plaintext = [
            app for app in rows.only("pk", "client_secret") if not is_hashed_secret(app.client_secret)
        ]
        if not dry_run:
            for app in plaintext:
                app.client_secret = make_password(app.client_secret)
            if plaintext:
                model._base_manager.bulk_update(plaintext, ["client_secret"], batch_size=len(plaintext))
    return BatchResult(
        phase="client_secrets",
        deleted=len(plaintext),
        cursor=json_cursor(last),
        done=count < batch_size,
        dry_run=dry_run,
    )


def inactive_applications_q(days: int, now: datetime | None = None) -> Q:
    """Applications older than ``days`` with no token or grant created in that time and no live token.

    Live: an access token not yet expired, or a refresh token not revoked.
    """
    now = now or timezone.now()
    since = now - timedelta(days=days)
    access = get_access_token_model()._base_manager.filter(application=OuterRef("pk"))
    refresh = get_refresh_token_model()._base_manager.filter(application=OuterRef("pk"))
    grants = get_grant_model()._base_manager.filter(application=OuterRef("pk"))
    return (
        Q(created__lt=since)
        & ~Q(Exists(access.filter(Q(created__gte=since) | Q(expires__gt=now))))
        & ~Q(Exists(refresh.filter(Q(created__gte=since) | Q(revoked__isnull=True))))
        & ~Q(Exists(grants.filter(created__gte=since)))
    )


def list_inactive_applications(days: int, *, now: datetime | None = None, limit: int = 1000) -> list[dict]:
    """What a removal would delete, for the dry run's listing: id, client id, name, created."""
    model = get_application_model()
    rows = model._base_manager.filter(inactive_applications_q(days, now)).order_by("pk")[:limit]
    return [
        {"id": app.pk, "client_id": app.client_id, "name": app.name, "created": app.created.isoformat()}
        for app in rows.only("pk", "client_id", "name", "created")
    ]


def remove_inactive_applications_batch(
    days: int, *, now: datetime, batch_size: int, cursor: Any = None, dry_run: bool = False
) -> BatchResult:
    """Delete at most ``batch_size`` inactive applications (and, by cascade, their dead tokens)."""
    return delete_keyset_batch(
        get_application_model(),
        inactive_applications_q(days, now),
        phase="applications",
        cursor=cursor,
        batch_size=validate_batch_size(batch_size),
        dry_run=dry_run,
    )
