"""A scope migration may only rename to configured scopes, and grants a privileged scope only when
asked explicitly by someone holding the permission for it, through the API and the admin alike.

The attack: a staff operator allowed to start runs renames ``write`` to ``introspection``, and a
client's former ``write`` token then introspects other users' tokens. Every request goes over real
HTTP to the provider served by ``live_server``.
"""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth.models import Permission

from oauth_tasks import engine
from oauth_tasks.jobs.migrations import PRIVILEGED_PERMISSION
from oauth_tasks.models import MaintenanceRun
from tests.factories import make_access_token, make_application, make_user
from tests.test_endpoints_support import PASSWORD, browser_login, form_fields

RUNS = "/maintenance/api/runs/"
RENAME = "/admin/oauth_tasks/maintenancerun/rename-scope/"
START = ("view_maintenancerun", "add_maintenancerun")


@pytest.fixture
def base_url(live_server, transactional_db, monkeypatch) -> str:
    """The project as deployed (its own URLconf: OAuth endpoints, admin, maintenance API)."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    return live_server.url


def operator(username: str, *codenames: str):
    user = make_user(username, is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="oauth_tasks", codename=codename)
        )
    return user


def start(base_url: str, user, params: dict) -> requests.Response:
    token = make_access_token(make_application(), user, scope="maintenance").token
    return requests.post(
        base_url + RUNS,
        json={"kind": "migrate_scope", "params": params},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def finish(run_id: int) -> None:
    """Run the batches in this process, as the worker would."""
    for _ in range(100):
        run = MaintenanceRun.objects.get(pk=run_id)
        if not run.is_active:
            return
        engine.run_batch(run.pk, run.batch_number)


def test_renaming_write_to_introspection_is_refused_and_the_write_token_stays_harmless(base_url):
    victim_token = make_access_token(make_application(), make_user("victim"), scope="read").token
    writer = make_access_token(make_application(), None, scope="write").token
    response = start(base_url, operator("operator", *START), {"mapping": {"write": "introspection"}})
    if response.status_code == 202:
        finish(response.json()["run_id"])  # what the worker would do with the run

    introspection = requests.post(
        f"{base_url}/o/introspect/",
        data={"token": victim_token},
        headers={"Authorization": f"Bearer {writer}"},
        timeout=30,
    )

    assert introspection.status_code == 403, "a former write token introspects other users' tokens"
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["field"] == "mapping"
    assert "'introspection' is a privileged scope" in answer["detail"]
    assert "allow_privileged" in answer["detail"]
    assert not MaintenanceRun.objects.exists()


@pytest.mark.parametrize("target", ["maintenance", "introspection"])
def test_the_privileged_flag_needs_its_own_permission(base_url, target):
    response = start(
        base_url, operator("operator", *START), {"mapping": {"write": target}, "allow_privileged": True}
    )

    assert response.status_code == 403, response.text
    assert response.json()["detail"] == f"missing permission {PRIVILEGED_PERMISSION}"
    assert not MaintenanceRun.objects.exists()


def test_with_the_flag_and_the_permission_a_privileged_rename_starts(base_url):
    trusted = operator("trusted", *START, "grant_privileged_scopes")

    response = start(base_url, trusted, {"mapping": {"write": "maintenance"}, "allow_privileged": True})

    assert response.status_code == 202, response.text
    run = MaintenanceRun.objects.get()
    assert run.params == {"mapping": {"write": ["maintenance"]}, "allow_privileged": True}


@pytest.mark.parametrize(
    "mapping, wrong",
    [
        ({"write": "superuser"}, "'superuser'"),
        ({"rw": ["read", "admin:all"]}, "'admin:all'"),
    ],
)
def test_a_target_that_is_not_a_configured_scope_is_refused_naming_it(base_url, mapping, wrong):
    response = start(base_url, operator("operator", *START, "grant_privileged_scopes"), {"mapping": mapping})

    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["field"] == "mapping"
    assert f"{wrong} is not a configured scope" in answer["detail"]
    assert not MaintenanceRun.objects.exists()


def rename(browser: requests.Session, base_url: str, **fields) -> requests.Response:
    page = browser.get(base_url + RENAME, timeout=30)
    assert page.status_code == 200
    data = {"csrfmiddlewaretoken": form_fields(page.text)["csrfmiddlewaretoken"], **fields}
    return browser.post(base_url + RENAME, data=data, headers={"Referer": base_url + RENAME}, timeout=30)


def test_the_admin_rename_form_refuses_the_same_renames(base_url):
    operator("operator", *START)
    browser = browser_login(base_url, "operator")

    privileged = rename(browser, base_url, old="write", new="introspection", confirm="yes")
    flagged = rename(
        browser, base_url, old="write", new="introspection", allow_privileged="on", confirm="yes"
    )
    unknown = rename(browser, base_url, old="write", new="superuser", confirm="yes")

    assert "&#x27;introspection&#x27; is a privileged scope" in privileged.text
    assert f"You lack the permission {PRIVILEGED_PERMISSION}." in flagged.text
    assert "&#x27;superuser&#x27; is not a configured scope" in unknown.text
    assert not MaintenanceRun.objects.exists()


def test_the_admin_rename_form_grants_a_privileged_scope_with_the_flag_and_the_permission(base_url):
    operator("trusted", *START, "grant_privileged_scopes")
    browser = browser_login(base_url, "trusted")

    done = rename(browser, base_url, old="write", new="introspection", allow_privileged="on", confirm="yes")

    assert done.status_code == 200 and "started" in done.text
    assert MaintenanceRun.objects.get().params == {
        "mapping": {"write": ["introspection"]},
        "allow_privileged": True,
    }
