"""The provider admin with django-oauth-toolkit's search fields and revoke actions."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from oauth_provider.models import get_access_token_model, get_refresh_token_model

from .factories import make_access_token, make_application, make_refresh_token, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345!"))
    return client


@pytest.mark.parametrize("model", ["accesstoken", "refreshtoken", "idtoken"])
def test_tokens_are_found_by_application_name_and_user_email(admin_client_logged_in, model):
    erin = make_user("erin", email="erin@corp.example")
    make_access_token(make_application(erin, name="payroll"), erin)
    url = reverse(f"admin:oauth_provider_{model}_changelist")
    for query in ("payroll", "erin@corp.example"):
        assert admin_client_logged_in.get(url, {"q": query}).status_code == 200


def test_the_access_token_list_searches_by_application_name(admin_client_logged_in):
    user = make_user("frank")
    wanted = make_access_token(make_application(user, name="payroll"), user)
    other = make_access_token(make_application(user, name="billing"), user)
    page = admin_client_logged_in.get(
        reverse("admin:oauth_provider_accesstoken_changelist"), {"q": "payroll"}
    )
    body = page.content.decode()
    assert f"/{wanted.pk}/change/" in body
    assert f"/{other.pk}/change/" not in body


def test_revoke_action_on_access_tokens_leaves_neither_token_usable(admin_client_logged_in):
    user = make_user("gina")
    app = make_application(user)
    with_refresh = make_access_token(app, user)
    refresh = make_refresh_token(app, user, access_token=with_refresh)
    alone = make_access_token(app, user)
    kept = make_access_token(app, user)

    response = admin_client_logged_in.post(
        reverse("admin:oauth_provider_accesstoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [with_refresh.pk, alone.pk]},
        follow=True,
    )
    assert "Revoked 2 access tokens." in response.content.decode()
    remaining = set(get_access_token_model().objects.values_list("pk", flat=True))
    assert remaining == {kept.pk}
    refresh.refresh_from_db()
    assert refresh.revoked is not None


def test_revoke_action_on_refresh_tokens(admin_client_logged_in):
    user = make_user("hank")
    app = make_application(user)
    access = make_access_token(app, user)
    refresh = make_refresh_token(app, user, access_token=access)

    response = admin_client_logged_in.post(
        reverse("admin:oauth_provider_refreshtoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [refresh.pk]},
        follow=True,
    )
    assert "Revoked 1 refresh token." in response.content.decode()
    assert get_refresh_token_model().objects.get(pk=refresh.pk).revoked is not None
    assert not get_access_token_model().objects.filter(pk=access.pk).exists()


def test_dots_mask_credential_and_masked_columns():
    from oauth_provider.admin import AccessTokenAdmin, GrantAdmin, RefreshTokenAdmin, mask_credential

    assert mask_credential("abcdef1234567890") == "…7890"
    assert mask_credential("short") == "…"
    assert mask_credential("") == "" and mask_credential(None) is None
    assert "masked_token" in AccessTokenAdmin.list_display and "token" not in AccessTokenAdmin.list_display
    assert "masked_token" in RefreshTokenAdmin.list_display
    assert "masked_code" in GrantAdmin.list_display and "code" not in GrantAdmin.list_display
