"""Admin of the provider's models: searchable by client id, user and a whole token; no secret shown."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import make_access_token, make_application, make_grant, make_refresh_token, make_user
from tests.test_endpoints_support import browser_login, make_staff_user

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


@pytest.mark.parametrize("model", ["accesstoken", "refreshtoken", "grant"])
def test_tokens_are_found_by_their_whole_value_and_listed_without_it(admin_client_logged_in, model):
    user = make_user("dave")
    app = make_application(user)
    first = make_access_token(app, user)
    second = make_access_token(app, user)
    if model == "refreshtoken":
        first = make_refresh_token(app, user, access_token=first)
        second = make_refresh_token(app, user, access_token=second)
    elif model == "grant":
        first, second = make_grant(app, user), make_grant(app, user)
    value = first.code if model == "grant" else first.token
    url = reverse(f"admin:oauth_provider_{model}_changelist")
    body = admin_client_logged_in.get(url, {"q": value}).content.decode()
    assert f"/{first.pk}/change/" in body
    assert f"/{second.pk}/change/" not in body
    listing = admin_client_logged_in.get(url).content.decode()
    assert f"/{first.pk}/change/" in listing and value[:6] not in listing
    detail = admin_client_logged_in.get(reverse(f"admin:oauth_provider_{model}_change", args=[first.pk]))
    assert detail.status_code == 200
    assert value not in detail.content.decode()


@pytest.mark.parametrize("model", ["accesstoken", "refreshtoken", "grant"])
def test_the_token_search_is_no_prefix_oracle(live_server, transactional_db, model):
    """An admin user who may view tokens types the start of a token into the search box, longer
    each time: no row ever matches a part of a value, so the search says nothing about it."""
    root = make_staff_user("root")
    root.is_superuser = True
    root.save()
    app = make_application(root)
    secret_row = make_grant(app, root) if model == "grant" else make_access_token(app, root)
    if model == "refreshtoken":
        secret_row = make_refresh_token(app, root, access_token=secret_row)
    value = secret_row.code if model == "grant" else secret_row.token
    browser = browser_login(live_server.url, "root")
    url = f"{live_server.url}{reverse(f'admin:oauth_provider_{model}_changelist')}"
    row_link = f"/{secret_row.pk}/change/"

    for length in (8, 12, 16, len(value) - 1):
        page = browser.get(url, params={"q": value[:length]}, timeout=30)
        assert page.status_code == 200
        assert row_link not in page.text, f"a search for the first {length} characters finds the row"
    # Lower case, upper case: no equality modulo case either (a case-insensitive match halves the work).
    for variant in {value.swapcase(), value.upper(), value.lower()} - {value}:
        assert row_link not in browser.get(url, params={"q": variant}, timeout=30).text

    assert row_link in browser.get(url, params={"q": value}, timeout=30).text
