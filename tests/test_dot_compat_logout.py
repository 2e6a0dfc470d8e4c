"""RP-initiated logout as django-oauth-toolkit answers it, over real HTTP against ``live_server``.

DOT's confirmation form posts ``allow``; a posted request without it is ``logout_denied``; the
user lands on an absolute URL when the client names no post-logout URI; a post-logout URI needs a
client; a hint whose ID token is gone, or was already used to sign out, is refused; ID tokens go
with the other tokens. Its ``validate_logout_request()`` keeps DOT's signature and answers.
"""

from __future__ import annotations

import pytest
import requests
from django.test import RequestFactory

from oauth_provider import maintenance
from oauth_provider.exceptions import (
    ClientIdMissmatch,
    InvalidIDTokenError,
    InvalidOIDCClientError,
    InvalidOIDCRedirectURIError,
)
from oauth_provider.models import get_access_token_model, get_id_token_model, get_refresh_token_model
from oauth_provider.settings import oauth2_settings
from oauth_provider.views.oidc import RPInitiatedLogoutView, _load_id_token, _validate_claims

from .test_endpoints_logout import (
    LOGGED_OUT_URI,
    bearer_status,
    enable_logout,
    logged_in_with_token,
    session_user,
)
from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    form_fields,
    make_client,
)


@pytest.fixture
def no_worker_app():
    """The provider as installed without oauth_tasks: the logout removes rows in the request."""
    installed = maintenance.get_async_dispatcher()
    maintenance.set_async_dispatcher(None)
    yield
    maintenance.set_async_dispatcher(installed)


