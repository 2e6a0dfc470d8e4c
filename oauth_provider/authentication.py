"""When the user of a session last signed in, for ``max_age`` and the ID token's ``auth_time``.

Django records ``last_login`` per user, so a sign-in on another device would make an old session
look fresh. The provider therefore keeps the time of each sign-in in the session itself
(``user_logged_in``), and falls back to ``last_login`` for a session older than that.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

SESSION_KEY = "oauth_provider_auth_time"


@receiver(user_logged_in, dispatch_uid="oauth_provider.remember_auth_time")
def remember_auth_time(sender, request: HttpRequest | None, user, **kwargs) -> None:
    session = getattr(request, "session", None)
    if session is not None:
        session[SESSION_KEY] = int(timezone.now().timestamp())


def session_auth_time(request: HttpRequest) -> datetime | None:
    """When the signed-in user of ``request`` authenticated, or None for an anonymous request."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    session = getattr(request, "session", None)
    stamp = session.get(SESSION_KEY) if session is not None else None
    if isinstance(stamp, int):
        return datetime.fromtimestamp(stamp, tz=UTC)
    return user.last_login
