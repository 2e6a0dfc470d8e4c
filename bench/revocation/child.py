"""The timed side of the revocation benchmark, run by ``run.py`` as a child process.

``DATABASE_URL`` names the seeded database and ``CELERY_BROKER_URL`` the broker of a running
worker. ``python child.py APPLICATION_ID RAW_TOKEN BATCH_SIZE`` then:

1. checks the token as introspection does (``oauth_provider.tokens.is_token_usable``): usable;
2. dispatches ``revoke`` for the application (the watermark is written with the run);
3. checks the token again: refused. Steps 2 and 3 together are the time to effect;
4. polls the run row until the worker has finished: the time to finish.

Prints one JSON line. Django's start-up is not timed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def check(raw: str) -> tuple[bool, bool, float]:
    """(row present, usable, seconds): the lookup and decision introspection makes."""
    from oauth_provider import tokens
    from oauth_provider.models import get_access_token_model

    started = time.perf_counter()
    access_token = get_access_token_model().lookup(raw)
    usable = tokens.is_token_usable(access_token)
    return access_token is not None, usable, time.perf_counter() - started


def main() -> None:
    import django

    django.setup()
    from oauth_tasks.engine import dispatch
    from oauth_tasks.models import ACTIVE_STATUSES

    application_id, raw, batch_size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    present_before, usable_before, check_seconds = check(raw)

    started = time.perf_counter()
    run, created = dispatch(
        "revoke", {"application": application_id}, trigger="bench", batch_size=batch_size, interval=0
    )
    dispatched = time.perf_counter()
    present_after, usable_after, _ = check(raw)
    effect = time.perf_counter()
    if not created:
        raise SystemExit(f"a revocation of application {application_id} is already active: run #{run.pk}")
    while True:
        run.refresh_from_db()
        if run.status not in ACTIVE_STATUSES:
            break
        time.sleep(0.02)
    finished = time.perf_counter()
    print(
        json.dumps(
            {
                "run_id": run.pk,
                "status": run.status,
                "last_error": run.last_error,
                "counts": run.counts,
                "batches": run.batch_number,
                "usable_before": usable_before,
                "present_before": present_before,
                "usable_after": usable_after,
                "present_after": present_after,
                "check_seconds": check_seconds,
                "dispatch_seconds": dispatched - started,
                "effect_seconds": effect - started,
                "finish_seconds": finished - started,
                "engine_seconds": run.duration.total_seconds() if run.duration else None,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
