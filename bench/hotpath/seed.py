"""Rows of the hot-path benchmark, in this project's or django-oauth-toolkit's tables; prints JSON.

    DJANGO_SETTINGS_MODULE=... python bench/hotpath/seed.py ours|dot

Two client credentials clients with generated 128-character secrets, one stored plain
(``hash_client_secret=False``) and one hashed with the default hasher, and a live access token to
introspect. The same code for both projects: their models have the same fields.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    if sys.argv[1] == "dot":
        from oauth2_provider.generators import generate_client_secret
        from oauth2_provider.models import AccessToken, Application
    else:
        from oauth_provider.generators import generate_client_secret
        from oauth_provider.models import get_access_token_model, get_application_model

        AccessToken, Application = get_access_token_model(), get_application_model()
    user = get_user_model().objects.create_user("bench-user", password=None)
    clients = {}
    for name, hashed in (("plain", False), ("hashed", True)):
        secret = generate_client_secret()
        app = Application.objects.create(
            name=f"bench {name}",
            client_type="confidential",
            authorization_grant_type="client-credentials",
            client_secret=secret,
            hash_client_secret=hashed,
        )
        clients[name] = {"client_id": app.client_id, "secret": secret}
    token = os.urandom(24).hex()
    AccessToken.objects.create(
        user=user,
        application=Application.objects.get(client_id=clients["plain"]["client_id"]),
        token=token,
        expires=timezone.now() + timedelta(days=1),
        scope="read write",
    )
    print(json.dumps({"clients": clients, "token": token}))


if __name__ == "__main__":
    main()
