"""Admin of the provider's models: searchable by client id, user and token prefix; no secret shown."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import make_access_token, make_application, make_refresh_token, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345!"))
    return client


def test_application_page_never_shows_the_plaintext_secret(admin_client_logged_in):
    app = make_application(name="billing", client_secret="plaintext-secret-value")
    page = admin_client_logged_in.get(reverse("admin:oauth_provider_application_change", args=[app.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "plaintext-secret-value" not in body
    assert app.client_secret[:20] in body  # the hash, read-only


def test_applications_are_found_by_client_id_and_owner(admin_client_logged_in):
    owner = make_user("carol")
    wanted = make_application(owner, name="wanted")
    other = make_application(name="other")
    url = reverse("admin:oauth_provider_application_changelist")
    by_id = admin_client_logged_in.get(url, {"q": wanted.client_id}).content.decode()
    assert "wanted" in by_id and "other" not in by_id
    by_user = admin_client_logged_in.get(url, {"q": "carol"}).content.decode()
    assert "wanted" in by_user and other.name not in by_user


@pytest.mark.parametrize("model", ["accesstoken", "refreshtoken"])
def test_tokens_are_found_by_prefix_and_listed_without_their_value(admin_client_logged_in, model):
    user = make_user("dave")
    app = make_application(user)
    first = make_access_token(app, user)
    second = make_access_token(app, user)
    if model == "refreshtoken":
        first = make_refresh_token(app, user, access_token=first)
        second = make_refresh_token(app, user, access_token=second)
    url = reverse(f"admin:oauth_provider_{model}_changelist")
    body = admin_client_logged_in.get(url, {"q": first.token[:10]}).content.decode()
    assert f"#{first.pk}" in body or f"/{first.pk}/change/" in body
    assert f"/{second.pk}/change/" not in body
    assert first.token not in body
    detail = admin_client_logged_in.get(reverse(f"admin:oauth_provider_{model}_change", args=[first.pk]))
    assert detail.status_code == 200
    assert first.token not in detail.content.decode()
