"""A child process of the concurrent dispatch test: set up Django, say ready, wait for the word
on stdin, then dispatch each ``[kind, params]`` of its argument (JSON) and print, per dispatch, the
run id and whether it was created."""

from __future__ import annotations

import json
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    from oauth_tasks import engine

    connection.ensure_connection()
    work = json.loads(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    answers = []
    for kind, params in work:
        run, created = engine.dispatch(kind, params, trigger="test")
        answers.append({"run_id": run.pk, "created": created})
    print(json.dumps(answers), flush=True)
