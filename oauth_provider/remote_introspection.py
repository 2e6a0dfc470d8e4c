"""A resource server that checks tokens at a remote authorization server (RFC 7662), as DOT does.

With ``RESOURCE_SERVER_INTROSPECTION_URL`` set, a bearer token this provider does not hold (or holds
only as an expired or under-scoped copy from an earlier answer) is sent to that introspection
endpoint, authenticated with ``RESOURCE_SERVER_AUTH_TOKEN`` (a bearer token) or
``RESOURCE_SERVER_INTROSPECTION_CREDENTIALS`` (``(client_id, client_secret)``, HTTP Basic). An
active answer is kept as a local access token without application, for its ``exp`` but at most
``RESOURCE_SERVER_TOKEN_CACHING_SECONDS``, so the next requests need no round trip. An unreachable
server or an answer that is not JSON refuses the token (and is logged without the token).
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from .crypto import get_timezone
from .models import get_access_token_model
from .settings import oauth2_settings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10


def _authorization_header(auth_token: str | None, credentials) -> str | None:
    if auth_token:
        return f"Bearer {auth_token}"
    if credentials:
        client_id, client_secret = credentials
        # RFC 6749 2.3.1: each part form-encoded before the Basic encoding.
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"
    return None


def introspect(
    token: str, url: str | None = None, auth_token: str | None = None, credentials=None
) -> dict | None:
    """The remote server's answer for ``token``, or None when it cannot be had.

    ``url``, ``auth_token`` and ``credentials`` default to the ``RESOURCE_SERVER_*`` settings.
    """
    if url is None:
        url = oauth2_settings.RESOURCE_SERVER_INTROSPECTION_URL
        auth_token = oauth2_settings.RESOURCE_SERVER_AUTH_TOKEN
        credentials = oauth2_settings.RESOURCE_SERVER_INTROSPECTION_CREDENTIALS
    headers = {"Accept": "application/json"}
    authorization = _authorization_header(auth_token, credentials)
    if authorization:
        headers["Authorization"] = authorization
    try:
        response = requests.post(url, data={"token": token}, headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        log.warning("Token introspection at %s failed: %s", url, type(error).__name__)
        return None
    if response.status_code != 200:
        log.warning("Token introspection at %s answered HTTP %s", url, response.status_code)
        return None
    try:
        content = response.json()
    except ValueError:
        log.warning("Token introspection at %s answered something other than JSON", url)
        return None
    return content if isinstance(content, dict) else None


def _expiry(content: dict) -> datetime:
    """The answer's ``exp``, at most ``RESOURCE_SERVER_TOKEN_CACHING_SECONDS`` from now.

    ``exp`` is seconds since the epoch (RFC 7662 2.2). ``AUTHENTICATION_SERVER_EXP_TIME_ZONE``, when
    not UTC, reads its wall-clock time in that zone instead, for servers that get it wrong (DOT's
    deprecated workaround). Naive when ``USE_TZ`` is off.
    """
    latest = datetime.now(tz=UTC) + timedelta(seconds=oauth2_settings.RESOURCE_SERVER_TOKEN_CACHING_SECONDS)
    expires = latest
    if isinstance(content.get("exp"), int | float) and not isinstance(content["exp"], bool):
        expires = datetime.fromtimestamp(content["exp"], tz=UTC)
        zone = oauth2_settings.AUTHENTICATION_SERVER_EXP_TIME_ZONE
        if zone and zone != "UTC":
            expires = timezone.make_aware(expires.replace(tzinfo=None), timezone=get_timezone(zone))
        expires = min(expires, latest)
    if not settings.USE_TZ:
        expires = timezone.make_naive(expires, expires.tzinfo)
    return expires


def token_from_authorization_server(
    token: str, url: str | None = None, auth_token: str | None = None, credentials=None
):
    """A local access token standing for the remote server's active answer, or None."""
    content = introspect(token, url, auth_token, credentials)
    if not content or content.get("active") is not True:
        return None
    user = None
    if content.get("username"):
        user_model = get_user_model()
        user, _created = user_model.objects.get_or_create(**{user_model.USERNAME_FIELD: content["username"]})
    model = get_access_token_model()
    access_token = model.lookup(token)
    values = {
        "user": user,
        "application": None,
        "scope": content.get("scope", ""),
        "expires": _expiry(content),
    }
    if access_token is None:
        return model.objects.create(token=token, **values)
    for field, value in values.items():
        setattr(access_token, field, value)
    access_token.save(update_fields=list(values))
    return access_token
