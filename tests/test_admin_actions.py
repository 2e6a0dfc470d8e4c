"""Admin actions through the admin: "Revoke all tokens" on applications and users, "Rename scope".

Each shows a confirmation page with the rows affected (and creates nothing), and only the
confirming POST creates the run, answered with a link to the run's admin page.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from oauth_provider.models import RevocationWatermark, get_application_model
from oauth_provider.tokens import is_token_usable
from oauth_tasks.models import MaintenanceRun
from tests.factories import make_access_token, make_application, make_grant, make_refresh_token, make_user
from tests.test_endpoints_support import provider_settings

pytestmark = pytest.mark.django_db

APP_CHANGELIST = "/admin/oauth_provider/application/"
USER_CHANGELIST = "/admin/auth/user/"
RENAME = "/admin/oauth_tasks/maintenancerun/rename-scope/"


@pytest.fixture
def admin_client_csrf():
    """A superuser's browser session through the real login form, CSRF enforced."""
    make_user("root", is_staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=True)
    page = client.get("/admin/login/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/admin/login/",
        {"username": "root", "password": "pw-12345!", "csrfmiddlewaretoken": token, "next": "/admin/"},
    )
    assert response.status_code == 302
    client.csrf = client.cookies["csrftoken"].value
    return client


def post(client: Client, url: str, data: dict, **kwargs):
    return client.post(url, {**data, "csrfmiddlewaretoken": client.csrf}, **kwargs)


def table_counts(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S)
    return [re.findall(r'<td class="(?:count|total)">(\d+)</td>', row) for row in rows]


@pytest.fixture
def world():
    alice, bob = make_user("alice"), make_user("bob")
    leaky, other = make_application(name="leaky"), make_application(name="other")
    for user in (alice, bob):
        access = make_access_token(leaky, user)
        make_refresh_token(leaky, user, access_token=access)
        make_grant(leaky, user)
    make_access_token(other, alice)
    return {"alice": alice, "bob": bob, "leaky": leaky, "other": other}


def test_revoking_an_applications_tokens_shows_the_counts_then_starts_the_run(admin_client_csrf, world):
    client, leaky = admin_client_csrf, world["leaky"]
    changelist = client.get(APP_CHANGELIST)
    assert b'value="revoke_all_tokens"' in changelist.content

    confirm = post(
        client, APP_CHANGELIST, {"action": "revoke_all_tokens", "_selected_action": [leaky.pk], "index": 0}
    )
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "Revoke all tokens?" in html and "leaky" in html
    # refresh tokens, access tokens, ID tokens, grants, total
    assert table_counts(html, "revocation-counts") == [["2", "2", "0", "2", "6"]]
    assert "<th>Refresh tokens</th><th>Access tokens</th>" in html and "refresh_tokens" not in html
    assert not MaintenanceRun.objects.exists() and not RevocationWatermark.objects.exists()

    done = post(
        client,
        APP_CHANGELIST,
        {"action": "revoke_all_tokens", "_selected_action": [leaky.pk], "confirm": "yes"},
        follow=True,
    )
    run = MaintenanceRun.objects.get()
    assert (run.kind, run.params, run.trigger, run.triggered_by) == (
        "revoke",
        {"application": leaky.pk},
        "admin",
        "root",
    )
    assert done.redirect_chain[-1][0].startswith(APP_CHANGELIST)
    link = f'<a href="/admin/oauth_tasks/maintenancerun/{run.pk}/change/">run #{run.pk}</a>'
    assert link in done.content.decode()
    assert RevocationWatermark.objects.filter(application=leaky, not_before=run.cutoff).exists()
    assert not any(is_token_usable(t) for t in leaky.accesstoken_set.all())
    assert all(is_token_usable(t) for t in world["other"].accesstoken_set.all())

    # The run's admin page shows it.
    assert client.get(f"/admin/oauth_tasks/maintenancerun/{run.pk}/change/").status_code == 200

    # Confirming again while the run is active starts nothing new and says which run does it.
    again = post(
        client,
        APP_CHANGELIST,
        {"action": "revoke_all_tokens", "_selected_action": [leaky.pk], "confirm": "yes"},
        follow=True,
    )
    assert MaintenanceRun.objects.count() == 1 and "already pending" in again.content.decode()


