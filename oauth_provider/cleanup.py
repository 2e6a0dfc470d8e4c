"""Chunked cleanup of expired and revoked tokens, ID tokens and grants.

The provider decides *what* a cleanup batch removes; the maintenance worker (``oauth_tasks``)
decides when and where batches run. Both the synchronous :func:`clear_expired` loop and the Celery
job call the same batch functions, so the rules exist once.

The rules are those of django-oauth-toolkit 3.4's ``clear_expired()``, evaluated against one
frozen ``now`` per run, in an order that never breaks a foreign key:

1. ``revoked_refresh_tokens``: revoked at or before ``now - REFRESH_TOKEN_GRACE_PERIOD_SECONDS``;
   with ``REFRESH_TOKEN_REUSE_PROTECTION`` on, revoked at or before
   ``now - REFRESH_TOKEN_EXPIRE_SECONDS`` instead (none at all when that is unset).
2. ``orphaned_refresh_tokens``: not revoked and without an access token, whatever their age.
3. ``expired_refresh_tokens`` (only with ``REFRESH_TOKEN_EXPIRE_SECONDS``): not revoked and whose
   access token expired at or before ``now - REFRESH_TOKEN_EXPIRE_SECONDS``.
4. ``access_tokens``: no refresh token points at them and ``expires < now``.
5. ``id_tokens``: no access token points at them and ``expires < now``.
6. ``grants``: ``expires < now``.

A batch walks the primary key (keyset): it finds the next ``batch_size`` matching keys above the
cursor with one indexed query that returns only their count and the largest key, then deletes the
rows of that key range that still match the predicate with one set-based ``DELETE``. No id list
travels through Python, no ``OFFSET``, no count of the whole table. Because the predicate is
evaluated again by the ``DELETE`` itself, re-running a batch (a redelivered task, a rolled back
transaction) only removes what still qualifies.

On-delete rules of the models are honoured in SQL: links declared ``SET_NULL`` towards the deleted
rows are cleared by one ``UPDATE`` per relation before the ``DELETE``. If a batch would have to
cascade into, or be blocked by, another table (``CASCADE`` rows that exist, ``PROTECT``,
``RESTRICT``, ``SET_DEFAULT``, ``SET(...)``), or if ``pre_delete``/``post_delete`` receivers are
connected for the model, that batch falls back to Django's ORM ``delete()`` of the same bounded
key range, which runs the collector and sends the signals, exactly as django-oauth-toolkit does.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import connections, models, router, transaction
from django.db.models import Exists, F, Max, Min, OuterRef, Q
from django.db.models.deletion import DO_NOTHING, SET_NULL, get_candidate_relations_to_delete
from django.db.models.signals import post_delete, pre_delete
from django.utils import timezone

from .settings import oauth2_settings

logger = logging.getLogger(__name__)

#: Bounds of a batch size and of the pause between batches, shared by every entry point
#: (settings, ``cleartokens`` options, dispatched runs).
MIN_BATCH_SIZE = 1
MAX_BATCH_SIZE = 100_000
MIN_INTERVAL = 0
MAX_INTERVAL = 3600

REVOKED_REFRESH_TOKENS = "revoked_refresh_tokens"
ORPHANED_REFRESH_TOKENS = "orphaned_refresh_tokens"
EXPIRED_REFRESH_TOKENS = "expired_refresh_tokens"
ACCESS_TOKENS = "access_tokens"
ID_TOKENS = "id_tokens"
GRANTS = "grants"

#: The phases of a cleanup, in the order that keeps every foreign key valid.
PHASES: tuple[str, ...] = (
    REVOKED_REFRESH_TOKENS,
    ORPHANED_REFRESH_TOKENS,
    EXPIRED_REFRESH_TOKENS,
    ACCESS_TOKENS,
    ID_TOKENS,
    GRANTS,
)

PHASE_LABELS = {
    REVOKED_REFRESH_TOKENS: "Revoked refresh tokens",
    ORPHANED_REFRESH_TOKENS: "Orphaned refresh tokens",
    EXPIRED_REFRESH_TOKENS: "Expired refresh tokens",
    ACCESS_TOKENS: "Expired access tokens",
    ID_TOKENS: "Expired ID tokens",
    GRANTS: "Expired grants",
}


# --------------------------------------------------------------------------------------------
# Settings


def _seconds_setting(name: str) -> timedelta | None:
    """A seconds setting as a timedelta (None when unset or zero, as django-oauth-toolkit reads it).

    Raises ImproperlyConfigured naming the setting when the value is negative or not a number.
    """
    value = getattr(oauth2_settings, name)
    if value is None:
        return None
    if isinstance(value, timedelta):
        delta = value
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise ImproperlyConfigured(f"{name} must be a number of seconds or a timedelta, got {value!r}")
        try:
            delta = timedelta(seconds=float(value))
        except (OverflowError, ValueError) as exc:
            raise ImproperlyConfigured(f"{name} must be a number of seconds, got {value!r}") from exc
    if delta < timedelta(0):
        raise ImproperlyConfigured(f"{name} must not be negative, got {value!r}")
    return delta or None


def validate_batch_size(value: Any, name: str = "batch_size") -> int:
    """``value`` as a batch size, or ValueError naming ``name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("+").isdigit():
            value = int(value)
        else:
            raise ValueError(
                f"{name} must be an integer between {MIN_BATCH_SIZE} and {MAX_BATCH_SIZE}, got {value!r}"
            )
    if not MIN_BATCH_SIZE <= value <= MAX_BATCH_SIZE:
        raise ValueError(f"{name} must be between {MIN_BATCH_SIZE} and {MAX_BATCH_SIZE}, got {value}")
    return value


