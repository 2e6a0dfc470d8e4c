"""The ``scope`` parameter is bounded and every name in it counted once, at authorize and token.

Each test sends the hostile parameter over real HTTP to the provider served by ``live_server`` and
checks the answer is ``invalid_scope`` naming ``scope``, with nothing stored.
"""

from __future__ import annotations

import pytest
import requests
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from oauth_provider.models import get_access_token_model, get_grant_model
from tests.factories import make_access_token, make_refresh_token
from tests.test_endpoints_support import (
    REDIRECT_URI,
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    browser_login,
    form_fields,
    make_client,
    make_staff_user,
    query_of,
)

AccessToken = get_access_token_model()


def client_credentials(base_url: str, client, scope: str) -> requests.Response:
    return requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=HTTPBasicAuth(client.client_id, client.secret),
        timeout=60,
    )


def assert_invalid_scope(response: requests.Response) -> str:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    answer = response.json()
    assert answer["error"] == "invalid_scope", answer
    assert answer["error_description"].startswith("scope: "), answer
    return answer["error_description"]


@pytest.mark.parametrize(
    "scope, says",
    [
        pytest.param("read " * 100_000, "at most 1000 characters", id="500 KB"),
        pytest.param(" ".join(["read"] * 60), "at most 50 scope names", id="60 names"),
        pytest.param("read write read", "'read' is requested twice", id="a duplicate"),
        pytest.param("read admin", "'admin' is not a scope", id="an unknown name"),
    ],
)
def test_the_token_endpoint_refuses_an_unbounded_or_repeated_scope(base_url, scope, says):
    client = make_client(authorization_grant_type="client-credentials")

    description = assert_invalid_scope(client_credentials(base_url, client, scope))

    assert says in description
    assert not AccessToken.objects.exists()


def test_a_refresh_cannot_repeat_the_scopes_it_narrows_to(base_url):
    user = make_staff_user()
    client = make_client()
    access = make_access_token(client.application, user, scope="read write")
    refresh = make_refresh_token(client.application, user, access_token=access)

    response = requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": refresh.token, "scope": "read read"},
        auth=HTTPBasicAuth(client.client_id, client.secret),
        timeout=60,
    )

    assert "'read' is requested twice" in assert_invalid_scope(response)
    assert list(AccessToken.objects.values_list("scope", flat=True)) == ["read write"]


def test_a_bounded_scope_without_repeats_is_issued(base_url):
    client = make_client(authorization_grant_type="client-credentials")

    response = client_credentials(base_url, client, "write read")

    assert response.status_code == 200, response.text
    assert AccessToken.objects.get().scope == "write read"


@pytest.mark.parametrize(
    "scope, says",
    [
        pytest.param("read " * 10_000, "at most 1000 characters", id="50 KB"),
        pytest.param("read write read", "'read' is requested twice", id="a duplicate"),
        pytest.param("read admin", "'admin' is not a scope", id="an unknown name"),
    ],
)
def test_authorize_redirects_invalid_scope_and_never_shows_the_consent_form(base_url, scope, says):
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=scope, pkce="S256")
    url, state = oauth.authorization_url(f"{base_url}/o/authorize/")

    page = browser.get(url, allow_redirects=False, timeout=60)

    assert page.status_code == 302, (page.status_code, page.text[:300])
    error = query_of(page.headers["Location"])
    assert page.headers["Location"].startswith(REDIRECT_URI)
    assert error["error"] == "invalid_scope" and error["state"] == state
    assert says in error["error_description"]


def test_the_consent_form_posted_back_with_a_repeated_scope_stores_no_grant(base_url):
    user = make_staff_user()
    client = make_client()
    browser = browser_login(base_url, user.username)
    oauth = OAuth2Session(client.client_id, redirect_uri=REDIRECT_URI, scope=["read"], pkce="S256")
    url, _state = oauth.authorization_url(f"{base_url}/o/authorize/")
    page = browser.get(url, allow_redirects=False, timeout=60)
    assert page.status_code == 200
    fields = form_fields(page.text)
    fields.update(allow="on", scope="read " * 300)

    answer = browser.post(url, data=fields, allow_redirects=False, timeout=60)

    assert answer.status_code == 302
    assert query_of(answer.headers["Location"])["error"] == "invalid_scope"
    assert not get_grant_model().objects.exists()
