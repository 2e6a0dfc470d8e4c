"""RP-initiated logout cannot be turned against a user, and its token removal is bounded.

Attacks over real HTTP against ``live_server``: a logout link opened without a session (from
another site, with an ID token hint that may be old) must revoke nothing until the visitor
confirms; a confirmed logout refuses the tokens at once and leaves the rows to a run of the
maintenance worker, or, with no worker app, removes one bounded batch in the request.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from requests.auth import HTTPBasicAuth

from oauth_provider import maintenance
from oauth_provider.models import RevocationWatermark, get_access_token_model, get_refresh_token_model
from oauth_provider.revocation import REQUEST_BATCH_SIZE
from oauth_tasks.models import MaintenanceRun, RunStatus

from .conftest import run_status, wait_until
from .test_endpoints_logout import bearer_status, enable_logout, logged_in_with_token, openid_tokens
from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    form_fields,
    make_client,
)


def refresh_status(base_url: str, client, token: dict) -> int:
    return requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    ).status_code


def confirm_logout(base_url: str, browser: requests.Session, hint: str) -> requests.Response:
    """Open the logout link and confirm on its form, as the signed-in user would."""
    page = browser.get(f"{base_url}/o/logout/", params={"id_token_hint": hint}, allow_redirects=False)
    assert page.status_code == 200 and 'id="logoutForm"' in page.text
    fields = form_fields(page.text)
    fields["allow"] = "on"
    return browser.post(f"{base_url}/o/logout/", data=fields, allow_redirects=False)


@pytest.mark.parametrize("always_prompt", [True, False])
def test_a_logout_link_opened_without_a_session_revokes_nothing_without_confirmation(
    base_url, settings, always_prompt
):
    enable_logout(settings, OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=always_prompt)
    client, user, browser, token = logged_in_with_token(base_url)

    # Another site makes the visitor's browser (no session here) open the logout link.
    response = requests.get(
        f"{base_url}/o/logout/", params={"id_token_hint": token["id_token"]}, allow_redirects=False
    )

    assert response.status_code == 200
    assert 'id="logoutForm"' in response.text
    assert bearer_status(base_url, token["access_token"]) == 200
    assert refresh_status(base_url, client, token) == 200
    assert not RevocationWatermark.objects.exists()
    assert not MaintenanceRun.objects.exists()


@pytest.mark.worker
def test_a_confirmed_logout_refuses_the_tokens_at_once_and_a_worker_run_removes_them(
    base_url, settings, worker_factory
):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    other = make_client(algorithm="RS256")
    other_token = openid_tokens(base_url, browser, other)

    response = confirm_logout(base_url, browser, token["id_token"])

    assert response.status_code == 302
    # In force at once, while no worker has run: every row is still there.
    assert bearer_status(base_url, token["access_token"]) == 401
    assert refresh_status(base_url, client, token) == 400
    access_tokens = get_access_token_model().objects.filter(user=user, application=client.application)
    assert access_tokens.count() == 1
    run = MaintenanceRun.objects.get()
    assert (run.kind, run.trigger) == ("revoke", "logout")
    assert run.params == {"user": user.pk, "application": client.application.pk}

    worker_factory()
    finished = wait_until(
        lambda: (lambda r: r if not r.is_active else None)(run_status(run.pk)),
        timeout=90,
        message="the logout's revocation run to finish",
    )

    assert finished.status == RunStatus.SUCCEEDED, finished.last_error
    assert not access_tokens.exists()
    refresh = get_refresh_token_model().objects.get(user=user, application=client.application)
    assert refresh.revoked is not None
    # The other application's tokens of the same user are untouched.
    assert bearer_status(base_url, other_token["access_token"]) == 200


@pytest.fixture
def no_worker_app():
    """The provider as installed without oauth_tasks: no dispatcher for background runs."""
    installed = maintenance.get_async_dispatcher()
    maintenance.set_async_dispatcher(None)
    yield
    maintenance.set_async_dispatcher(installed)


def test_without_a_worker_app_a_logout_removes_one_bounded_batch_and_refuses_the_rest(
    base_url, settings, no_worker_app
):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    model = get_access_token_model()
    expires = timezone.now() + timedelta(hours=1)
    held = [secrets.token_urlsafe(24) for _ in range(2 * REQUEST_BATCH_SIZE)]
    model.objects.bulk_create(
        model(user=user, application=client.application, token=raw, expires=expires, scope="read")
        for raw in held
    )
    total = model.objects.filter(user=user, application=client.application).count()

    response = confirm_logout(base_url, browser, token["id_token"])

    assert response.status_code == 302
    remaining = model.objects.filter(user=user, application=client.application)
    assert remaining.count() == total - REQUEST_BATCH_SIZE
    # What the request left is refused all the same.
    assert model.lookup(held[-1]) is not None
    assert bearer_status(base_url, held[-1]) == 401
    assert bearer_status(base_url, token["access_token"]) == 401
