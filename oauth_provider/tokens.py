"""Whether an issued token may still be used: the one place where that is decided.

Every consumer of a credential asks here: the bearer check of protected resources
(``OAuth2Validator.validate_bearer_token``, used by the views, the decorator, the middleware and
the userinfo endpoint), token introspection, the refresh token grant, the exchange of an
authorization code, and an ID token presented as a bearer token when ``OIDC_ID_TOKEN_AS_BEARER``
allows it. A policy that applies to every issued credential (for example a "not valid before"
revocation watermark per user or application) belongs in :func:`is_issued_token_allowed`, and
then holds everywhere at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from .models import get_access_token_model, refresh_token_expire_timedelta
from .revocation import is_revoked_by_watermark
from .settings import oauth2_settings

# Reasons :func:`access_token_problem` returns; the bearer check maps them to RFC 6750 errors.
INVALID = "invalid"
EXPIRED = "expired"
INSUFFICIENT_SCOPE = "insufficient_scope"


def is_issued_token_allowed(token: Any, request: Any = None) -> bool:
    """Policy checks shared by every issued credential, beyond each one's own lifetime.

    ``token`` is an access token, refresh token, ID token or grant row (all have
    ``application``, ``user`` and ``created``). False when its application is no longer usable,
    its user is inactive, or a bulk revocation's "not valid before" watermark covers it (issued
    before the revocation of its user, its application, the two together, or one of its scopes).
    """
    application = getattr(token, "application", None)
    if application is not None and not application.is_usable(request):
        return False
    user = getattr(token, "user", None)
    if user is not None and not getattr(user, "is_active", True):
        return False
    if is_revoked_by_watermark(token):
        return False
    return True


def access_token_problem(
    access_token: Any, scopes: list[str] | None = None, request: Any = None
) -> str | None:
    """None when the access token may be used for ``scopes``, else why not.

    One of :data:`INVALID` (unknown or disallowed), :data:`EXPIRED`, :data:`INSUFFICIENT_SCOPE`.
    """
    if access_token is None or not is_issued_token_allowed(access_token, request):
        return INVALID
    # The model's own is_valid() decides, as in django-oauth-toolkit, so a swapped model's override
    # takes effect; is_expired() and allow_scopes() only name the reason.
    if access_token.is_valid(scopes or []):
        return None
    if access_token.is_expired():
        return EXPIRED
    if not access_token.allow_scopes(scopes or []):
        return INSUFFICIENT_SCOPE
    return INVALID


def id_token_problem(id_token: Any, scopes: list[str] | None = None, request: Any = None) -> str | None:
    """None when an ID token presented as a bearer token may be used for ``scopes``, else why not.

    Asked only when ``OIDC_ID_TOKEN_AS_BEARER`` keeps django-oauth-toolkit's acceptance of ID
    tokens as bearer tokens. The ID token passes every check of an access token (the policy of
    :func:`is_issued_token_allowed`, its expiry, its scopes), and the access token issued with
    it must itself be usable: an ID token is revoked with its access token, however that one
    goes (the revocation endpoint, a refresh, a bulk revocation, logout, cleanup).
    """
    if id_token is None:
        return INVALID
    access_token = (
        get_access_token_model()
        .objects.select_related("application", "user")
        .filter(id_token=id_token)
        .first()
    )
    if access_token_problem(access_token, None, request) is not None:
        return INVALID
    return access_token_problem(id_token, scopes, request)


def is_token_usable(access_token: Any, scopes: list[str] | None = None, request: Any = None) -> bool:
    """True when the access token exists, is live, allowed, and covers ``scopes``."""
    return access_token_problem(access_token, scopes, request) is None


def refresh_token_deadline(refresh_token: Any):
    """When a live refresh token stops being accepted, or None when it never expires by age.

    ``REFRESH_TOKEN_EXPIRE_SECONDS`` counts from the expiry of the token's access token, the
    same rule ``clear_expired()`` deletes by, so a token is refused exactly when cleanup may
    delete it.
    """
    delta = refresh_token_expire_timedelta()
    if delta is None or refresh_token.access_token is None:
        return None
    return refresh_token.access_token.expires + delta


def is_refresh_token_usable(refresh_token: Any, request: Any = None) -> bool:
    """True when a not revoked refresh token may be exchanged for a new access token.

    A revoked token is judged by :func:`refresh_token_in_grace_period` instead. A token whose
    access token is gone (deleted or revoked out of band) has nothing to refresh and is refused.
    """
    if refresh_token is None or refresh_token.revoked is not None:
        return False
    if refresh_token.access_token is None:
        return False
    if not is_issued_token_allowed(refresh_token, request):
        return False
    deadline = refresh_token_deadline(refresh_token)
    return deadline is None or timezone.now() < deadline


def refresh_token_in_grace_period(refresh_token: Any, request: Any = None) -> bool:
    """True when a rotated (revoked) refresh token may still be replayed.

    ``REFRESH_TOKEN_GRACE_PERIOD_SECONDS`` shields a client that lost the response to its
    refresh: within the period, replaying the old token returns the same new pair. Only a token
    that was superseded by rotation qualifies (a successor access token exists), never one
    revoked on purpose.
    """
    if refresh_token is None or refresh_token.revoked is None:
        return False
    grace = oauth2_settings.REFRESH_TOKEN_GRACE_PERIOD_SECONDS
    if isinstance(grace, timedelta):
        grace = grace.total_seconds()
    if not grace or refresh_token.revoked <= timezone.now() - timedelta(seconds=grace):
        return False
    if not is_issued_token_allowed(refresh_token, request):
        return False
    return successor_access_token(refresh_token) is not None


def successor_access_token(refresh_token: Any):
    """The access token minted by rotating this refresh token, or None."""
    return get_access_token_model().objects.filter(source_refresh_token=refresh_token).first()
