"""The revocation watermarks each process keeps in memory, and the generation that keeps them true.

Every token check asks whether a revocation watermark covers the token (see
:func:`oauth_provider.revocation.is_revoked_by_watermark`). Asking the database each time costs one
query per bearer check and per introspection, a third more than django-oauth-toolkit, which has no
watermarks. So each process keeps what it read (the ``not_before`` of a target key, or that the
key has none) and uses it while the **generation** in the shared cache is the one it read with.

* Every write of a watermark (create, update, delete, a cascade from a deleted user or
  application, in a web process, the maintenance worker or the admin) sets a new generation once
  its transaction commits. A process that reads another generation than its copy was filled under
  drops the copy and asks the database again: a revocation is in force on every process as soon
  as its transaction has committed and the generation is set (one cache write).
* The generation is read from the cache once per request (one cache read, no database query;
  the provider's views and ``OAuth2TokenMiddleware`` make a request one :func:`request_scope`),
  and where a client authenticates, in the same command as the rate-limit counters when both
  live in the same cache. It lives in ``REVOCATION_WATERMARK_CACHE`` (Redis through
  ``CACHE_URL``), which every web process and every worker shares. Outside a request (a task, a
  command) every check reads it. A per-process cache (``LocMemCache``, the default without ``CACHE_URL``)
  or ``DummyCache`` cannot tell one process about another's write: then nothing is kept and every
  check asks the database, as before.
* A cache that fails (down, timing out) is never read as "no watermark": the check asks the
  database. A generation that is missing (the cache was flushed or restarted) is replaced by a
  new one, which every process reads as a change. If a writer could not set the generation (the
  cache was unreachable from it alone), each copy is also dropped after
  ``REVOCATION_WATERMARK_CACHE_SECONDS``, so the revocation is in force everywhere after that at
  the latest; the writer logs an error.
* A thread that wrote a watermark in a transaction not yet committed asks the database until the
  transaction ends, so it sees its own write; other threads and processes see it at commit.

Code that changes ``RevocationWatermark`` rows without the ORM's signals (``QuerySet.update()``,
raw SQL) must call :func:`watermarks_changed` after its commit.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime

from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import connections, transaction
from django.db.models.signals import post_delete, post_save

from .settings import oauth2_settings

logger = logging.getLogger(__name__)

#: The cache key of the generation.
GENERATION_KEY = "oauth_provider:revocation-watermarks:generation"
#: At most this many target keys are kept per process; the least recently used go first.
MAX_ENTRIES = 50_000
#: A failing cache is logged at most once per this many seconds per process.
FAILURE_LOG_INTERVAL = 60.0

#: Caches that hold their data per process: a generation there is seen by one process only.
PER_PROCESS_BACKENDS = (LocMemCache, DummyCache)


def shared_cache():
    """The cache holding the generation, or None when there is none every process shares."""
    alias = oauth2_settings.REVOCATION_WATERMARK_CACHE
    if not alias or not oauth2_settings.REVOCATION_WATERMARK_CACHE_SECONDS:
        return None
    cache = caches[alias]
    if isinstance(cache, PER_PROCESS_BACKENDS):
        return None
    return cache


def _new_generation() -> str:
    return secrets.token_hex(8)


class _PendingWrites(threading.local):
    """The transactions, by database alias, in which this thread wrote a watermark not yet committed.

    A transaction is known by its outermost ``atomic`` block: once the thread is outside it (the
    transaction committed and set the generation, or rolled back), the entry is dropped.
    """

    def __init__(self) -> None:
        self.blocks: dict[str, object] = {}

    def add(self, alias: str) -> None:
        connection = connections[alias]
        if connection.in_atomic_block and connection.atomic_blocks:
            self.blocks[alias] = connection.atomic_blocks[0]

    def any_open(self) -> bool:
        for alias, block in list(self.blocks.items()):
            connection = connections[alias]
            if not (connection.in_atomic_block and connection.atomic_blocks) or (
                connection.atomic_blocks[0] is not block
            ):
                del self.blocks[alias]
        return bool(self.blocks)


_pending = _PendingWrites()


class _RequestScope:
    """The generation read during one request, while it runs."""

    __slots__ = ("generation",)

    def __init__(self) -> None:
        self.generation: str | None = None


# A context variable, not a thread-local: under ASGI, requests interleave on the threads that run
# sync code, and each must see its own scope only.
_current_scope: ContextVar[_RequestScope | None] = ContextVar("watermark_request_scope", default=None)


@contextmanager
def request_scope() -> Iterator[None]:
    """Read the generation at most once while the block runs (one request of a view).

    Inside the block the first read of the generation (by a token check, or together with the
    rate-limit counters, see :func:`generation_key_to_read_with`) serves every later check of the
    block; outside any block every check reads it. The block is one request: the next request reads
    again, so a revocation committed elsewhere is in force from the next request on. A watermark
    written inside the block drops what it read. A block inside another is part of it.
    """
    if _current_scope.get() is not None:
        yield
        return
    token = _current_scope.set(_RequestScope())
    try:
        yield
    finally:
        _current_scope.reset(token)


def _forget_scope_generation() -> None:
    scope = _current_scope.get()
    if scope is not None:
        scope.generation = None


def generation_key_to_read_with(alias: str) -> str | None:
    """The generation's key, when code about to read the cache ``alias`` should read it too.

    Only inside :func:`request_scope`, before the generation was read, and when ``alias`` is the
    cache the generation lives in; otherwise None. Pass what was read to :func:`generation_read`.
    """
    scope = _current_scope.get()
    if scope is None or scope.generation is not None:
        return None
    if alias != oauth2_settings.REVOCATION_WATERMARK_CACHE or shared_cache() is None:
        return None
    return GENERATION_KEY


def generation_read(value: object) -> None:
    """What a read of :data:`GENERATION_KEY` returned, for the checks of the current request.

    A missing generation (None) is not kept: the next check replaces it, as a check always does.
    """
    scope = _current_scope.get()
    if scope is not None and value is not None:
        scope.generation = str(value)


class WatermarkCache:
    """This process's copy: target key -> (``not_before`` or None, when it was read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: str | None = None
        self._entries: OrderedDict[str, tuple[datetime | None, float]] = OrderedDict()
        self._last_failure_log = 0.0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation = None

    def __len__(self) -> int:
        return len(self._entries)

    def _log_failure(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= FAILURE_LOG_INTERVAL:
            self._last_failure_log = now
            logger.warning(message, exc_info=True)

    @staticmethod
    def read_generation(cache) -> str:
        """The current generation; a missing one is replaced, and counts as a change."""
        value = cache.get(GENERATION_KEY)
        if value is None:
            fresh = _new_generation()
            if cache.add(GENERATION_KEY, fresh, timeout=None):
                return fresh
            value = cache.get(GENERATION_KEY)
            if value is None:
                raise RuntimeError("the watermark generation could not be stored in the cache")
        return str(value)

    def not_before(self, keys: Iterable[str]) -> dict[str, datetime]:
        """The ``not_before`` of each of ``keys`` that has a watermark."""
        keys = list(dict.fromkeys(keys))
        cache = shared_cache()
        if cache is None or _pending.any_open():
            return _query(keys)
        try:
            scope = _current_scope.get()
            generation = scope.generation if scope is not None else None
            if generation is None:
                generation = self.read_generation(cache)
                if scope is not None:
                    scope.generation = generation
        except Exception:
            self._log_failure("revocation watermark cache unreadable; checking watermarks in the database")
            return _query(keys)
        max_age = float(oauth2_settings.REVOCATION_WATERMARK_CACHE_SECONDS)
        now = time.monotonic()
        found: dict[str, datetime] = {}
        missing: list[str] = []
        with self._lock:
            if generation != self._generation:
                self._entries.clear()
                self._generation = generation
            for key in keys:
                entry = self._entries.get(key)
                if entry is None or now - entry[1] >= max_age:
                    missing.append(key)
                    continue
                self._entries.move_to_end(key)
                if entry[0] is not None:
                    found[key] = entry[0]
        if not missing:
            return found
        # Read after the generation: a write committed after this read sets a newer generation,
        # which the next check sees, so what is stored below is never kept past that check.
        rows = _query(missing)
        with self._lock:
            if self._generation == generation:
                for key in missing:
                    self._entries[key] = (rows.get(key), now)
                    self._entries.move_to_end(key)
                while len(self._entries) > MAX_ENTRIES:
                    self._entries.popitem(last=False)
        found.update(rows)
        return found


def _query(keys: list[str]) -> dict[str, datetime]:
    from .models import RevocationWatermark

    if not keys:
        return {}
    return dict(
        RevocationWatermark.objects.filter(target_key__in=keys).values_list("target_key", "not_before")
    )


#: The copy of this process.
watermark_cache = WatermarkCache()


def watermarks_changed() -> None:
    """Tell every process that the watermarks changed: a new generation, and this copy dropped.

    Called on commit of every ORM write of a watermark; call it after committing a write that
    sends no signals (``QuerySet.update()``, raw SQL).
    """
    watermark_cache.clear()
    _forget_scope_generation()
    cache = shared_cache()
    if cache is None:
        return
    try:
        cache.set(GENERATION_KEY, _new_generation(), timeout=None)
    except Exception:
        logger.error(
            "revocation watermark changed but the cache could not be told; other processes apply it "
            "within REVOCATION_WATERMARK_CACHE_SECONDS (%s s)",
            oauth2_settings.REVOCATION_WATERMARK_CACHE_SECONDS,
            exc_info=True,
        )


def _on_watermark_write(sender, instance, using: str, **kwargs) -> None:
    _pending.add(using)
    # Also dropped now, so this process's other threads do not keep a copy past the commit.
    watermark_cache.clear()
    _forget_scope_generation()
    transaction.on_commit(watermarks_changed, using=using)


def connect_signals() -> None:
    from .models import RevocationWatermark

    post_save.connect(_on_watermark_write, sender=RevocationWatermark, dispatch_uid="watermark-saved")
    post_delete.connect(_on_watermark_write, sender=RevocationWatermark, dispatch_uid="watermark-deleted")
