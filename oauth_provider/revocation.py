"""Bulk revocation: every token of a user, of an application, of a user in one application, or
carrying a scope.

Revocation has two halves. :func:`record_watermark` writes one small row ("not valid before") for
the target, and :func:`is_revoked_by_watermark` makes every token check (introspection, protected
resources, refresh) refuse tokens issued before it: the revocation takes effect at once, however
many rows remain. The batch functions below then remove the rows, chunked by keyset like cleanup,
with the provider's own revocation semantics:

1. ``refresh_tokens``: marked revoked (``revoked = now``) and unlinked from their access token, as
   ``RefreshToken.revoke()`` does;
2. ``access_tokens``: deleted;
3. ``id_tokens``: deleted;
4. ``grants``: deleted.

Each batch re-evaluates its predicate, so running it twice does nothing more. With
``issued_before`` (the time of the watermark) a batch touches only rows created before it: the
rows the watermark already refuses, and never the tokens a client obtained after the revocation
(a rotated client secret, a user who logged in again). An ID token still held by an access token
that stays is kept, since deleting it would cascade to that access token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import models, router, transaction
from django.db.models import Exists, F, Func, OuterRef, Q, Value
from django.db.models.functions import Concat, StrIndex
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from .cleanup import BatchResult, delete_keyset_batch, id_token_link, keyset_batch, validate_batch_size
from .maintenance import NoAsyncDispatcher, get_async_dispatcher
from .models import (
    RevocationWatermark,
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    watermark_target_key,
)
from .watermark_cache import watermark_cache

logger = logging.getLogger(__name__)

REFRESH_TOKENS = "refresh_tokens"
ACCESS_TOKENS = "access_tokens"
ID_TOKENS = "id_tokens"
GRANTS = "grants"
PHASES: tuple[str, ...] = (REFRESH_TOKENS, ACCESS_TOKENS, ID_TOKENS, GRANTS)


def validate_scope_name(value: Any, name: str = "scope") -> str:
    """A single scope token (RFC 6749 3.3: printable ASCII except space, quote and backslash)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty scope name")
    bad = [ch for ch in value if not (0x21 <= ord(ch) <= 0x7E) or ch in '"\\']
    if bad:
        shown = "a space" if " " in bad else repr(bad[0])
        raise ValueError(
            f"{name} must be one scope name without spaces or quotes; {value!r} contains {shown}"
        )
    if len(value) > 255:
        raise ValueError(f"{name} must be at most 255 characters")
    return value


class _CaseSensitive(Func):
    """Its text expression unchanged, except on MySQL and MariaDB, where it becomes a binary
    string: their default collations ignore case (``Read`` = ``read``), a binary string compares
    bytes, as PostgreSQL and SQLite compare text."""

    template = "%(expressions)s"
    output_field = models.TextField()

    def as_mysql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="CAST(%(expressions)s AS BINARY)", **extra_context)


def scope_word_q(scope: str, field: str = "scope") -> Q:
    """Rows whose space-separated ``field`` contains ``scope`` as a whole word, case-sensitively.

    ``read`` matches ``"read write"`` but not ``"read:admin"`` nor ``"Read"``. ``StrIndex`` is
    ``INSTR`` on SQLite and MySQL and ``STRPOS`` on PostgreSQL; SQLite's and PostgreSQL's compare
    case-sensitively, MySQL's does once the text is a binary string (SQLite's ``LIKE`` would not).
    """
    padded = Concat(Value(" "), F(field), Value(" "), output_field=models.TextField())
    return Q(GreaterThan(StrIndex(_CaseSensitive(padded), Value(f" {scope} ")), 0))


