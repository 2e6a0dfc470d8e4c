"""Drive django-oauth-toolkit through its own endpoints and print what a client would hold (JSON).

    python -m tests.dot_project.issue_tokens setup USERNAME     # migrate, register a client
    python -m tests.dot_project.issue_tokens login USERNAME     # authorization code flow with PKCE
    python -m tests.dot_project.issue_tokens refresh REFRESH_TOKEN
    python -m tests.dot_project.issue_tokens revoke ACCESS_TOKEN
    python -m tests.dot_project.issue_tokens expired USERNAME   # an expired token nothing refers to

Reads DATABASE_URL and OIDC_RSA_PRIVATE_KEY; the client's id and secret come from DOT_CLIENT_ID and
DOT_CLIENT_SECRET (``setup`` prints them).
"""

import base64
import hashlib
import json
import os
import secrets
import sys
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.dot_project.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from oauth2_provider.models import AccessToken, Application  # noqa: E402

REDIRECT_URI = "http://localhost:8976/callback"


def client_credentials() -> dict:
    return {"client_id": os.environ["DOT_CLIENT_ID"], "client_secret": os.environ["DOT_CLIENT_SECRET"]}


def setup(username: str) -> dict:
    call_command("migrate", "oauth2_provider", verbosity=0)
    secret = secrets.token_urlsafe(32)
    app = Application.objects.create(
        name="adopted client",
        user=get_user_model().objects.get(username=username),
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT_URI,
        client_secret=secret,
        skip_authorization=True,
        algorithm=Application.RS256_ALGORITHM,
    )
    return {"client_id": app.client_id, "client_secret": secret, "application_id": app.pk}


def login(username: str) -> dict:
    browser = Client()
    browser.force_login(get_user_model().objects.get(username=username))
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    nonce = secrets.token_urlsafe(12)
    response = browser.get(
        "/o/authorize/",
        {
            "response_type": "code",
            "client_id": os.environ["DOT_CLIENT_ID"],
            "redirect_uri": REDIRECT_URI,
            "scope": "openid read write",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "nonce": nonce,
            "state": "s",
        },
    )
    assert response.status_code == 302, response.content
    code = parse_qs(urlsplit(response["Location"]).query)["code"][0]
    token = Client().post(
        "/o/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            **client_credentials(),
        },
    )
    assert token.status_code == 200, token.content
    return {**token.json(), "nonce": nonce}


def refresh(refresh_token: str) -> dict:
    response = Client().post(
        "/o/token/", {"grant_type": "refresh_token", "refresh_token": refresh_token, **client_credentials()}
    )
    assert response.status_code == 200, response.content
    return response.json()


def revoke(token: str) -> dict:
    response = Client().post("/o/revoke_token/", {"token": token, **client_credentials()})
    assert response.status_code == 200, response.content
    return {"revoked": True}


def expired(username: str) -> dict:
    token = AccessToken.objects.create(
        user=get_user_model().objects.get(username=username),
        application=Application.objects.get(client_id=os.environ["DOT_CLIENT_ID"]),
        token=secrets.token_urlsafe(30),
        expires=timezone.now() - timedelta(days=1),
        scope="read",
    )
    return {"access_token": token.token, "id": token.pk}


if __name__ == "__main__":
    action, argument = sys.argv[1], sys.argv[2]
    print(
        json.dumps(
            {"setup": setup, "login": login, "refresh": refresh, "revoke": revoke, "expired": expired}[
                action
            ](argument)
        )
    )
