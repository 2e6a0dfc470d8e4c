"""The project's side of the load benchmark, run as a child process by ``run.py``.

``DATABASE_URL`` names the database. Modes, each printing one JSON line:

* ``setup``: a confidential client for the client-credentials grant (secret stored unhashed, so a
  request costs its database work, not a million PBKDF2 rounds) and a long-lived bearer token with
  the ``introspection`` scope for the introspection calls;
* ``cleanup PACED [PACING_JSON]``: dispatch a cleanup to the running worker (``PACED`` 1: pacing on
  with the defaults of ``OAUTH_MAINTENANCE``, or the run settings of ``PACING_JSON`` over them; 0:
  fixed batches of ``CLEAR_EXPIRED_TOKENS_BATCH_SIZE``), poll the run row until it ends; wall time,
  batches and the pacer's last state.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def setup() -> dict:
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from oauth_provider.models import get_access_token_model, get_application_model

    user = get_user_model().objects.create(username=f"load-{secrets.token_hex(4)}", is_staff=True)
    secret = secrets.token_urlsafe(48)
    app = get_application_model().objects.create(
        name="load benchmark",
        user=user,
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=secret,
        hash_client_secret=False,
    )
    bearer = secrets.token_urlsafe(32)
    get_access_token_model().objects.create(
        user=user,
        application=app,
        token=bearer,
        scope="introspection",
        expires=timezone.now() + timedelta(days=1),
    )
    return {"client_id": app.client_id, "client_secret": secret, "introspection_bearer": bearer}


def cleanup(paced: bool | dict) -> dict:
    from oauth_tasks.engine import dispatch
    from oauth_tasks.models import ACTIVE_STATUSES

    started = time.perf_counter()
    run, created = dispatch("cleanup", {}, trigger="bench", pacing=paced)
    if not created:
        raise SystemExit(f"a cleanup run is already active: #{run.pk}")
    print(json.dumps({"run_id": run.pk, "started": True}), flush=True)
    while True:
        run.refresh_from_db()
        if run.status not in ACTIVE_STATUSES:
            break
        time.sleep(0.05)
    return {
        "wall": time.perf_counter() - started,
        "status": run.status,
        "last_error": run.last_error,
        "batches": run.batch_number,
        "total": run.total_processed,
        "batch_size": run.batch_size,
        "busy_seconds": run.busy_seconds,
        "slowest_batch": run.slowest_batch_seconds,
        "pacing": run.pacing_state(),
    }


if __name__ == "__main__":
    import django

    django.setup()
    mode = sys.argv[1]
    if mode == "setup":
        result = setup()
    else:
        paced = sys.argv[2] == "1"
        overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else {}
        result = cleanup({**overrides, "enabled": True} if paced and overrides else paced)
    print(json.dumps(result), flush=True)
