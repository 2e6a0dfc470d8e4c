"""Reading back an ID token this provider signed: its signature, issuer, expiry and stored row."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from jwcrypto import jws, jwt
from jwcrypto.common import JWException

from .models import get_application_model, get_id_token_model


def load_id_token(raw: str | None, *, issuer: str | None, accept_expired: bool = False) -> Any:
    """The stored ID token of a JWT this provider signed for one of its applications, or None.

    The application is the one ``aud`` names (a single client id, as the provider issues them).
    Its key, the provider's RSA key (RS256) or the client's secret (HS256), must verify the
    signature; ``iss`` must be ``issuer`` (None leaves it to the caller); unless
    ``accept_expired``, ``exp`` must be ahead of the provider's clock (no leeway: the provider
    judges its own tokens). The row is then looked up by ``jti`` among *that application's* ID
    tokens: an HS256 key is a client secret the client knows, so a JWT signed with it must never
    name another client's ID token.
    """
    return load_id_token_with_claims(raw, issuer=issuer, accept_expired=accept_expired)[0]


def load_id_token_with_claims(
    raw: str | None, *, issuer: str | None, accept_expired: bool = False
) -> tuple[Any, dict | None]:
    """``(row, claims)`` as :func:`load_id_token` decides, or ``(None, None)``."""
    if not raw:
        return None, None
    try:
        unverified = jws.JWS()
        unverified.deserialize(raw)
        audience = json.loads(unverified.objects["payload"].decode("utf-8")).get("aud")
        if isinstance(audience, list) and len(audience) == 1:
            audience = audience[0]
        if not isinstance(audience, str) or not audience:
            return None, None
        application = get_application_model().objects.filter(client_id=audience).first()
        if application is None or not application.algorithm:
            return None, None
        claims = json.loads(jwt.JWT(key=application.jwk_key, jwt=raw, check_claims={}).claims)
        if not isinstance(claims, dict):
            return None, None
        if issuer is not None and claims.get("iss") != issuer:
            return None, None
        if not accept_expired and not (isinstance(claims.get("exp"), int) and claims["exp"] > time.time()):
            return None, None
        row = (
            get_id_token_model()
            .objects.select_related("application", "user")
            .filter(jti=claims["jti"], application=application)
            .first()
        )
        return (row, claims) if row is not None else (None, None)
    except (
        JWException,
        ImproperlyConfigured,
        ValidationError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
    ):
        return None, None
