"""Bearer tokens authenticate only the views that accept them, and CSRF stays on for sessions.

Each attack runs over real HTTP against ``live_server``: a token of any scope must not open the
Django admin, drive a form of the admin or the consent page, or switch the CSRF check off.
"""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from requests.auth import HTTPBasicAuth

from oauth_provider.decorators import accepts_bearer_token
from oauth_provider.models import get_application_model, get_grant_model
from oauth_tasks.models import MaintenanceRun

from . import test_endpoints_support as support
from .test_endpoints_support import (
    PASSWORD,
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    form_fields,
    make_client,
    pkce_pair,
)


@accepts_bearer_token
def note_view(request: HttpRequest) -> JsonResponse:
    """A view of a session that also accepts bearer tokens; POST changes state."""
    user = request.user.get_username() if request.user.is_authenticated else None
    return JsonResponse({"user": user, "method": request.method})


urlpatterns = [
    *support.urlpatterns,
    path("maintenance/", include("oauth_tasks.urls")),
    path("api/note/", note_view),
]


@pytest.fixture(name="site")
def site_fixture(base_url, settings) -> str:
    settings.ROOT_URLCONF = __name__
    return base_url


def password_token(site: str, username: str, scope: str) -> str:
    """A token of ``username`` with ``scope``, from the token endpoint (password grant)."""
    client = make_client(authorization_grant_type=get_application_model().GRANT_PASSWORD)
    response = requests.post(
        f"{site}/o/token/",
        data={"grant_type": "password", "username": username, "password": PASSWORD, "scope": scope},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_superusers_read_token_does_not_open_the_admin(site):
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    token = password_token(site, "root", "read")

    index = requests.get(f"{site}/admin/", headers=bearer(token), allow_redirects=False)

    assert index.status_code == 302
    assert index.headers["Location"].startswith("/admin/login/")


def test_a_superusers_read_token_cannot_add_a_user_through_the_admin(site):
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    token = password_token(site, "root", "read")
    form = {"username": "mallory", "password1": "Zq8!unguessable-pw", "password2": "Zq8!unguessable-pw"}
    form["usable_password"] = "true"

    response = requests.post(
        f"{site}/admin/auth/user/add/", data=form, headers=bearer(token), allow_redirects=False
    )

    assert response.status_code in (302, 403)
    assert not response.headers.get("Location", "").startswith("/admin/auth/user/")
    assert not get_user_model().objects.filter(username="mallory").exists()


def test_a_staff_read_token_cannot_start_a_scope_rename_through_the_admin(site):
    operator = get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)
    for codename in ("view_maintenancerun", "add_maintenancerun"):
        operator.user_permissions.add(Permission.objects.get(codename=codename))
    token = password_token(site, "operator", "read")
    # The maintenance API refuses this token: it lacks the maintenance scope.
    api = requests.post(f"{site}/maintenance/api/runs/", json={"kind": "cleanup"}, headers=bearer(token))
    assert api.status_code == 403

    response = requests.post(
        f"{site}/admin/oauth_tasks/maintenancerun/rename-scope/",
        data={"old": "read", "new": "write", "confirm": "yes"},
        headers=bearer(token),
        allow_redirects=False,
    )

    assert response.status_code in (302, 403)
    assert not response.headers.get("Location", "").startswith("/admin/oauth_tasks/")
    assert not MaintenanceRun.objects.exists()


def test_a_read_token_cannot_approve_an_authorization_request_for_more_scope(site):
    support.make_staff_user("alice")
    token = password_token(site, "alice", "read")
    attacker = make_client()
    _verifier, challenge = pkce_pair()
    consent = {
        "allow": "on",
        "client_id": attacker.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "read write maintenance",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    query = {key: value for key, value in consent.items() if key != "allow"}

    response = requests.post(
        f"{site}/o/authorize/", params=query, data=consent, headers=bearer(token), allow_redirects=False
    )

    assert not response.headers.get("Location", "").startswith(REDIRECT_URI)
    assert not get_grant_model().objects.exists()


def test_a_view_accepting_bearer_tokens_checks_csrf_for_sessions_and_not_for_tokens(site):
    support.make_staff_user("alice")
    support.make_staff_user("bob")
    browser = browser_login(site, "alice")
    bobs_token = password_token(site, "bob", "read")

    # A session POST without its CSRF token is refused, with or without a bearer header beside it.
    assert browser.post(f"{site}/api/note/").status_code == 403
    assert browser.post(f"{site}/api/note/", headers=bearer(bobs_token)).status_code == 403
    # With the token of the page, the session user acts; a bearer header does not replace them.
    csrf = form_fields(browser.get(f"{site}/admin/password_change/").text)["csrfmiddlewaretoken"]
    headers = {"X-CSRFToken": csrf, "Referer": f"{site}/", **bearer(bobs_token)}
    assert browser.post(f"{site}/api/note/", headers=headers).json()["user"] == "alice"
    # A request carrying only the bearer token needs no CSRF token: no other site can send it.
    assert requests.post(f"{site}/api/note/", headers=bearer(bobs_token)).json() == {
        "user": "bob",
        "method": "POST",
    }
    # A bad token authenticates nobody, and the request is then held to the CSRF check.
    assert requests.get(f"{site}/api/note/", headers=bearer("nope")).json()["user"] is None
    assert requests.post(f"{site}/api/note/", headers=bearer("nope")).status_code == 403
