"""The default beat schedule, installed into django-celery-beat's database tables.

Two entries: a daily token cleanup at an off-peak time and the watchdog every minute. The
installer is idempotent and never overrides an operator: it creates an entry only if it never
created one of that name before (``InstalledScheduleEntry`` remembers), so an entry edited,
disabled or deleted in the admin stays as it is. ``install_schedule`` runs after ``migrate``
(``post_migrate``; switch off with ``OAUTH_MAINTENANCE["INSTALL_SCHEDULE_ON_MIGRATE"] = False``)
and as the ``install_schedule`` management command.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction

from .conf import maintenance_settings

logger = logging.getLogger(__name__)

CLEANUP_ENTRY = "oauth_tasks: daily cleanup of expired tokens"
WATCHDOG_ENTRY = "oauth_tasks: maintenance watchdog"

CREATED = "created"
UPDATED = "updated from the settings"
PRESENT = "present"
REMOVED_BY_OPERATOR = "removed by operator"


@dataclass(frozen=True)
class ScheduleEntry:
    """One beat entry: a crontab (``"m h dom mon dow"``) or a period in seconds."""

    name: str
    task: str
    description: str
    crontab: str | None = None
    every_seconds: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    expire_seconds: int | None = None


def default_entries() -> list[ScheduleEntry]:
    """The entries this app installs; the cleanup time is ``OAUTH_MAINTENANCE["CLEANUP_CRONTAB"]``."""
    return [
        ScheduleEntry(
            name=CLEANUP_ENTRY,
            task="oauth_tasks.start_cleanup",
            description="Delete expired and revoked tokens, ID tokens and grants, in batches, off-peak.",
            crontab=maintenance_settings.CLEANUP_CRONTAB,
            expire_seconds=3600,
        ),
        ScheduleEntry(
            name=WATCHDOG_ENTRY,
            task="oauth_tasks.watchdog",
            description="Re-enqueue maintenance runs whose next batch is overdue (lost message).",
            every_seconds=60,
            # A watchdog message nobody ran within its minute is replaced by the next one.
            expire_seconds=55,
        ),
    ]


def _schedule_for(entry: ScheduleEntry, using: str) -> dict[str, Any]:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule

    if entry.crontab:
        parts = entry.crontab.split()
        if len(parts) != 5:
            raise ValueError(f"crontab of {entry.name!r} must have 5 fields, got {entry.crontab!r}")
        minute, hour, day_of_month, month_of_year, day_of_week = parts
        crontab = CrontabSchedule.objects.using(using).filter(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone="UTC",
        ).first() or CrontabSchedule.objects.using(using).create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone="UTC",
        )
        return {"crontab": crontab}
    interval, _ = IntervalSchedule.objects.using(using).get_or_create(
        every=entry.every_seconds, period=IntervalSchedule.SECONDS
    )
    return {"interval": interval}


def install_schedule(
    *, using: str = DEFAULT_DB_ALIAS, entries: list[ScheduleEntry] | None = None
) -> dict[str, str]:
    """Create the default beat entries that were never installed; returns what happened per name.

    ``created``: new now. ``present``: an entry of that name exists (left untouched, whatever an
    operator changed). ``removed by operator``: installed before and since deleted, so not re-created.
    """
    from django_celery_beat.models import PeriodicTask

    from .models import InstalledScheduleEntry

    outcome: dict[str, str] = {}
    with transaction.atomic(using=using):
        for entry in entries or default_entries():
            record = InstalledScheduleEntry.objects.using(using).filter(name=entry.name).first()
            installed = record is not None
            existing = (
                PeriodicTask.objects.using(using).filter(name=entry.name).select_related("crontab").first()
            )
            exists = existing is not None
            if exists:
                if not installed:
                    InstalledScheduleEntry.objects.using(using).create(name=entry.name, task=entry.task)
                outcome[entry.name] = _follow_setting(entry, existing, record, using)
                continue
            if installed:
                outcome[entry.name] = REMOVED_BY_OPERATOR
                continue
            # Saving a PeriodicTask bumps beat's change marker, so a running beat picks it up.
            PeriodicTask.objects.using(using).create(
                name=entry.name,
                task=entry.task,
                kwargs=json.dumps(entry.kwargs),
                description=entry.description,
                expire_seconds=entry.expire_seconds,
                enabled=True,
                **_schedule_for(entry, using),
            )
            InstalledScheduleEntry.objects.using(using).create(
                name=entry.name, task=entry.task, schedule=entry.crontab or ""
            )
            outcome[entry.name] = CREATED
    for name, result in outcome.items():
        if result == CREATED:
            logger.info("beat schedule entry installed: %s", name)
        elif result == UPDATED:
            logger.info("beat schedule entry follows the changed setting: %s", name)
    return outcome


def _crontab_text(crontab: Any) -> str:
    if crontab is None:
        return ""
    return " ".join(
        [crontab.minute, crontab.hour, crontab.day_of_month, crontab.month_of_year, crontab.day_of_week]
    )


def _follow_setting(entry: ScheduleEntry, task: Any, record: Any, using: str) -> str:
    """Give an entry nobody edited the crontab the settings ask for now (``CLEANUP_CRONTAB``).

    "Nobody edited it": it still has the crontab the installer last gave it. An entry an operator
    moved to another crontab, an interval or another time zone keeps what the operator chose.
    """
    if record is None or not entry.crontab or not record.schedule:
        return PRESENT
    current = _crontab_text(task.crontab)
    if current != record.schedule or str(task.crontab.timezone) != "UTC" or current == entry.crontab:
        return PRESENT
    task.crontab = _schedule_for(entry, using)["crontab"]
    task.save()  # bumps beat's change marker: a running beat picks the new time up
    record.schedule = entry.crontab
    record.save(update_fields=["schedule"])
    return UPDATED


def install_schedule_after_migrate(
    sender: Any, using: str = DEFAULT_DB_ALIAS, verbosity: int = 1, **kwargs: Any
) -> None:
    """post_migrate receiver: install the default schedule once the tables exist."""
    if not maintenance_settings.INSTALL_SCHEDULE_ON_MIGRATE:
        return
    try:
        outcome = install_schedule(using=using)
    except DatabaseError as exc:  # beat's tables not migrated on this database
        logger.debug("beat schedule not installed on %s: %s", using, exc)
        return
    if verbosity >= 2:
        for name, result in outcome.items():
            print(f"  beat schedule: {name}: {result}")