def validate_interval(value: Any, name: str = "interval") -> float:
    """``value`` as a pause in seconds between batches, or ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number of seconds between {MIN_INTERVAL} and {MAX_INTERVAL}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(
                f"{name} must be a number of seconds between {MIN_INTERVAL} and {MAX_INTERVAL}, got {value!r}"
            ) from None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if not isinstance(value, (int, float, Decimal)) or value != value:  # NaN is not a number of seconds
        raise ValueError(
            f"{name} must be a number of seconds between {MIN_INTERVAL} and {MAX_INTERVAL}, got {value!r}"
        )
    if not MIN_INTERVAL <= value <= MAX_INTERVAL:
        raise ValueError(f"{name} must be between {MIN_INTERVAL} and {MAX_INTERVAL} seconds, got {value}")
    return float(value)


#: ``only``: the phases each group of a cleanup covers (Hydra's janitor names).
PHASE_GROUPS: dict[str, tuple[str, ...]] = {
    "tokens": (REVOKED_REFRESH_TOKENS, ORPHANED_REFRESH_TOKENS, EXPIRED_REFRESH_TOKENS, ACCESS_TOKENS),
    "id_tokens": (ID_TOKENS,),
    "grants": (GRANTS,),
}
#: ``keep_if_younger`` accepts up to ten years.
MAX_KEEP_SECONDS = 10 * 365 * 86400
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")


def validate_limit(value: Any, name: str = "limit") -> int:
    """``value`` as the most rows a cleanup removes (a positive integer), or ValueError naming ``name``."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of rows, got {value!r}")
    return value


def validate_only(value: Any, name: str = "only") -> list[str]:
    """``value`` ("tokens,grants" or a list) as group names in phase order, or ValueError naming ``name``."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must name one or more of {', '.join(PHASE_GROUPS)}, got {value!r}")
    unknown = sorted(set(value) - set(PHASE_GROUPS))
    if unknown:
        raise ValueError(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(PHASE_GROUPS)}")
    return [group for group in PHASE_GROUPS if group in value]


def validate_duration(value: Any, name: str = "keep_if_younger") -> int:
    """``value`` (seconds, or "90d", "12h", "1h30m") as whole seconds, or ValueError naming ``name``."""
    seconds = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            seconds = int(text)
        elif text and _DURATION.sub("", text) == "":
            seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION.findall(text))
    if seconds is None:
        raise ValueError(f"{name} must be a duration like 3600, 90m, 12h or 30d, got {value!r}")
    if not 0 <= seconds <= MAX_KEEP_SECONDS:
        raise ValueError(
            f"{name} must be between 0 and {MAX_KEEP_SECONDS} seconds (ten years), got {seconds}"
        )
    return seconds


def selected_phases(only: list[str] | None) -> tuple[str, ...]:
    """The phases a cleanup limited to the groups ``only`` runs, in order (all without ``only``)."""
    if not only:
        return PHASES
    chosen = {phase for group in only for phase in PHASE_GROUPS[group]}
    return tuple(phase for phase in PHASES if phase in chosen)


def phase_counts(
    plan: CleanupPlan, phases: tuple[str, ...] = PHASES, count: Callable[[models.QuerySet], int] | None = None
) -> dict[str, int]:
    """What a dry run would count per phase, by one count per phase (``count`` may estimate instead)."""
    count = count or (lambda rows: rows.count())
    return {
        phase: count(phase_model(phase)._default_manager.filter(phase_predicate(phase, plan, dry_run=True)))
        if phase_is_active(phase, plan)
        else 0
        for phase in phases
    }


def default_batch_size() -> int:
    """``CLEAR_EXPIRED_TOKENS_BATCH_SIZE``, checked against the engine's bounds."""
    try:
        return validate_batch_size(
            oauth2_settings.CLEAR_EXPIRED_TOKENS_BATCH_SIZE, "CLEAR_EXPIRED_TOKENS_BATCH_SIZE"
        )
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def default_interval() -> float:
    """``CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL``, checked against the engine's bounds."""
    try:
        return validate_interval(
            oauth2_settings.CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL, "CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL"
        )
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


