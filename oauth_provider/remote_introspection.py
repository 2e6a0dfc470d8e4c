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
import json
import logging
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus, urlencode

from django.contrib.auth import get_user_model
from django.utils import timezone

from .models import get_access_token_model
from .settings import oauth2_settings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10


def _authorization_header() -> str | None:
    if oauth2_settings.RESOURCE_SERVER_AUTH_TOKEN:
        return f"Bearer {oauth2_settings.RESOURCE_SERVER_AUTH_TOKEN}"
    credentials = oauth2_settings.RESOURCE_SERVER_INTROSPECTION_CREDENTIALS
    if credentials:
        client_id, client_secret = credentials
        # RFC 6749 2.3.1: each part form-encoded before the Basic encoding.
        pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        return f"Basic {base64.b64encode(pair).decode()}"
    return None


def introspect(token: str) -> dict | None:
    """The remote server's answer for ``token``, or None when it cannot be had."""
    url = oauth2_settings.RESOURCE_SERVER_INTROSPECTION_URL
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    authorization = _authorization_header()
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=urlencode({"token": token}).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            content = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:
        log.warning("Token introspection at %s failed: %s", url, error)
        return None
    return content if isinstance(content, dict) else None


def token_from_authorization_server(token: str):
    """A local access token standing for the remote server's active answer, or None."""
    content = introspect(token)
    if not content or content.get("active") is not True:
        return None
    user = None
    if content.get("username"):
        user_model = get_user_model()
        user, _created = user_model.objects.get_or_create(**{user_model.USERNAME_FIELD: content["username"]})
    expires = timezone.now() + timedelta(seconds=oauth2_settings.RESOURCE_SERVER_TOKEN_CACHING_SECONDS)
    if isinstance(content.get("exp"), int | float):
        expires = min(expires, datetime.fromtimestamp(content["exp"], tz=UTC))
    model = get_access_token_model()
    access_token = model.lookup(token)
    values = {"user": user, "application": None, "scope": content.get("scope", ""), "expires": expires}
    if access_token is None:
        return model.objects.create(token=token, **values)
    for field, value in values.items():
        setattr(access_token, field, value)
    access_token.save(update_fields=list(values))
    return access_token
