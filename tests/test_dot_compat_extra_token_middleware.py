"""DOT's ``OAuth2ExtraTokenMiddleware``: ``request.access_token`` from a usable bearer token, nothing more."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.test import RequestFactory

from oauth_provider.middleware import OAuth2ExtraTokenMiddleware

from .factories import make_access_token, make_application, make_user

pytestmark = pytest.mark.django_db


def seen_by_view(headers: dict[str, str]):
    seen = {}

    def view(request):
        seen["access_token"] = getattr(request, "access_token", None)
        seen["user"] = request.user
        return HttpResponse("ok")

    request = RequestFactory().get("/", headers=headers)
    request.user = AnonymousUser()
    response = OAuth2ExtraTokenMiddleware(view)(request)
    assert response["Vary"] == "Authorization"
    return seen


def test_a_usable_token_is_set_without_authenticating_the_user():
    user = make_user()
    token = make_access_token(make_application(user), user)
    seen = seen_by_view({"Authorization": f"Bearer {token.token}"})
    assert seen["access_token"] == token
    assert not seen["user"].is_authenticated


@pytest.mark.parametrize("kind", ["unknown", "expired", "no header", "basic"])
def test_nothing_is_set_for_a_token_that_cannot_be_used(kind):
    user = make_user()
    expired = make_access_token(make_application(user), user, expires_in=-5)
    headers = {
        "unknown": {"Authorization": "Bearer nope"},
        "expired": {"Authorization": f"Bearer {expired.token}"},
        "no header": {},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
    }[kind]
    assert seen_by_view(headers)["access_token"] is None
