"""The pages people look at: sign-in, consent, sign-out, password reset, the landing page, errors.

HTTP checks go through Django's test client; the journeys a user makes run in a real Chromium
(tests/browser.py) against ``live_server`` with the project's own URLconf.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from requests_oauthlib import OAuth2Session

from oauth_provider.models import get_access_token_model, token_checksum

from .test_endpoints_support import PASSWORD, REDIRECT_URI, make_client

pytestmark = pytest.mark.django_db
browser = pytest.mark.browser


def make_user(username: str, **fields):
    return get_user_model().objects.create_user(
        username=username, password=PASSWORD, email=f"{username}@example.com", **fields
    )


def test_landing_page_says_what_runs_here_and_links_the_parts(client, settings):
    settings.FLOWER_URL = ""
    settings.FLOWER_PORT = "5599"

    response = client.get("/", HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 200
    html = response.content.decode()
    assert "OAuth2 and OpenID Connect provider" in html
    for link in ('href="/admin/"', 'href="http://127.0.0.1:5599/"', 'href="/maintenance/health/"'):
        assert link in html
    assert 'href="/o/.well-known/openid-configuration"' in html
    assert 'href="/accounts/login/"' in html


def test_admin_view_site_link_leads_to_the_landing_page(client):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    admin = client.get("/admin/").content.decode()
    view_site = re.search(r'<a href="([^"]+)">View site</a>', admin).group(1)

    assert client.get(view_site).status_code == 200


def test_authorize_sends_an_anonymous_user_to_the_end_user_sign_in(client):
    app = make_client()

    response = client.get(f"/o/authorize/?response_type=code&client_id={app.client_id}&scope=read")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/o/authorize/")


def test_a_non_staff_user_signs_in_on_the_sign_in_page(client):
    make_user("carol")

    response = client.post(
        "/accounts/login/", {"username": "carol", "password": PASSWORD, "next": "/o/authorize/?x=1"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/o/authorize/?x=1"
    assert client.session["_auth_user_id"]


def test_a_wrong_password_is_refused_on_the_page_with_a_message(client):
    make_user("carol")

    response = client.post("/accounts/login/", {"username": "carol", "password": "wrong"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert 'role="alert"' in response.content.decode()


def test_sign_in_does_not_redirect_to_another_site(client):
    make_user("carol")

    response = client.post(
        "/accounts/login/", {"username": "carol", "password": PASSWORD, "next": "https://evil.example/"}
    )

    assert response["Location"] == "/"


def test_sign_out_is_a_post_and_shows_the_signed_out_page(client):
    client.force_login(make_user("carol"))

    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")

    assert response.status_code == 200
    assert "You are signed out" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_password_reset_mails_a_link_that_sets_a_new_password(client):
    make_user("carol")

    response = client.post("/accounts/password_reset/", {"email": "carol@example.com"})
    assert response["Location"] == "/accounts/password_reset/done/"
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)

    form = client.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    new_password = "another correct horse 42"
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": new_password, "new_password2": new_password}
    )

    assert done["Location"] == "/accounts/reset/done/"
    assert client.login(username="carol", password=new_password)


def test_unknown_address_gets_the_styled_not_found_page(client, settings):
    settings.DEBUG = False

    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def consent_page(client, app, scope: str):
    return client.get(
        f"/o/authorize/?response_type=code&client_id={app.client_id}&scope={scope}"
        f"&redirect_uri={REDIRECT_URI}&code_challenge={'a' * 43}&code_challenge_method=S256"
    )


def test_consent_page_names_the_application_the_user_and_each_scope(client):
    app = make_client(name="Billing dashboard")
    client.force_login(make_user("carol"))

    response = consent_page(client, app, "read+write")

    html = response.content.decode()
    assert response.status_code == 200
    assert '<span id="applicationName">Billing dashboard</span>' in html
    assert '<strong id="signedInAs">carol</strong>' in html
    assert "Reading scope" in html and "Writing scope" in html
    assert 'id="allow" name="allow" value="on"' in html
    assert 'id="deny"' in html and 'id="notYou"' in html
    assert "<link" not in html and "<script" not in html  # no external assets


def test_consent_page_escapes_the_application_name(client):
    app = make_client(name="<script>alert(1)</script>")
    client.force_login(make_user("carol"))

    response = consent_page(client, app, "read")

    assert "<script>alert(1)</script>" not in response.content.decode()


def test_a_project_template_overrides_the_base_template(client, settings, tmp_path):
    (tmp_path / "oauth2_provider").mkdir()
    (tmp_path / "oauth2_provider" / "base.html").write_text(
        "<html><body>ACME {% block content %}{% endblock %}</body></html>"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]

    response = client.get("/accounts/login/")

    assert response.content.decode().startswith("<html><body>ACME")


# --- in a real browser -----------------------------------------------------------------------------


@pytest.fixture
def site(live_server, transactional_db, monkeypatch) -> str:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    return live_server.url


def capture_callback(page) -> None:
    """The client's redirect URI answers in the browser with a small page (nothing listens there)."""
    page.route(
        f"{REDIRECT_URI}**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<p>client</p>"),
    )