@dataclass(frozen=True)
class CleanupPlan:
    """The cutoffs of one cleanup run, derived once from a frozen ``now`` and the settings."""

    now: datetime
    #: Rule 1 deletes refresh tokens revoked at or before this; None: rule 1 deletes nothing.
    refresh_revoked_before: datetime | None
    #: Rule 3 deletes refresh tokens whose access token expired at or before this; None: rule 3 off.
    refresh_expired_before: datetime | None
    #: ``keep_if_younger``: only rows created before this are deleted, on top of the rules; None: all.
    created_before: datetime | None = None

    @classmethod
    def from_settings(
        cls, now: datetime | None = None, *, keep_if_younger: float | None = None
    ) -> CleanupPlan:
        """Read the settings the way django-oauth-toolkit 3.4 does; bad values are ImproperlyConfigured.

        ``keep_if_younger`` (seconds) keeps every row created less than that long before ``now``.
        """
        now = now or timezone.now()
        if timezone.is_naive(now):
            raise ValueError("now must be an aware datetime")
        revoked_before: datetime | None = now
        grace = _seconds_setting("REFRESH_TOKEN_GRACE_PERIOD_SECONDS")
        if grace:
            revoked_before = now - grace
        expire = _seconds_setting("REFRESH_TOKEN_EXPIRE_SECONDS")
        expired_before = now - expire if expire else None
        if oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION:
            # Revoked tokens are what lets the reuse of a rotated token be detected: they stay
            # until they would have expired (forever when refresh tokens never expire).
            revoked_before = expired_before
        return cls(
            now=now,
            refresh_revoked_before=revoked_before,
            refresh_expired_before=expired_before,
            created_before=now - timedelta(seconds=keep_if_younger) if keep_if_younger else None,
        )


# --------------------------------------------------------------------------------------------
# Predicates


def _models():
    from .models import (
        get_access_token_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )

    return get_refresh_token_model(), get_access_token_model(), get_id_token_model(), get_grant_model()


def _never() -> Q:
    return Q(pk__in=[])


def _old_enough(plan: CleanupPlan) -> Q:
    """Rows ``keep_if_younger`` keeps are never deleted, whatever rule would delete them."""
    return Q(created__lt=plan.created_before) if plan.created_before is not None else Q()


def _revoked_refresh_q(plan: CleanupPlan) -> Q:
    if plan.refresh_revoked_before is None:
        return _never()
    return Q(revoked__lte=plan.refresh_revoked_before) & _old_enough(plan)


def _orphaned_refresh_q(plan: CleanupPlan) -> Q:
    return Q(revoked__isnull=True, access_token__isnull=True) & _old_enough(plan)


def _expired_refresh_q(plan: CleanupPlan) -> Q:
    if plan.refresh_expired_before is None:
        return _never()
    _, access_model, _, _ = _models()
    expired_access = access_model._base_manager.filter(
        pk=OuterRef("access_token_id"), expires__lte=plan.refresh_expired_before
    )
    return Q(revoked__isnull=True) & Q(Exists(expired_access)) & _old_enough(plan)


def _access_token_q(plan: CleanupPlan, dry_run: bool, cursor: Any = None) -> Q:
    refresh_model, _, _, _ = _models()
    pointing = refresh_model._base_manager.filter(access_token=OuterRef("pk"))
    if cursor is not None:
        # The batch only looks at keys above the cursor, so only links above it can match. Saying
        # so lets PostgreSQL start its anti-join's index scan at the cursor instead of at the
        # start of the index every batch, which made the phase quadratic in the table size.
        pointing = pointing.filter(access_token_id__gt=cursor)
    if dry_run:
        # Nothing was deleted by the refresh phases of a dry run: count as if they had run, so a
        # dry run reports what a real run would delete. Orphans (rule 2) never point at a token.
        pointing = pointing.exclude(_revoked_refresh_q(plan)).exclude(_expired_refresh_q(plan))
    return Q(expires__lt=plan.now) & ~Q(Exists(pointing)) & _old_enough(plan)


def id_token_link(access_model: type[models.Model]):
    """The access token model's ``id_token`` link, or None for a swapped model without one
    (then no access token keeps an ID token, and rule 5 is its expiry alone)."""
    try:
        return access_model._meta.get_field("id_token")
    except FieldDoesNotExist:
        return None


def _id_token_q(plan: CleanupPlan, dry_run: bool, cursor: Any = None) -> Q:
    _, access_model, _, _ = _models()
    if id_token_link(access_model) is None:
        return Q(expires__lt=plan.now) & _old_enough(plan)
    pointing = access_model._base_manager.filter(id_token=OuterRef("pk"))
    if cursor is not None:
        pointing = pointing.filter(id_token_id__gt=cursor)  # as for access tokens above
    if dry_run:
        pointing = pointing.exclude(_access_token_q(plan, dry_run=True))
    return Q(expires__lt=plan.now) & ~Q(Exists(pointing)) & _old_enough(plan)