@dataclass(frozen=True)
class RevocationTarget:
    """Whose tokens to revoke: a user, an application, both together, or a scope."""

    user_id: int | None = None
    application_id: int | None = None
    scope: str = ""

    def __post_init__(self) -> None:
        if self.scope:
            validate_scope_name(self.scope)
            if self.user_id is not None or self.application_id is not None:
                raise ValueError("scope: a scope revocation cannot also name a user or an application")
        elif self.user_id is None and self.application_id is None:
            raise ValueError("target: name a user, an application, both, or a scope")

    @property
    def kind(self) -> str:
        if self.scope:
            return "scope"
        if self.user_id is not None and self.application_id is not None:
            return "user_application"
        return "user" if self.user_id is not None else "application"

    def describe(self) -> str:
        if self.scope:
            return f"tokens carrying scope {self.scope!r}"
        parts = []
        if self.user_id is not None:
            parts.append(f"user {self.user_id}")
        if self.application_id is not None:
            parts.append(f"application {self.application_id}")
        return "tokens of " + " in ".join(parts)

    def job_params(self) -> dict[str, Any]:
        """The parameters of a ``revoke`` run of the maintenance worker for this target."""
        params: dict[str, Any] = {}
        if self.user_id is not None:
            params["user"] = self.user_id
        if self.application_id is not None:
            params["application"] = self.application_id
        if self.scope:
            params["scope"] = self.scope
        return params

    def owner_q(self) -> Q:
        q = Q()
        if self.user_id is not None:
            q &= Q(user_id=self.user_id)
        if self.application_id is not None:
            q &= Q(application_id=self.application_id)
        return q

    def predicate(self, phase: str, issued_before: datetime | None = None) -> Q:
        """The rows of ``phase`` that belong to this target and still need work.

        With ``issued_before``, only rows created before that time (those its watermark refuses).
        """
        q = self._predicate(phase)
        if issued_before is not None:
            q &= Q(created__lt=issued_before)
        if phase == ID_TOKENS and id_token_link(get_access_token_model()) is not None:
            # Deleting an ID token cascades to the access tokens pointing at it: keep an ID token
            # held by an access token the access token phase leaves (outside the target, or
            # issued after the watermark). Judged by predicate, so a dry run counts the same.
            staying = (
                get_access_token_model()
                ._base_manager.filter(id_token_id=OuterRef("pk"))
                .exclude(self.predicate(ACCESS_TOKENS, issued_before))
            )
            q &= ~Q(Exists(staying))
        return q

    def _predicate(self, phase: str) -> Q:
        if phase == REFRESH_TOKENS:
            if self.scope:
                carrying = get_access_token_model()._base_manager.filter(
                    scope_word_q(self.scope), pk=OuterRef("access_token_id")
                )
                return Q(revoked__isnull=True) & Q(Exists(carrying))
            return Q(revoked__isnull=True) & self.owner_q()
        if phase in (ACCESS_TOKENS, ID_TOKENS, GRANTS):
            return scope_word_q(self.scope) if self.scope else self.owner_q()
        raise ValueError(f"unknown revocation phase {phase!r}; phases are {', '.join(PHASES)}")


def phase_model(phase: str) -> type[models.Model]:
    return {
        REFRESH_TOKENS: get_refresh_token_model,
        ACCESS_TOKENS: get_access_token_model,
        ID_TOKENS: get_id_token_model,
        GRANTS: get_grant_model,
    }[phase]()


def record_watermark(
    target: RevocationTarget, at: datetime | None = None, reason: str = ""
) -> RevocationWatermark:
    """Make every token of ``target`` issued before ``at`` (default: now) invalid, in one small write."""
    at = at or timezone.now()
    key = watermark_target_key(target.application_id, target.user_id, target.scope)
    with transaction.atomic(using=router.db_for_write(RevocationWatermark)):
        mark, created = RevocationWatermark.objects.select_for_update().get_or_create(
            target_key=key,
            defaults={
                "application_id": target.application_id,
                "user_id": target.user_id,
                "scope": target.scope,
                "not_before": at,
                "reason": reason[:255],
            },
        )
        if not created and mark.not_before < at:
            mark.not_before = at
            mark.reason = reason[:255] or mark.reason
            mark.save(update_fields=["not_before", "reason", "updated"])
    return mark


