"""A project whose swapped access token model has no ``id_token`` link still cleans and revokes.

django-oauth-toolkit lets a project swap in its own access token model; one without the link to an
ID token is a valid model. The project (``tests/swapped_project/settings_slim.py``) is migrated into
its own SQLite file and driven through ``manage.py`` in a subprocess, as a user project would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from oauth_provider.models import (
    clear_expired, get_access_token_model, get_application_model, get_id_token_model,
    get_refresh_token_model,
)
from oauth_provider.revocation import RevocationTarget, revoke_all

now = timezone.now()
AT, RT, IT = get_access_token_model(), get_refresh_token_model(), get_id_token_model()
user = get_user_model().objects.create(username="u")
other = get_user_model().objects.create(username="v")
app = get_application_model().objects.create(
    name="a", tenant="t", client_type="confidential",
    authorization_grant_type="authorization-code", redirect_uris="https://a.example/cb",
)
expired = AT.objects.create(user=user, application=app, token="expired", expires=now - timedelta(hours=1))
AT.objects.create(user=user, application=app, token="live", expires=now + timedelta(hours=1))
RT.objects.create(user=user, application=app, token="orphan")
IT.objects.create(user=user, application=app, expires=now - timedelta(hours=1))
IT.objects.create(user=user, application=app, expires=now + timedelta(hours=1))
IT.objects.create(user=other, application=app, expires=now + timedelta(hours=1))

clear_expired()
after_cleanup = {
    "model": AT._meta.label,
    "access": sorted(AT.objects.values_list("token", flat=True)),
    "refresh": RT.objects.count(),
    "id_tokens": IT.objects.count(),
}
revoked = revoke_all(RevocationTarget(user_id=user.pk))
print(json.dumps({
    **after_cleanup,
    "revoked_id_tokens": revoked["id_tokens"],
    "id_tokens_left": list(IT.objects.values_list("user__username", flat=True)),
}))
"""


def test_cleanup_and_revocation_with_an_access_token_model_without_id_token(tmp_path):
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'slim.sqlite3'}",
        DJANGO_SETTINGS_MODULE="tests.swapped_project.settings_slim",
    )

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    manage("migrate", "-v0")
    assert "No changes detected" in manage("makemigrations", "--check", "--dry-run")
    result = json.loads(manage("shell", "--no-imports", "-c", SCRIPT).strip().splitlines()[-1])

    assert result["model"] == "slim_app.SlimAccessToken"
    # The expired access token and the orphaned refresh token go; of the ID tokens only the
    # expired one (nothing can keep an ID token when no access token links to one).
    assert result["access"] == ["live"]
    assert result["refresh"] == 0
    assert result["id_tokens"] == 2
    # Revoking the user removes their ID token and leaves the other user's.
    assert result["revoked_id_tokens"] == 1
    assert result["id_tokens_left"] == ["v"]