def test_revoking_users_tokens_gives_each_user_a_run(admin_client_csrf, world):
    client = admin_client_csrf
    selected = [world["alice"].pk, world["bob"].pk]
    confirm = post(
        client, USER_CHANGELIST, {"action": "revoke_all_tokens", "_selected_action": selected, "index": 0}
    )
    assert confirm.status_code == 200
    assert table_counts(confirm.content.decode(), "revocation-counts") == [
        ["1", "2", "0", "1", "4"],
        ["1", "1", "0", "1", "3"],
    ]
    assert not MaintenanceRun.objects.exists()

    post(
        client,
        USER_CHANGELIST,
        {"action": "revoke_all_tokens", "_selected_action": selected, "confirm": "yes"},
    )
    assert sorted(run.params["user"] for run in MaintenanceRun.objects.all()) == sorted(selected)
    assert RevocationWatermark.objects.filter(user__in=selected, application=None).count() == 2


def test_rename_scope_counts_whole_words_then_starts_the_run(admin_client_csrf, settings):
    client = admin_client_csrf
    scopes = {**settings.OAUTH2_PROVIDER["SCOPES"], "profile:read": "Read the profile"}
    provider_settings(settings, SCOPES=scopes)
    app, user = make_application(), make_user()
    for scope in ("read", "read write", "read:admin", "readonly"):
        make_access_token(app, user, scope=scope)
    make_grant(app, user, scope="read")

    changelist = client.get("/admin/oauth_tasks/maintenancerun/")
    assert f'href="{RENAME}"'.encode() in changelist.content
    assert client.get(RENAME).status_code == 200

    bad = post(client, RENAME, {"old": "read write", "new": "x"})
    assert bad.status_code == 200 and "without spaces" in bad.content.decode()
    same = post(client, RENAME, {"old": "read", "new": "read"})
    assert "both renamed and a rename target" in same.content.decode()

    confirm = post(client, RENAME, {"old": "read", "new": "profile:read"})
    # access tokens, ID tokens, grants
    assert table_counts(confirm.content.decode(), "rename-counts") == [["2"], ["0"], ["1"]]
    assert not MaintenanceRun.objects.exists()

    done = post(client, RENAME, {"old": "read", "new": "profile:read", "confirm": "yes"}, follow=True)
    run = MaintenanceRun.objects.get()
    assert (run.kind, run.params) == ("migrate_scope", {"mapping": {"read": ["profile:read"]}})
    assert done.redirect_chain[-1][0] == f"/admin/oauth_tasks/maintenancerun/{run.pk}/change/"
    assert f"run #{run.pk}" in done.content.decode()


def test_staff_without_the_start_permission_get_no_action_and_no_rename_page(world):
    viewer = make_user("viewer", is_staff=True)
    for codename in ("view_application", "change_application", "view_maintenancerun"):
        viewer.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(viewer, backend="django.contrib.auth.backends.ModelBackend")

    assert b'value="revoke_all_tokens"' not in client.get(APP_CHANGELIST).content
    refused = client.post(
        APP_CHANGELIST, {"action": "revoke_all_tokens", "_selected_action": [world["leaky"].pk]}
    )
    assert refused.status_code in (200, 302) and not MaintenanceRun.objects.exists()
    assert client.get(RENAME).status_code == 403
    assert b"rename-scope" not in client.get("/admin/oauth_tasks/maintenancerun/").content
    assert not RevocationWatermark.objects.exists()
    assert get_application_model().objects.count() == 2