def _grant_q(plan: CleanupPlan) -> Q:
    return Q(expires__lt=plan.now) & _old_enough(plan)


def phase_model(phase: str) -> type[models.Model]:
    """The (possibly swapped) model a phase deletes from."""
    refresh_model, access_model, id_model, grant_model = _models()
    return {
        REVOKED_REFRESH_TOKENS: refresh_model,
        ORPHANED_REFRESH_TOKENS: refresh_model,
        EXPIRED_REFRESH_TOKENS: refresh_model,
        ACCESS_TOKENS: access_model,
        ID_TOKENS: id_model,
        GRANTS: grant_model,
    }[phase]


def phase_predicate(phase: str, plan: CleanupPlan, *, dry_run: bool = False, cursor: Any = None) -> Q:
    """The rows ``phase`` deletes, as a filter on :func:`phase_model`.

    ``cursor`` is the key the batch starts above: it narrows correlated subqueries to the same
    range (an optimisation only; rows above the cursor are selected exactly as without it).
    """
    if phase == REVOKED_REFRESH_TOKENS:
        return _revoked_refresh_q(plan)
    if phase == ORPHANED_REFRESH_TOKENS:
        return _orphaned_refresh_q(plan)
    if phase == EXPIRED_REFRESH_TOKENS:
        return _expired_refresh_q(plan)
    if phase == ACCESS_TOKENS:
        return _access_token_q(plan, dry_run, cursor)
    if phase == ID_TOKENS:
        return _id_token_q(plan, dry_run, cursor)
    if phase == GRANTS:
        return _grant_q(plan)
    raise ValueError(f"unknown cleanup phase {phase!r}; phases are {', '.join(PHASES)}")


def phase_is_active(phase: str, plan: CleanupPlan) -> bool:
    """False for a phase the settings switch off (rule 1 under reuse protection, rule 3 unset)."""
    if phase == REVOKED_REFRESH_TOKENS:
        return plan.refresh_revoked_before is not None
    if phase == EXPIRED_REFRESH_TOKENS:
        return plan.refresh_expired_before is not None
    return True


# --------------------------------------------------------------------------------------------
# One batch


@dataclass(frozen=True)
class BatchResult:
    """What one batch did.

    ``deleted`` is the number of rows removed (on a dry run: that would be removed); ``cursor``
    the largest key the batch covered (the next batch starts above it); ``done`` that the phase
    has nothing left above the cursor. ``unlinked`` counts the ``SET NULL`` updates per
    relation, and ``orm_fallback`` says the batch went through Django's collector.
    ``also_deleted`` counts rows of *later* phases the batch removed on the way, by phase name.
    """

    phase: str
    deleted: int
    cursor: Any
    done: bool
    dry_run: bool = False
    unlinked: dict[str, int] = field(default_factory=dict)
    orm_fallback: bool = False
    also_deleted: dict[str, int] = field(default_factory=dict)


def json_cursor(value: Any) -> Any:
    """Keys are stored in a run's JSON: integers stay integers, anything else becomes text."""
    if value is None or isinstance(value, int):
        return value
    return str(value)


def _window_bounds(model, window, using: str) -> tuple[int, Any, Any]:
    """Count, smallest and largest key of the keyset window, in one query returning one row."""
    connection = connections[using]
    sql, params = window.query.get_compiler(using).as_sql()
    key = connection.ops.quote_name("cleanup_key")
    with connection.cursor() as cur:
        cur.execute(f"SELECT COUNT(*), MIN(w.{key}), MAX(w.{key}) FROM ({sql}) w", params)
        count, first, last = cur.fetchone()
    to_python = model._meta.pk.to_python
    return int(count), None if first is None else to_python(first), None if last is None else to_python(last)


def _count_and_last_key(model, window, using: str) -> tuple[int, Any]:
    """Count and largest key of the keyset window, in one query returning one row."""
    count, _, last = _window_bounds(model, window, using)
    return count, last


def _window_query(queryset: models.QuerySet, cursor: Any, batch_size: int):
    if cursor is not None:
        queryset = queryset.filter(pk__gt=cursor)
    return queryset.order_by("pk").annotate(cleanup_key=F("pk")).values_list("cleanup_key")[:batch_size]


def queryset_window(queryset: models.QuerySet, *, cursor: Any, batch_size: int, using: str | None = None):
    """Count and largest key of the next ``batch_size`` rows of ``queryset`` above ``cursor``.

    One indexed query returning one row (``SELECT COUNT(*), MAX(key) FROM (... ORDER BY pk LIMIT n)``):
    no key list travels through Python and no ``OFFSET`` is used. The window every batch owns.
    """
    model = queryset.model
    using = using or queryset._db or router.db_for_write(model)
    return _count_and_last_key(model, _window_query(queryset, cursor, batch_size), using)


def keyset_window(model, predicate: Q, *, cursor: Any, batch_size: int, using: str | None = None):
    """:func:`queryset_window` over the rows of ``model`` matching ``predicate``."""
    return queryset_window(
        model._base_manager.filter(predicate), cursor=cursor, batch_size=batch_size, using=using
    )


