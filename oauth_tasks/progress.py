"""How far a run is and when it should end: the numbers behind progress bars and ETAs.

The total is the job's estimate at dispatch (``MaintenanceRun.estimated_counts``), so a bar can
say "N of about M". The estimate is not a limit: a run that does more than estimated shows 99 %
until it finishes, a finished run always shows 100 %.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from django.utils import timezone

from oauth_provider.management.terminal import human_seconds

from .models import LaneTotals, MaintenanceRun, RunStatus, lane_totals


@dataclass(frozen=True)
class RunProgress:
    run_id: int
    kind: str
    status: str
    phase: str
    dry_run: bool
    stalled: bool
    done: int
    estimated_total: int | None
    percent: float | None
    rows_per_second: float | None
    eta_seconds: float | None
    seconds_since_last_batch: float | None
    batch_number: int

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def summary(self) -> str:
        """ "1,200 of about 5,000 rows (24 %)", or the count alone without an estimate."""
        if self.estimated_total is None:
            return f"{self.done:,} rows"
        return f"{self.done:,} of about {self.estimated_total:,} rows ({self.percent:.0f} %)"

    @property
    def eta_text(self) -> str:
        if self.eta_seconds is None:
            return "-"
        return human_seconds(self.eta_seconds)


def run_progress(run: MaintenanceRun, *, now: datetime | None = None) -> RunProgress:
    """Progress of ``run``; stalled is the run's own notion (``MaintenanceRun.is_stalled``)."""
    now = now or timezone.now()
    done = run.total_processed
    total = run.estimated_total
    finished = run.status == RunStatus.SUCCEEDED
    percent = None
    if finished:
        percent = 100.0
    elif total is not None:
        percent = 0.0 if total == 0 and done == 0 else min(99.0, 100.0 * done / max(total, 1))
    elapsed = ((run.finished_at or now) - run.started_at).total_seconds() if run.started_at else 0
    rate = done / elapsed if elapsed > 0 and done else None
    eta = None
    if run.is_active and rate and total is not None:
        eta = max(0.0, (total - done) / rate)
    beat = run.heartbeat_at
    if run.lanes > 1 and run.is_active:
        # Lane batches leave the run row alone: the last beat is the latest of its lanes'.
        lane_beat = lane_totals([run.pk]).get(run.pk, LaneTotals()).heartbeat_at
        if lane_beat is not None and (beat is None or lane_beat > beat):
            beat = lane_beat
    since = (now - beat).total_seconds() if beat and run.is_active else None
    return RunProgress(
        run_id=run.pk,
        kind=run.kind,
        status=run.status,
        phase=run.phase,
        dry_run=run.dry_run,
        stalled=run.is_stalled,
        done=done,
        estimated_total=total,
        percent=None if percent is None else round(percent, 1),
        rows_per_second=None if rate is None else round(rate, 1),
        eta_seconds=None if eta is None else round(eta, 1),
        seconds_since_last_batch=None if since is None else round(since, 1),
        batch_number=run.batch_number,
    )
