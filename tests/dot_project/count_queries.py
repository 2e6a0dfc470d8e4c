"""Count the database queries django-oauth-toolkit makes on its hot path; print them as JSON.

    DATABASE_URL=sqlite:////tmp/dot.sqlite3 OIDC_RSA_PRIVATE_KEY=... python -m tests.dot_project.count_queries

Migrates the database, registers a resource server (unhashed secret) and a token, then sends each
request twice through Django's test client and counts the queries of the second: token
introspection authenticated by HTTP Basic and by a bearer token, a ``ProtectedResourceView``, and
userinfo. The provider's own requests are counted the same way in ``tests/test_hotpath_queries.py``.
"""

import base64
import json
import os
import secrets
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.dot_project.settings")
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from oauth2_provider.models import AccessToken, Application  # noqa: E402

#: The requests counted, by name.
REQUESTS = ("introspect_basic", "introspect_bearer", "protected_resource", "userinfo")


def main() -> None:
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("alice", password=secrets.token_urlsafe(12))
    secret = secrets.token_urlsafe(32)
    resource_server = Application.objects.create(
        name="resource server",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=False,
    )
    client_app = Application.objects.create(
        name="client",
        user=user,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="https://client.example/callback",
        client_secret=secrets.token_urlsafe(32),
        hash_client_secret=False,
    )
    raw = secrets.token_urlsafe(24)
    AccessToken.objects.create(
        user=user,
        application=client_app,
        token=raw,
        expires=timezone.now() + timedelta(hours=1),
        scope="openid read write introspection",
    )
    basic = "Basic " + base64.b64encode(f"{resource_server.client_id}:{secret}".encode()).decode()
    bearer = f"Bearer {raw}"
    client = Client()
    send = {
        "introspect_basic": lambda: client.post("/o/introspect/", {"token": raw}, HTTP_AUTHORIZATION=basic),
        "introspect_bearer": lambda: client.post("/o/introspect/", {"token": raw}, HTTP_AUTHORIZATION=bearer),
        "protected_resource": lambda: client.get("/api/whoami/", HTTP_AUTHORIZATION=bearer),
        "userinfo": lambda: client.get("/o/userinfo/", HTTP_AUTHORIZATION=bearer),
    }
    counts = {}
    for name in REQUESTS:
        send[name]()
        with CaptureQueriesContext(connection) as queries:
            response = send[name]()
        if response.status_code != 200:
            raise SystemExit(
                f"{name}: django-oauth-toolkit answered {response.status_code}: {response.content!r}"
            )
        counts[name] = len(queries.captured_queries)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