def keyset_batch(
    model: type[models.Model],
    predicate: Q,
    *,
    phase: str,
    cursor: Any,
    batch_size: int,
    dry_run: bool,
    change: Callable[..., int | dict[str, Any]],
    pass_window: bool = False,
) -> BatchResult:
    """One batch of any kind: find the window above ``cursor``, then let ``change`` act on it.

    ``change(rows, using)`` receives the rows of the window's key range that still match
    ``predicate`` (so a re-run acts only on what still qualifies) and returns how many rows it
    changed, or a dict of :class:`BatchResult` fields with at least ``deleted``. It runs in the
    batch's transaction. A dry run, or an empty window, never calls it. With ``pass_window`` it is
    called as ``change(rows, using, (cursor, last))``: the key range ``rows`` lies in.
    """
    using = router.db_for_write(model)
    with transaction.atomic(using=using):
        window = _window_query(model._base_manager.filter(predicate), cursor, batch_size)
        count, first, last = _window_bounds(model, window, using)
        if count == 0:
            return BatchResult(phase=phase, deleted=0, cursor=json_cursor(cursor), done=True, dry_run=dry_run)
        done = count < batch_size
        if dry_run:
            return BatchResult(phase=phase, deleted=count, cursor=json_cursor(last), done=done, dry_run=True)
        rows = model._base_manager.filter(predicate, pk__lte=last)
        if cursor is not None:
            rows = rows.filter(pk__gt=cursor)
        else:
            # The first batch of a phase has no cursor: bounding it below by the window's first
            # key spares every statement of the batch a walk over the keys below the first
            # match (at 3M access tokens, the 1.5M live refresh tokens below the revoked ones).
            rows = rows.filter(pk__gte=first)
        with _key_range_plans(using):
            outcome = change(rows, using, (cursor, last)) if pass_window else change(rows, using)
    fields = outcome if isinstance(outcome, dict) else {"deleted": outcome}
    return BatchResult(phase=phase, cursor=json_cursor(last), done=done, **fields)


@contextmanager
def _key_range_plans(using: str):
    """On PostgreSQL, plan the statements of a batch without bitmap scans.

    Every statement of a batch is bounded by the window's key range (at most ``batch_size``
    keys), which an index scan of the primary key walks directly. With bitmap scans allowed,
    PostgreSQL ANDs that range with a bitmap of the rule's own index (``revoked <= now``: every
    revoked refresh token in the table, 750k entries at 3M access tokens) in each statement, so
    each batch cost grew with the table. The setting is restored when the batch's statements are
    done, so the rest of an enclosing transaction plans as before.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('enable_bitmapscan')")
        (previous,) = cur.fetchone()
        cur.execute("SELECT set_config('enable_bitmapscan', 'off', true)")
    # Restored only after statements that succeeded: after an error the transaction is aborted,
    # a statement here would raise "current transaction is aborted" in place of the error itself
    # (a lock timeout the pacer must see), and the rollback undoes the local setting anyway.
    yield
    with connection.cursor() as cur:
        cur.execute("SELECT set_config('enable_bitmapscan', %s, true)", [previous])


def _fast_delete_blockers(model) -> tuple[list, list]:
    """Reverse relations to clear with an UPDATE, and relations that need the ORM's collector."""
    set_null, other = [], []
    for relation in get_candidate_relations_to_delete(model._meta):
        on_delete = relation.on_delete
        if on_delete is DO_NOTHING:
            continue
        if on_delete is SET_NULL:
            set_null.append(relation)
        else:
            other.append(relation)
    return set_null, other


def _has_delete_receivers(model) -> bool:
    return pre_delete.has_listeners(model) or post_delete.has_listeners(model)


class _Pointing:
    """Rows of other tables whose foreign key points at one of a batch's ``rows``.

    ``field__in=rows`` everywhere; on MySQL and MariaDB (before 11.1) also ``field`` within the
    key range of ``rows``: those run a single-table ``UPDATE`` or ``DELETE`` with ``IN (subquery)``
    as a scan of the whole outer table, once per batch, which made the batches of a phase grow with
    the table. The key range lets them walk the foreign key's index instead; it selects no other
    rows. It is the batch's window (``window``: above the cursor, up to the window's last key) when
    given, else read once per batch from ``rows``.
    """

    def __init__(self, rows: models.QuerySet, using: str, window: tuple[Any, Any] | None = None) -> None:
        self.rows, self.using, self.window = rows, using, window
        self._bounds: tuple[Any, Any] | None = None

    def __call__(self, model, field_name: str) -> models.QuerySet:
        pointing = model._base_manager.filter(**{f"{field_name}__in": self.rows.values("pk")})
        if connections[self.using].vendor != "mysql":
            return pointing
        if self.window is not None:
            # The window's range is a bound every row of ``rows`` lies in, with no query: the
            # aggregate below made MariaDB read the whole rule's index (all revoked refresh
            # tokens) for a batch's first and last key.
            above, last = self.window
            if above is not None:
                pointing = pointing.filter(**{f"{field_name}__gt": above})
            return pointing.filter(**{f"{field_name}__lte": last})
        if self._bounds is None:
            found = self.rows.aggregate(low=Min("pk"), high=Max("pk"))
            self._bounds = (found["low"], found["high"])
        low, high = self._bounds
        if low is None:
            return pointing.none()
        return pointing.filter(**{f"{field_name}__gte": low, f"{field_name}__lte": high})


