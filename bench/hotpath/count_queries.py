"""Database queries of the hot path, for this project or django-oauth-toolkit 3.4.1; prints JSON.

    python bench/hotpath/count_queries.py ours   # DJANGO_SETTINGS_MODULE=config.settings
    python bench/hotpath/count_queries.py dot    # DJANGO_SETTINGS_MODULE=tests.dot_project.settings

On an empty database (migrated here): a resource server client (secret stored plain) and a user's
token; each request is sent twice through Django's test client and the queries of the second are
counted: introspection authenticated by HTTP Basic and by a bearer token, a protected resource
(``ProtectedResourceView``), userinfo. This project's requests run with its own middleware and, for
the protected resource, the URLconf of ``tests/test_endpoints_support.py``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

REQUESTS = ("introspect_basic", "introspect_bearer", "protected_resource", "userinfo")


def main() -> None:
    project = sys.argv[1]
    import django

    if project == "ours":
        from django.conf import settings

        django.setup()
        settings.ROOT_URLCONF = "tests.test_endpoints_support"
        settings.ALLOWED_HOSTS = ["testserver"]
        from oauth_provider.models import get_access_token_model, get_application_model

        AccessToken, Application = get_access_token_model(), get_application_model()
    else:
        django.setup()
        from oauth2_provider.models import AccessToken, Application
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("alice", password=None)
    secret = secrets.token_urlsafe(32)
    resource_server = Application.objects.create(
        name="resource server",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=secret,
        hash_client_secret=False,
    )
    raw = secrets.token_urlsafe(24)
    AccessToken.objects.create(
        user=user,
        application=resource_server,
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
            raise SystemExit(f"{project} {name}: answered {response.status_code}")
        counts[name] = len(queries.captured_queries)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