def test_the_confirmation_in_dots_form_format_signs_out_to_an_absolute_url(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    page = browser.get(f"{base_url}/o/logout/", params={"client_id": client.client_id})
    assert page.status_code == 200
    fields = form_fields(page.text)
    fields["allow"] = "True"  # as DOT's ConfirmLogoutForm checkbox posts it

    response = browser.post(f"{base_url}/o/logout/", data=fields, allow_redirects=False)

    assert response.status_code == 302
    assert response.headers["Location"] == f"{base_url}/"
    assert session_user(base_url, browser) is None
    assert bearer_status(base_url, token["access_token"]) == 401


def test_allow_false_is_a_refusal_not_a_confirmation(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    page = browser.get(f"{base_url}/o/logout/", params={"client_id": client.client_id})
    fields = form_fields(page.text)
    fields["allow"] = "false"

    response = browser.post(
        f"{base_url}/o/logout/", data=fields, headers={"Accept": "application/json"}, allow_redirects=False
    )

    assert response.status_code == 400
    assert response.json()["error"] == "logout_denied"
    assert session_user(base_url, browser) == user.username
    assert bearer_status(base_url, token["access_token"]) == 200


def test_a_logout_without_post_logout_uri_lands_on_logout_redirect_url_as_an_absolute_url(base_url, settings):
    enable_logout(settings, OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=False)
    settings.LOGOUT_REDIRECT_URL = "/signed-out/"
    client, user, browser, token = logged_in_with_token(base_url)

    response = browser.get(
        f"{base_url}/o/logout/", params={"id_token_hint": token["id_token"]}, allow_redirects=False
    )

    assert response.status_code == 302
    assert response.headers["Location"] == f"{base_url}/signed-out/"
    assert session_user(base_url, browser) is None


def test_neither_hint_nor_client_id_with_a_registered_post_logout_uri_is_400_not_a_redirect(
    base_url, settings
):
    enable_logout(settings, OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=False)
    client, user, browser, token = logged_in_with_token(base_url)

    response = browser.get(
        f"{base_url}/o/logout/", params={"post_logout_redirect_uri": LOGGED_OUT_URI}, allow_redirects=False
    )

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert session_user(base_url, browser) == user.username


def test_a_hint_whose_id_token_is_gone_is_refused(base_url, settings):
    enable_logout(settings, OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=False)
    client, user, browser, token = logged_in_with_token(base_url)
    get_id_token_model().objects.filter(user=user).delete()

    response = browser.get(
        f"{base_url}/o/logout/",
        params={"id_token_hint": token["id_token"]},
        headers={"Accept": "application/json"},
        allow_redirects=False,
    )

    assert response.status_code == 400
    assert response.json()["parameter"] == "id_token_hint"
    assert session_user(base_url, browser) == user.username


def test_a_hint_already_used_to_sign_out_is_refused_before_the_worker_removed_its_rows(base_url, settings):
    enable_logout(settings, OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=False)
    client, user, browser, token = logged_in_with_token(base_url)
    first = browser.get(
        f"{base_url}/o/logout/", params={"id_token_hint": token["id_token"]}, allow_redirects=False
    )
    assert first.status_code == 302
    # No worker has run: the ID token row is still there, refused by the revocation.
    assert get_id_token_model().objects.filter(user=user).exists()

    again = requests.get(
        f"{base_url}/o/logout/",
        params={"id_token_hint": token["id_token"]},
        headers={"Accept": "application/json"},
        allow_redirects=False,
    )

    assert again.status_code == 400
    assert again.json()["parameter"] == "id_token_hint"


def test_id_tokens_go_with_the_other_tokens_of_the_application(base_url, settings, no_worker_app):
    enable_logout(settings, OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=False)
    client, user, browser, token = logged_in_with_token(base_url)
    app = client.application
    assert get_id_token_model().objects.filter(user=user, application=app).count() == 1

    response = browser.get(
        f"{base_url}/o/logout/",
        params={"id_token_hint": token["id_token"], "client_id": client.client_id},
        allow_redirects=False,
    )

    assert response.status_code == 302
    assert not get_id_token_model().objects.filter(user=user, application=app).exists()
    assert not get_access_token_model().objects.filter(user=user, application=app).exists()
    assert get_refresh_token_model().objects.get(user=user, application=app).revoked is not None


def test_with_delete_tokens_off_every_token_stays(base_url, settings, no_worker_app):
    enable_logout(
        settings, OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT=False, OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS=False
    )
    client, user, browser, token = logged_in_with_token(base_url)

    response = browser.get(
        f"{base_url}/o/logout/", params={"id_token_hint": token["id_token"]}, allow_redirects=False
    )

    assert response.status_code == 302
    assert session_user(base_url, browser) is None
    assert get_id_token_model().objects.filter(user=user).count() == 1
    assert bearer_status(base_url, token["access_token"]) == 200


def test_validate_logout_request_keeps_dots_signature_and_answers(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)
    other = make_client(algorithm="RS256", client_type="public", post_logout_redirect_uris="http://other.org")
    app = client.application
    view = RPInitiatedLogoutView()
    view.request = RequestFactory().get("/o/logout/", HTTP_HOST=base_url.split("//")[1])
    view.request.user = user
    validate = view.validate_logout_request

    assert validate(id_token_hint=None, client_id=None, post_logout_redirect_uri=None) == (None, None)
    assert validate(id_token_hint=None, client_id=client.client_id, post_logout_redirect_uri=None) == (
        app,
        None,
    )
    assert validate(
        id_token_hint=token["id_token"], client_id=None, post_logout_redirect_uri=LOGGED_OUT_URI
    ) == (app, user)
    with pytest.raises(InvalidIDTokenError):
        validate(id_token_hint="111", client_id=None, post_logout_redirect_uri=None)
    with pytest.raises(ClientIdMissmatch):
        validate(id_token_hint=token["id_token"], client_id=other.client_id, post_logout_redirect_uri=None)
    with pytest.raises(InvalidOIDCClientError):
        validate(id_token_hint=None, client_id=None, post_logout_redirect_uri=LOGGED_OUT_URI)
    for uri in ("example.org", "imap://example.org", "http://unregistered.example"):
        with pytest.raises(InvalidOIDCRedirectURIError):
            validate(id_token_hint=None, client_id=client.client_id, post_logout_redirect_uri=uri)
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    }
    with pytest.raises(InvalidOIDCRedirectURIError):
        validate(id_token_hint=None, client_id=other.client_id, post_logout_redirect_uri="http://other.org")


def test_load_id_token_and_validate_claims_as_dot(base_url, settings):
    enable_logout(settings)
    client, user, browser, token = logged_in_with_token(base_url)

    assert _load_id_token("Not a Valid ID Token.") == (None, None)
    id_token, claims = _load_id_token(token["id_token"])
    assert id_token == get_id_token_model().objects.get(user=user)
    assert claims["jti"] == str(id_token.jti)
    host = base_url.split("//")[1]
    assert _validate_claims(RequestFactory().get("/", HTTP_HOST=host), claims)
    assert not _validate_claims(RequestFactory().get("/", HTTP_HOST=host), {**claims, "iss": "https://evil"})
    # The validator's own loader, without a request, as DOT calls it.
    assert oauth2_settings.OAUTH2_VALIDATOR_CLASS()._load_id_token(token["id_token"]) == id_token