def sign_in(page, username: str) -> None:
    """Fill in and send the sign-in form the browser is on."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def authorization_url(site: str, app, scope=("read",)) -> tuple[OAuth2Session, str, str]:
    oauth = OAuth2Session(app.client_id, redirect_uri=REDIRECT_URI, scope=list(scope), pkce="S256")
    url, state = oauth.authorization_url(f"{site}/o/authorize/")
    return oauth, url, state


@browser
def test_browser_non_staff_user_signs_in_consents_and_the_client_gets_a_code(site, page, screenshot):
    make_user("carol")
    app = make_client(name="Billing dashboard")
    oauth, url, state = authorization_url(site, app, scope=("read", "write"))
    capture_callback(page)

    page.goto(url)
    assert urlsplit(page.url).path == "/accounts/login/"
    screenshot(page, "login")
    sign_in(page, "carol")

    page.wait_for_selector("#authorizationForm")
    assert page.inner_text("#applicationName") == "Billing dashboard"
    assert page.inner_text("#signedInAs") == "carol"
    screenshot(page, "consent")
    page.get_by_role("button", name="Allow").click()

    page.wait_for_url(f"{REDIRECT_URI}**")
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == [state]
    token = oauth.fetch_token(
        f"{site}/o/token/", code=query["code"][0], client_secret=app.secret, include_client_id=True
    )
    issued = get_access_token_model().objects.get(token_checksum=token_checksum(token["access_token"]))
    assert issued.user.username == "carol"
    assert (issued.application_id, issued.scope) == (app.application.pk, "read write")


@browser
def test_browser_deny_returns_access_denied_to_the_client(site, page):
    make_user("carol")
    _oauth, url, _state = authorization_url(site, make_client())
    capture_callback(page)

    page.goto(url)
    sign_in(page, "carol")
    page.get_by_role("button", name="Deny").click()

    page.wait_for_url(f"{REDIRECT_URI}**")
    assert parse_qs(urlsplit(page.url).query)["error"] == ["access_denied"]


@browser
def test_browser_not_you_signs_out_and_back_in_as_someone_else(site, page):
    make_user("carol")
    make_user("dave")
    _oauth, url, _state = authorization_url(site, make_client())

    page.goto(url)
    sign_in(page, "carol")
    page.get_by_role("button", name="Not you?").click()

    page.wait_for_url("**/accounts/login/**")
    sign_in(page, "dave")
    page.wait_for_selector("#authorizationForm")
    assert page.inner_text("#signedInAs") == "dave"


@browser
def test_browser_consent_page_fits_a_phone_and_keyboard_reaches_allow(site, page):
    make_user("carol")
    _oauth, url, _state = authorization_url(site, make_client())
    page.goto(url)
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#authorizationForm")

    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.focus("#deny")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "allow"
