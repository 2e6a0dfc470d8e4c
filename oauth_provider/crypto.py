"""Key handling for signed ID tokens."""

from __future__ import annotations

import functools
import zoneinfo

from django.conf import settings
from jwcrypto import jwk


@functools.lru_cache
def jwk_from_pem(pem_string: str) -> jwk.JWK:
    """A JWK from a PEM private key; cached because parsing an RSA key costs milliseconds per call."""
    return jwk.JWK.from_pem(pem_string.encode("utf-8"))


@functools.lru_cache
def get_timezone(time_zone: str | None = None) -> zoneinfo.ZoneInfo:
    """The time zone the server uses for ``exp`` claims (``AUTHENTICATION_SERVER_EXP_TIME_ZONE``)."""
    return zoneinfo.ZoneInfo(time_zone or settings.TIME_ZONE)