def is_revoked_by_watermark(token: Any) -> bool:
    """True when a watermark of the token's application, user, user and application, or one of
    its scopes, is later than the token's creation.

    The watermarks come from this process's copy while the shared generation says it is current
    (:mod:`oauth_provider.watermark_cache`); otherwise from one query over the unique
    ``target_key``."""
    created = getattr(token, "created", None)
    if created is None:
        return False
    application_id = getattr(token, "application_id", None)
    user_id = getattr(token, "user_id", None)
    keys = []
    if application_id is not None:
        keys.append(watermark_target_key(application_id, None, ""))
    if user_id is not None:
        keys.append(watermark_target_key(None, user_id, ""))
    if application_id is not None and user_id is not None:
        keys.append(watermark_target_key(application_id, user_id, ""))
    scope_text = getattr(token, "scope", None)
    if scope_text is None:
        access_token = getattr(token, "access_token", None)
        scope_text = getattr(access_token, "scope", "") if access_token is not None else ""
    keys.extend(watermark_target_key(None, None, scope) for scope in scope_text.split())
    if not keys:
        return False
    return any(not_before > created for not_before in watermark_cache.not_before(keys).values())


def run_revocation_batch(
    phase: str,
    target: RevocationTarget,
    *,
    batch_size: int,
    cursor: Any = None,
    now: datetime | None = None,
    dry_run: bool = False,
    issued_before: datetime | None = None,
) -> BatchResult:
    """One batch of ``phase`` for ``target``: at most ``batch_size`` rows above ``cursor``.

    ``issued_before`` limits the batch to rows created before that time (the watermark's).
    """
    batch_size = validate_batch_size(batch_size)
    model = phase_model(phase)
    predicate = target.predicate(phase, issued_before)
    if phase != REFRESH_TOKENS:
        return delete_keyset_batch(
            model, predicate, phase=phase, cursor=cursor, batch_size=batch_size, dry_run=dry_run
        )
    now = now or timezone.now()
    return keyset_batch(
        model,
        predicate,
        phase=phase,
        cursor=cursor,
        batch_size=batch_size,
        dry_run=dry_run,
        change=lambda rows, using: rows.update(revoked=now, access_token=None, updated=now),
    )


def revoke_all(
    target: RevocationTarget, *, batch_size: int = 10_000, reason: str = "", dry_run: bool = False
) -> dict[str, int]:
    """Revoke in process: the watermark, then every phase to the end. For shells and small targets;
    the maintenance worker runs the same batches as a job."""
    now = timezone.now()
    if not dry_run:
        record_watermark(target, at=now, reason=reason)
    totals = dict.fromkeys(PHASES, 0)
    for phase in PHASES:
        cursor = None
        while True:
            result = run_revocation_batch(
                phase,
                target,
                batch_size=batch_size,
                cursor=cursor,
                now=now,
                dry_run=dry_run,
                issued_before=now,
            )
            totals[phase] += result.deleted
            cursor = result.cursor
            if result.done:
                break
    return totals


#: Rows per phase :func:`revoke_from_request` may change inside a request when no maintenance
#: worker takes the run: one batch per phase, whatever the target holds.
REQUEST_BATCH_SIZE = 1000


def revoke_from_request(target: RevocationTarget, *, trigger: str, triggered_by: str = "", reason: str = ""):
    """Revoke ``target`` from inside a web request: in force at once, with bounded work here.

    The watermark refuses every credential of the target issued before now (access, refresh and
    ID tokens, codes), in one small write. The rows then go to a ``revoke`` run of the maintenance
    worker, through the dispatcher it registers (:mod:`oauth_provider.maintenance`), and the run
    is returned. With no dispatcher, or one that fails (a broker that is down: the run, if it was
    created, is picked up again by the worker's watchdog), one batch of at most
    :data:`REQUEST_BATCH_SIZE` rows per phase is done here and None is returned; what remains
    stays refused until :func:`revoke_all` or a revocation run removes it.
    """
    now = timezone.now()
    record_watermark(target, at=now, reason=reason)
    try:
        dispatch = get_async_dispatcher()
        params = target.job_params()
        run, _created = dispatch("revoke", params, trigger=trigger, triggered_by=triggered_by[:255])
        return run
    except NoAsyncDispatcher:
        pass
    except Exception:
        logger.warning(
            "revocation of %s not handed to the maintenance worker; one batch per phase runs here",
            target.describe(),
            exc_info=True,
        )
    for phase in PHASES:
        run_revocation_batch(phase, target, batch_size=REQUEST_BATCH_SIZE, now=now, issued_before=now)
    return None
