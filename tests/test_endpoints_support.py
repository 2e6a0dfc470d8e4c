"""Shared parts of the endpoint tests: a URLconf with protected views, fixtures and an HTTP "browser".

The provider is served by pytest-django's ``live_server`` on a loopback port; clients talk to it
over real HTTP with requests / requests-oauthlib. Nothing here is collected as a test.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from oauth_provider.decorators import accepts_bearer_token, protected_resource
from oauth_provider.models import get_application_model
from oauth_provider.views import ProtectedResourceView, ScopedProtectedResourceView

REDIRECT_URI = "http://localhost:8976/callback"
PASSWORD = "correct horse battery staple"
URLCONF = "tests.test_endpoints_support"


class WhoAmIView(ProtectedResourceView):
    def get(self, request: HttpRequest) -> JsonResponse:
        owner = request.resource_owner
        return JsonResponse({"user": owner.get_username() if owner else None})


class WriteView(ScopedProtectedResourceView):
    required_scopes = ["write"]

    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({"ok": True})


@protected_resource(scopes=["read"])
def read_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"scope": request.access_token.scope})


@accepts_bearer_token
def session_user_view(request: HttpRequest) -> JsonResponse:
    """Open to anyone: sees whoever the session or (it accepts them) a bearer token authenticated."""
    return JsonResponse({"user": request.user.get_username() if request.user.is_authenticated else None})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("config.account_urls")),
    path("o/", include("oauth_provider.urls")),
    path("api/whoami/", WhoAmIView.as_view()),
    path("api/write/", WriteView.as_view()),
    path("api/read/", read_view),
    path("api/me/", session_user_view),
]


@dataclass
class Client:
    application: object
    client_id: str
    secret: str


def make_client(**fields) -> Client:
    """An application with a known raw secret (stored hashed unless ``hash_client_secret=False``)."""
    application_model = get_application_model()
    secret = secrets.token_urlsafe(32)
    values = {
        "name": f"app-{secrets.token_hex(3)}",
        "client_type": application_model.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": application_model.GRANT_AUTHORIZATION_CODE,
        "redirect_uris": REDIRECT_URI,
        "client_secret": secret,
    }
    values.update(fields)
    application = application_model.objects.create(**values)
    return Client(application, application.client_id, secret)


def make_staff_user(username: str = "alice"):
    return get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=True, email=f"{username}@example.com"
    )


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""


def form_fields(html: str) -> dict[str, str]:
    parser = _FormParser()
    parser.feed(html)
    return parser.fields


def browser_login(base_url: str, username: str) -> requests.Session:
    """A browser session logged in through the admin login form (the provider's LOGIN_URL)."""
    browser = requests.Session()
    page = browser.get(f"{base_url}/admin/login/")
    assert page.status_code == 200
    fields = form_fields(page.text)
    fields.update(username=username, password=PASSWORD, next="/admin/")
    response = browser.post(f"{base_url}/admin/login/", data=fields, allow_redirects=False)
    assert response.status_code == 302, response.text[:500]
    assert "sessionid" in browser.cookies
    return browser


def consent(browser: requests.Session, authorization_url: str, allow: bool = True) -> requests.Response:
    """Open the authorization URL and submit the consent form; returns the redirect response."""
    page = browser.get(authorization_url, allow_redirects=False)
    assert page.status_code == 200, (page.status_code, page.headers.get("Location"), page.text[:500])
    assert 'id="authorizationForm"' in page.text
    fields = form_fields(page.text)
    if allow:
        fields["allow"] = "on"
    else:
        fields.pop("allow", None)
    return browser.post(authorization_url, data=fields, allow_redirects=False)


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@pytest.fixture(name="base_url")
def base_url_fixture(live_server, transactional_db, settings, monkeypatch) -> str:
    """The provider on a loopback port, with this module's URLconf and plain HTTP allowed for the client."""
    settings.ROOT_URLCONF = URLCONF
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    return live_server.url


def provider_settings(settings, **values) -> None:
    """Override OAUTH2_PROVIDER keys for one test (the settings object reloads on the change)."""
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, **values}
