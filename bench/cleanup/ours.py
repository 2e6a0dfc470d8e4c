"""This project's side of the cleanup benchmark, run as a child process by ``run.py``.

``DATABASE_URL`` names the database to work on. Modes:

* ``inprocess BATCH_SIZE``: ``oauth_provider.cleanup.clear_expired()`` in this process;
* ``dispatch BATCH_SIZE [LANES]``: ``oauth_tasks.engine.dispatch("cleanup", ...)`` to running workers
  (``CELERY_BROKER_URL``), then polls the run row until it is finished.

Prints one JSON line: wall seconds of the work alone (Django's start-up excluded), rows per phase,
the longest batch, and this process's peak RSS (``VmHWM``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: How often ``dispatch`` looks at the run row while it waits for the run to end.
POLL_SECONDS = 0.5
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def peak_rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def inprocess(batch_size: int) -> dict:
    from oauth_provider.cleanup import clear_expired

    batch_seconds: list[float] = []
    phase_seconds: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(result, totals) -> None:
        now = time.perf_counter()
        batch_seconds.append(now - last[0])
        phase_seconds[result.phase] = phase_seconds.get(result.phase, 0.0) + now - last[0]
        last[0] = now

    started = time.perf_counter()
    last[0] = started
    totals = clear_expired(batch_size=batch_size, interval=0, progress=progress)
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "counts": totals,
        "batches": len(batch_seconds),
        "longest_batch": max(batch_seconds, default=0.0),
        "phase_seconds": phase_seconds,
        "peak_rss_kib": peak_rss_kib(),
    }


def dispatch(batch_size: int, lanes: int = 1) -> dict:
    from oauth_tasks.engine import dispatch as dispatch_run
    from oauth_tasks.models import ACTIVE_STATUSES

    started = time.time()
    run, created = dispatch_run(
        "cleanup", {}, trigger="bench", batch_size=batch_size, interval=0, lanes=lanes
    )
    if not created:
        raise SystemExit(f"a cleanup run is already active: #{run.pk}")
    dispatched = time.time()
    # The wall time ends at the run's own finished_at (the worker's clock is this machine's), so
    # the poll can be slow: polling the run row 50 times a second took CPU from the run it timed.
    while True:
        time.sleep(POLL_SECONDS)
        run.refresh_from_db()
        if run.status not in ACTIVE_STATUSES:
            break
    wall = (run.finished_at.timestamp() if run.finished_at else time.time()) - started
    return {
        "wall": wall,
        "status": run.status,
        "last_error": run.last_error,
        "counts": run.counts,
        "batches": run.batch_number,
        "engine_seconds": run.duration.total_seconds() if run.duration else None,
        "dispatch_seconds": dispatched - started,
        "run_id": run.pk,
    }


def main() -> None:
    import django

    django.setup()
    mode, batch_size = sys.argv[1], int(sys.argv[2])
    if mode == "dispatch" and len(sys.argv) > 3:  # a third argument: the run's lanes
        result = dispatch(batch_size, int(sys.argv[3]))
    else:
        result = {"inprocess": inprocess, "dispatch": dispatch}[mode](batch_size)
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
