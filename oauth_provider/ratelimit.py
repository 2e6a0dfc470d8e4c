"""Rate limiting of failed client authentications and password-grant attempts.

Checking a client secret or a user password costs a full password hash (hundreds of milliseconds
of CPU by design), and an attacker can ask for as many checks as they like. Failures are counted
per source address and per client id in the Django cache (Redis in production, so every web
process sees the same counts), each for ``RATE_LIMIT_WINDOW_SECONDS`` from its first failure.
Once a count reaches its limit, further attempts for that address or client are answered ``429``
with ``Retry-After`` until the window ends, before any hash is computed.

The source address is ``REMOTE_ADDR``, unless ``RATE_LIMIT_ADDRESS_HEADER`` names a header that
the trusted proxies in front of the provider set (``HTTP_X_FORWARDED_FOR``): then the address is
the entry that the outermost of the ``RATE_LIMIT_TRUSTED_PROXIES`` proxies appended, which a client
cannot forge. Without a proxy, leave the header unset, or any client picks its own address.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

from django.core.cache import caches
from django.http import JsonResponse

from . import watermark_cache
from .settings import oauth2_settings

log = logging.getLogger(__name__)

KEY_PREFIX = "oauth_provider:auth-failures"


class RateLimited(Exception):
    """Too many failed authentications for an address or a client: answer 429, check nothing."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed authentications; retry after {retry_after} s")
        self.retry_after = retry_after

    def response(self) -> JsonResponse:
        response = JsonResponse(
            {
                "error": "too_many_requests",
                "error_description": (
                    f"Too many failed authentication attempts; retry after {self.retry_after} seconds."
                ),
            },
            status=429,
        )
        response["Retry-After"] = str(self.retry_after)
        response["Cache-Control"] = "no-store"
        return response


def client_address(meta: Mapping[str, Any]) -> str:
    """The address the request came from, per ``RATE_LIMIT_ADDRESS_HEADER`` (see the module doc)."""
    header = oauth2_settings.RATE_LIMIT_ADDRESS_HEADER
    if header:
        hops = [hop.strip() for hop in str(meta.get(header) or "").split(",") if hop.strip()]
        proxies = oauth2_settings.RATE_LIMIT_TRUSTED_PROXIES
        if len(hops) >= proxies:
            return hops[-proxies]
    return str(meta.get("REMOTE_ADDR") or "")


def _counters(meta: Mapping[str, Any], client_id: str | None) -> Iterator[tuple[str, int]]:
    """``(cache key, limit)`` of each counter this attempt counts against."""
    for kind, value, limit in (
        ("address", client_address(meta), oauth2_settings.RATE_LIMIT_FAILURES_PER_ADDRESS),
        ("client", client_id, oauth2_settings.RATE_LIMIT_FAILURES_PER_CLIENT),
    ):
        if limit and value:
            # Hashed: client ids and header values may hold characters a cache key must not.
            digest = hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()
            yield f"{KEY_PREFIX}:{kind}:{digest}", limit


def check(meta: Mapping[str, Any], client_id: str | None) -> None:
    """Raise :class:`RateLimited` when the address or the client has used up its failures.

    A window opens at the first failure of a counter and lasts ``RATE_LIMIT_WINDOW_SECONDS``;
    ``Retry-After`` is the time left of the longest exhausted one.

    When the revocation watermarks' generation lives in the same cache, it is read in the same
    command (one round trip for both; see :func:`oauth_provider.watermark_cache.request_scope`).
    """
    counters = dict(_counters(meta, client_id))
    if not counters:
        return
    alias = oauth2_settings.RATE_LIMIT_CACHE
    keys = [*counters, *(f"{key}:since" for key in counters)]
    generation_key = watermark_cache.generation_key_to_read_with(alias)
    values = caches[alias].get_many([*keys, generation_key] if generation_key else keys)
    if generation_key:
        watermark_cache.generation_read(values.get(generation_key))
    window = oauth2_settings.RATE_LIMIT_WINDOW_SECONDS
    now = time.time()
    waits = [
        values.get(f"{key}:since", now) + window - now
        for key, limit in counters.items()
        if values.get(key, 0) >= limit
    ]
    if waits:
        retry_after = max(1, min(window, math.ceil(max(waits))))
        log.warning(
            "Authentication refused for %s s: too many failures from address %s or for its client",
            retry_after,
            client_address(meta),
        )
        raise RateLimited(retry_after)


def record_failure(meta: Mapping[str, Any], client_id: str | None) -> None:
    """Count one failed client authentication or password check against the address and client."""
    cache = caches[oauth2_settings.RATE_LIMIT_CACHE]
    window = oauth2_settings.RATE_LIMIT_WINDOW_SECONDS
    for key, _limit in _counters(meta, client_id):
        cache.add(f"{key}:since", time.time(), timeout=window)
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
