"""This project's side of the adoption benchmark, run as a child process by ``run.py``.

``DATABASE_URL`` names the database. ``python child.py BATCH_SIZE [--keep-dead]`` runs one
``adopt_dot`` run in this process (the batches of ``manage.py adopt_dot --sync``) and prints one
JSON line: wall seconds of the run alone, seconds and rows per phase, the longest batch, the
verification result and the run's counts.
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


def main() -> None:
    import django

    django.setup()
    from oauth_tasks import engine
    from oauth_tasks.models import MaintenanceRun

    batch_size, keep_dead = int(sys.argv[1]), "--keep-dead" in sys.argv
    started = time.perf_counter()
    run, _ = engine.dispatch(
        "adopt_dot",
        {"skip_dead": not keep_dead},
        trigger="bench",
        batch_size=batch_size,
        interval=0,
        enqueue=False,
    )
    phase_seconds: dict[str, float] = {}
    number, phase, longest, counts = 0, run.phase, 0.0, {}
    while True:
        before = time.perf_counter()
        report = engine.run_batch(run.pk, number, chain=False)
        took = time.perf_counter() - before
        longest = max(longest, took)
        # A batch that finds a phase empty goes on to the next: its time goes to the phase it worked in.
        worked = [p for p, n in report.counts.items() if n != counts.get(p)]
        phase = worked[-1] if worked else phase
        phase_seconds[phase] = phase_seconds.get(phase, 0.0) + took
        number, phase, counts = report.batch_number, report.phase, dict(report.counts)
        if report.outcome != "ran":
            break
    wall = time.perf_counter() - started
    run = MaintenanceRun.objects.get(pk=run.pk)
    print(
        json.dumps(
            {
                "wall": wall,
                "status": run.status,
                "error": run.last_error,
                "counts": run.counts,
                "phase_seconds": phase_seconds,
                "longest_batch": longest,
                "batches": run.batch_number,
                "verified": (run.result or {}).get("verified"),
                "catch_up": bool((run.result or {}).get("catch_up")),
            }
        )
    )


if __name__ == "__main__":
    main()