def run_phase_batch(
    phase: str,
    *,
    now: datetime | CleanupPlan,
    batch_size: int,
    cursor: Any = None,
    dry_run: bool = False,
    upper: Any = None,
) -> BatchResult:
    """Delete (or, on a dry run, count) the next ``batch_size`` rows of ``phase`` above ``cursor``.

    ``now`` is the run's frozen time (or a ready :class:`CleanupPlan`). The batch commits on its
    own, or joins the caller's transaction, so that a caller can record progress atomically with it.
    ``upper`` (a key) keeps the batch to keys up to it: the phase is then done when nothing is left
    in ``(cursor, upper]``, which is how several chains share one phase in disjoint key ranges.
    """
    plan = now if isinstance(now, CleanupPlan) else CleanupPlan.from_settings(now)
    batch_size = validate_batch_size(batch_size)
    model = phase_model(phase)
    if not phase_is_active(phase, plan):
        return BatchResult(phase=phase, deleted=0, cursor=json_cursor(cursor), done=True, dry_run=dry_run)

    if cursor is None and not dry_run and _unreferenced_expired_count(phase, plan) == 0:
        return BatchResult(phase=phase, deleted=0, cursor=None, done=True)

    predicate = phase_predicate(phase, plan, dry_run=dry_run, cursor=cursor)
    if upper is not None:
        predicate &= Q(pk__lte=upper)
    return delete_keyset_batch(
        model,
        predicate,
        phase=phase,
        cursor=cursor,
        batch_size=batch_size,
        dry_run=dry_run,
        excluded_links=_links_excluded_by_rule(phase),
        before_unlink=_successors_due_anyway(plan) if phase in REFRESH_PHASES else None,
    )


REFRESH_PHASES = (REVOKED_REFRESH_TOKENS, ORPHANED_REFRESH_TOKENS, EXPIRED_REFRESH_TOKENS)


def _referencing_link(phase: str):
    """The one-to-one link whose absence rules 4 and 5 ask for ("nothing points at it")."""
    refresh_model, access_model, _, _ = _models()
    if phase == ACCESS_TOKENS:
        return refresh_model._meta.get_field("access_token")
    if phase == ID_TOKENS:
        return id_token_link(access_model)
    return None


def _unreferenced_expired_count(phase: str, plan: CleanupPlan) -> int | None:
    """How many rows rule 4 or 5 selects, counted without an anti-join; None where not counted.

    On MySQL and MariaDB the anti-join ("expired, and no refresh token points at it") costs a
    probe of the other table's index per expired row: on a table with nothing to delete, every
    run walked all the expired access tokens that live refresh tokens keep, the bulk of the table
    where refresh tokens never expire (2.1 s at 300k access tokens). The same number follows from
    three counts that read indexes only: with E the expired rows, L the others, and P the rows of
    the other table whose one-to-one link is set (each points at one existing row, which the
    foreign key constraint guarantees), the rows nothing points at among E number
    ``|E| - |P| + |L pointed at|``; L is the few live rows. The counts run in one statement, so
    they see one snapshot. A phase whose count is 0 has nothing to delete and walks nothing;
    otherwise it walks as always. ``keep_if_younger`` runs, other backends (whose anti-join is a
    hash join), links that are not one-to-one or carry no constraint: None, no shortcut.
    """
    link = _referencing_link(phase)
    if link is None or plan.created_before is not None or not (link.unique and link.db_constraint):
        return None
    model = phase_model(phase)
    if model._meta.get_field("expires").null:
        return None
    using = router.db_for_write(model)
    connection = connections[using]
    if connection.vendor != "mysql":
        return None
    pointing = link.model._base_manager.filter(**{f"{link.name}__isnull": False})
    parts = [
        model._base_manager.filter(expires__lt=plan.now),
        pointing,
        pointing.filter(**{f"{link.name}__expires__gte": plan.now}),
    ]
    sqls, params = [], []
    for queryset in parts:
        sql, part_params = queryset.order_by().values("pk").query.get_compiler(using).as_sql()
        sqls.append(f"(SELECT COUNT(*) FROM ({sql}) c)")
        params.extend(part_params)
    with connection.cursor() as cur:
        cur.execute(f"SELECT {', '.join(sqls)}", params)
        expired, pointed, live_pointed = (int(n) for n in cur.fetchone())
    count = expired - pointed + live_pointed
    logger.debug(
        "cleanup %s: %s expired rows, %s pointed at, %s of them live", phase, expired, pointed, live_pointed
    )
    return count if count >= 0 else None


