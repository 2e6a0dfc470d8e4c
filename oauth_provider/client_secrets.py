"""Checking a presented client secret against the stored hash, without paying the hash every time.

Client secrets are stored hashed with ``CLIENT_SECRET_HASHER`` (Django's default PBKDF2 runs
1,000,000 iterations), so every client authentication costs a full password hash: most of the time
of a token request, and of an introspection by a resource server. A client presents the same
secret on every request, so each process remembers, for ``CLIENT_SECRET_VERIFY_CACHE_SECONDS``,
which secrets it has verified: a repeat authentication compares one HMAC instead of hashing.

What is remembered is an HMAC-SHA256, keyed from ``SECRET_KEY``, of the client id, the stored hash
and the presented secret; never the secret itself, and never a failure.

* A wrong secret gives another HMAC: it is hashed and refused, as without the memory.
* A rotated secret changes the stored hash, which is part of the HMAC: from the first request
  after the change, the old secret is hashed against the new hash and refused, on every process.
* A deleted or disabled client is refused before its secret is looked at.
* Only secrets of at least :data:`MIN_LENGTH` characters are remembered. An HMAC is fast to
  compute, so whoever read a process's memory and ``SECRET_KEY`` could test guesses against it
  much faster than against PBKDF2; for the generated secrets (128 random letters and digits, about
  760 bits) no number of guesses matters, for a short human-chosen one it would.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from django.utils.crypto import salted_hmac

from .settings import oauth2_settings

#: Secrets shorter than this are hashed on every authentication.
MIN_LENGTH = 32

_KEY_SALT = "oauth_provider.client_secrets.verified"


class VerifiedSecrets:
    """HMACs of the secrets this process verified recently, each with its expiry (monotonic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @staticmethod
    def _digest(client_id: str, raw_secret: str, stored: str) -> bytes:
        message = "\x00".join((client_id, stored, raw_secret))
        return salted_hmac(_KEY_SALT, message, algorithm="sha256").digest()

    def check(self, client_id: str, raw_secret: str, stored: str, verify: Callable[[], bool]) -> bool:
        """True when ``raw_secret`` matches ``stored``: remembered, or ``verify()`` (the hash)."""
        seconds = oauth2_settings.CLIENT_SECRET_VERIFY_CACHE_SECONDS
        size = oauth2_settings.CLIENT_SECRET_VERIFY_CACHE_SIZE
        if not seconds or not size or len(raw_secret) < MIN_LENGTH:
            return verify()
        digest = self._digest(client_id, raw_secret, stored)
        now = time.monotonic()
        with self._lock:
            expires = self._entries.get(digest)
            if expires is not None:
                if expires > now:
                    self._entries.move_to_end(digest)
                    return True
                del self._entries[digest]
        if not verify():
            return False
        with self._lock:
            self._entries[digest] = now + float(seconds)
            self._entries.move_to_end(digest)
            while len(self._entries) > size:
                self._entries.popitem(last=False)
        return True


#: The memory of this process.
verified_secrets = VerifiedSecrets()
