"""Small builders for provider rows, shared by the test modules."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from oauth_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)


def make_user(username: str | None = None, **extra):
    User = get_user_model()
    return User.objects.create_user(
        username=username or f"user-{secrets.token_hex(4)}", password="pw-12345!", **extra
    )


def make_application(user=None, **extra):
    Application = get_application_model()
    fields = {
        "name": f"app-{secrets.token_hex(3)}",
        "client_type": Application.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
        "redirect_uris": "https://client.example/callback",
        "user": user,
    }
    fields.update(extra)
    return Application.objects.create(**fields)


def make_access_token(
    application, user=None, *, expires_in: float = 3600, scope: str = "read write", **extra
):
    return get_access_token_model().objects.create(
        application=application,
        user=user,
        token=secrets.token_urlsafe(24),
        expires=timezone.now() + timedelta(seconds=expires_in),
        scope=scope,
        **extra,
    )


def make_refresh_token(application, user, access_token=None, **extra):
    return get_refresh_token_model().objects.create(
        application=application,
        user=user,
        token=secrets.token_urlsafe(24),
        access_token=access_token,
        **extra,
    )


def make_id_token(application, user=None, *, expires_in: float = 3600, **extra):
    return get_id_token_model().objects.create(
        application=application, user=user, expires=timezone.now() + timedelta(seconds=expires_in), **extra
    )


def make_grant(application, user, *, expires_in: float = 60, **extra):
    fields = {"redirect_uri": "https://client.example/callback", **extra}
    return get_grant_model().objects.create(
        application=application,
        user=user,
        code=secrets.token_urlsafe(16),
        expires=timezone.now() + timedelta(seconds=expires_in),
        **fields,
    )


def issue_login_tokens(application, user, scope: str = "read write") -> dict:
    """What a login leaves: an ID token, an access token holding it, a refresh token and a grant."""
    id_token = make_id_token(application, user, scope=scope)
    access = make_access_token(application, user, scope=scope, id_token=id_token)
    refresh = make_refresh_token(application, user, access_token=access)
    grant = make_grant(application, user, scope=scope)
    return {"access": access, "refresh": refresh, "id": id_token, "grant": grant}