def _successors_due_anyway(plan: CleanupPlan):
    """Delete, with a refresh token batch, the expired access tokens refreshed from those tokens
    that rule 4 will delete anyway, instead of first setting their ``source_refresh_token`` to NULL.

    An access token that is expired and that no refresh token points at now still qualifies for
    rule 4 when its phase comes (``now`` is frozen and the refresh phases only remove pointers), so
    deleting it here changes the rows a run deletes in no way; it is counted under
    ``access_tokens``. What it saves is rewriting each such row (and all its indexes) only to
    delete it a phase later: the bulk of a cleanup where refresh tokens rotate. Access tokens that
    other rules keep are unlinked as before. Not used when the access token model has delete
    receivers or other dependent relations: those rows go through the normal path.
    """
    refresh_model, access_model, _, _ = _models()
    refresh_link = refresh_model._meta.get_field("access_token")
    set_null, other = _fast_delete_blockers(access_model)
    if _has_delete_receivers(access_model) or other or any(r.field != refresh_link for r in set_null):
        return None

    def delete_successors(rows: models.QuerySet, using: str, pointing_at: _Pointing) -> dict[str, int]:
        pointing = refresh_model._base_manager.filter(access_token=OuterRef("pk"))
        due = (
            pointing_at(access_model, "source_refresh_token")
            .filter(expires__lt=plan.now)
            .exclude(Exists(pointing))
        )
        deleted = int(due._raw_delete(using) or 0)
        return {ACCESS_TOKENS: deleted} if deleted else {}

    return delete_successors


def _links_excluded_by_rule(phase: str) -> frozenset:
    """Links that the phase's rule already requires to be absent ("no refresh token points at
    it", "no access token points at it"): the batch need not clear or cascade along them."""
    refresh_model, access_model, _, _ = _models()
    if phase == ACCESS_TOKENS:
        return frozenset({refresh_model._meta.get_field("access_token")})
    if phase == ID_TOKENS:
        link = id_token_link(access_model)
        return frozenset({link}) if link is not None else frozenset()
    return frozenset()


def delete_keyset_batch(
    model: type[models.Model],
    predicate: Q,
    *,
    phase: str,
    cursor: Any = None,
    batch_size: int,
    dry_run: bool = False,
    excluded_links: frozenset = frozenset(),
    before_unlink: Callable[[models.QuerySet, str, _Pointing], dict[str, int]] | None = None,
) -> BatchResult:
    """Delete (or count) the next ``batch_size`` rows of ``model`` matching ``predicate`` above ``cursor``.

    The shared mechanism of every deleting batch (cleanup and revocation): a keyset window, the
    ``SET NULL`` links cleared with one ``UPDATE`` per relation, one ``DELETE`` of the key range with
    the predicate evaluated again, and Django's collector only where the models need it.

    ``excluded_links`` names foreign keys (fields of other models pointing at ``model``) that the
    predicate itself requires to be absent: no ``UPDATE`` or cascade check is spent on them. The
    ``DELETE`` re-evaluates the predicate, and a link created concurrently fails the database's
    foreign key check at commit, so the batch rolls back and is retried, never leaving a dangling key.

    ``before_unlink(rows, using, pointing_at)``, on the fast path, runs before the ``SET NULL``
    updates and returns rows of later phases it deleted (``BatchResult.also_deleted``);
    ``pointing_at(model, field)`` selects the rows of ``model`` whose ``field`` points at ``rows``.
    """
    set_null, other = _fast_delete_blockers(model)
    set_null = [r for r in set_null if r.field not in excluded_links]
    other = [r for r in other if r.field not in excluded_links]

    def delete(rows: models.QuerySet, using: str, window: tuple[Any, Any]) -> dict[str, Any]:
        pointing_at = _Pointing(rows, using, window)
        needs_collector = _has_delete_receivers(model)
        for relation in other:
            if relation.on_delete is models.CASCADE and not (
                _has_delete_receivers(relation.related_model)
                or pointing_at(relation.related_model, relation.field.name).exists()
            ):
                # A cascade with nothing to cascade to (rule 5 only picks ID tokens no access
                # token points at) needs no collector.
                continue
            needs_collector = True

        if needs_collector:
            total, per_model = rows.delete()
            logger.debug("cleanup %s: ORM delete of %s rows (%s)", phase, total, per_model)
            # The phase counts rows of its own model, not the ones cascaded to.
            return {"deleted": per_model.get(model._meta.label, 0), "orm_fallback": True}

        also_deleted = before_unlink(rows, using, pointing_at) if before_unlink is not None else {}
        unlinked: dict[str, int] = {}
        for relation in set_null:
            related = relation.related_model
            n = pointing_at(related, relation.field.name).update(**{relation.field.name: None})
            if n:
                unlinked[f"{related._meta.label}.{relation.field.name}"] = n
        deleted = int(rows._raw_delete(using) or 0)
        return {"deleted": deleted, "unlinked": unlinked, "also_deleted": also_deleted}

    return keyset_batch(
        model,
        predicate,
        phase=phase,
        cursor=cursor,
        batch_size=batch_size,
        dry_run=dry_run,
        change=delete,
        pass_window=True,
    )


def _phase_function(phase: str) -> Callable[..., BatchResult]:
    def batch(
        *,
        now: datetime | CleanupPlan,
        batch_size: int,
        cursor: Any = None,
        dry_run: bool = False,
        upper: Any = None,
    ):
        return run_phase_batch(
            phase, now=now, batch_size=batch_size, cursor=cursor, dry_run=dry_run, upper=upper
        )

    batch.__name__ = f"delete_{phase}"
    batch.__doc__ = f"One batch of the {PHASE_LABELS[phase].lower()} phase (see run_phase_batch)."
    return batch


delete_revoked_refresh_tokens = _phase_function(REVOKED_REFRESH_TOKENS)
delete_orphaned_refresh_tokens = _phase_function(ORPHANED_REFRESH_TOKENS)
delete_expired_refresh_tokens = _phase_function(EXPIRED_REFRESH_TOKENS)
delete_expired_access_tokens = _phase_function(ACCESS_TOKENS)
delete_expired_id_tokens = _phase_function(ID_TOKENS)
delete_expired_grants = _phase_function(GRANTS)

#: Phase name to batch function, in phase order.
BATCH_FUNCTIONS: dict[str, Callable[..., BatchResult]] = {
    REVOKED_REFRESH_TOKENS: delete_revoked_refresh_tokens,
    ORPHANED_REFRESH_TOKENS: delete_orphaned_refresh_tokens,
    EXPIRED_REFRESH_TOKENS: delete_expired_refresh_tokens,
    ACCESS_TOKENS: delete_expired_access_tokens,
    ID_TOKENS: delete_expired_id_tokens,
    GRANTS: delete_expired_grants,
}


# --------------------------------------------------------------------------------------------
# The in-process loop


def clear_expired(
    *,
    batch_size: int | None = None,
    interval: float | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Callable[[BatchResult, dict[str, int]], None] | None = None,
    limit: int | None = None,
    only: list[str] | None = None,
    keep_if_younger: float | None = None,
) -> dict[str, int]:
    """Delete what django-oauth-toolkit 3.4's ``clear_expired()`` deletes, batch by batch, in process.

    ``batch_size`` and ``interval`` default to ``CLEAR_EXPIRED_TOKENS_BATCH_SIZE`` and
    ``CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL``; the pause only separates batches, it never follows
    the last one. ``progress`` is called after every batch with its result and the running totals.
    Returns the number of rows deleted (or, on a dry run, that would be) per phase.

    ``limit`` stops after about that many rows (a later call carries on where this one stopped),
    ``only`` names the groups to clean (``tokens``, ``id_tokens``, ``grants``; all by default) and
    ``keep_if_younger`` keeps rows created less than that many seconds ago.
    """
    batch_size = default_batch_size() if batch_size is None else validate_batch_size(batch_size)
    interval = default_interval() if interval is None else validate_interval(interval)
    limit = None if limit is None else validate_limit(limit)
    phases = selected_phases(None if only is None else validate_only(only))
    keep = None if keep_if_younger is None else validate_duration(keep_if_younger)
    plan = CleanupPlan.from_settings(now, keep_if_younger=keep)
    totals = dict.fromkeys(PHASES, 0)
    started = time.monotonic()
    first_batch = True
    for phase in phases:
        if limit is not None and sum(totals.values()) >= limit:
            break
        if not phase_is_active(phase, plan):
            logger.info("%s: phase off with these settings, nothing deleted", PHASE_LABELS[phase])
            continue
        cursor = None
        while True:
            if not first_batch and interval:
                time.sleep(interval)
            first_batch = False
            size = batch_size if limit is None else min(batch_size, limit - sum(totals.values()))
            result = BATCH_FUNCTIONS[phase](now=plan, batch_size=size, cursor=cursor, dry_run=dry_run)
            totals[phase] += result.deleted
            for other_phase, count in result.also_deleted.items():
                totals[other_phase] += count
            cursor = result.cursor
            if progress is not None:
                progress(result, dict(totals))
            if result.done or (limit is not None and sum(totals.values()) >= limit):
                break
        logger.info(
            "%s %s: %s%s",
            PHASE_LABELS[phase],
            "to delete" if dry_run else "deleted",
            totals[phase],
            " (dry run)" if dry_run else "",
        )
    logger.info(
        "clear_expired %s in %.3fs: %s",
        "dry run" if dry_run else "done",
        time.monotonic() - started,
        ", ".join(f"{phase}={count}" for phase, count in totals.items()),
    )
    return totals
