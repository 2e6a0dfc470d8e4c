"""The default beat schedule: installed once, never over an operator's edits, and it works."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from oauth_tasks.models import InstalledScheduleEntry, MaintenanceRun, RunStatus
from oauth_tasks.schedule import (
    CLEANUP_ENTRY,
    CREATED,
    PRESENT,
    REMOVED_BY_OPERATOR,
    UPDATED,
    WATCHDOG_ENTRY,
    install_schedule,
)
from tests.conftest import make_expired_grants, wait_until


def fresh() -> None:
    """Forget what migrate's post_migrate hook installed, as on a database that never had it."""
    PeriodicTask.objects.filter(name__in=[CLEANUP_ENTRY, WATCHDOG_ENTRY]).delete()
    InstalledScheduleEntry.objects.all().delete()


def state() -> list[tuple]:
    return sorted(
        PeriodicTask.objects.values_list(
            "name", "task", "enabled", "crontab_id", "interval_id", "kwargs", "description"
        )
    ) + [("crontabs", CrontabSchedule.objects.count(), "intervals", IntervalSchedule.objects.count())]


@pytest.mark.django_db
def test_installing_twice_creates_nothing_new():
    fresh()
    first = install_schedule()
    after_first = state()
    second = install_schedule()

    assert first == {CLEANUP_ENTRY: CREATED, WATCHDOG_ENTRY: CREATED}
    assert second == {CLEANUP_ENTRY: PRESENT, WATCHDOG_ENTRY: PRESENT}
    assert state() == after_first
    cleanup = PeriodicTask.objects.get(name=CLEANUP_ENTRY)
    assert cleanup.task == "oauth_tasks.start_cleanup" and cleanup.enabled
    assert (cleanup.crontab.minute, cleanup.crontab.hour, str(cleanup.crontab.timezone)) == ("17", "3", "UTC")
    watchdog = PeriodicTask.objects.get(name=WATCHDOG_ENTRY)
    assert watchdog.task == "oauth_tasks.watchdog"
    assert (watchdog.interval.every, watchdog.interval.period) == (60, IntervalSchedule.SECONDS)


@pytest.mark.django_db
def test_migrate_installs_the_schedule():
    # The test database was built by migrate, whose post_migrate hook ran the installer.
    assert PeriodicTask.objects.filter(name__in=[CLEANUP_ENTRY, WATCHDOG_ENTRY]).count() == 2


@pytest.mark.django_db
def test_an_entry_edited_or_disabled_in_the_admin_is_left_as_the_operator_set_it():
    fresh()
    install_schedule()
    cleanup = PeriodicTask.objects.get(name=CLEANUP_ENTRY)
    cleanup.crontab = CrontabSchedule.objects.create(minute="45", hour="1", timezone="UTC")
    cleanup.kwargs = json.dumps({"batch_size": 500})
    cleanup.save()
    watchdog = PeriodicTask.objects.get(name=WATCHDOG_ENTRY)
    watchdog.enabled = False
    watchdog.save()
    edited = state()

    assert install_schedule() == {CLEANUP_ENTRY: PRESENT, WATCHDOG_ENTRY: PRESENT}
    assert state() == edited
    assert not PeriodicTask.objects.get(name=WATCHDOG_ENTRY).enabled
    assert PeriodicTask.objects.get(name=CLEANUP_ENTRY).crontab.hour == "1"


@pytest.mark.django_db
def test_an_entry_the_operator_deleted_is_not_created_again():
    fresh()
    install_schedule()
    PeriodicTask.objects.filter(name=WATCHDOG_ENTRY).delete()

    assert install_schedule()[WATCHDOG_ENTRY] == REMOVED_BY_OPERATOR
    assert not PeriodicTask.objects.filter(name=WATCHDOG_ENTRY).exists()


@pytest.mark.django_db
def test_the_command_reports_what_it_did():
    fresh()
    out = StringIO()
    call_command("install_schedule", stdout=out)
    call_command("install_schedule", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines == [
        f"{CLEANUP_ENTRY}: created",
        f"{WATCHDOG_ENTRY}: created",
        f"{CLEANUP_ENTRY}: present",
        f"{WATCHDOG_ENTRY}: present",
    ]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_installed_cleanup_entry_starts_a_run_that_the_worker_finishes(worker, celery_app):
    install_schedule()
    ids = make_expired_grants(5)
    entry = PeriodicTask.objects.get(name=CLEANUP_ENTRY)
    # What beat sends when the entry is due: its task with its arguments.
    started = celery_app.send_task(entry.task, args=json.loads(entry.args), kwargs=json.loads(entry.kwargs))
    result = started.get(timeout=30)
    assert result["created"] is True
    run = wait_until(
        lambda: MaintenanceRun.objects.filter(pk=result["run_id"], status=RunStatus.SUCCEEDED).first(),
        message="the scheduled run to succeed",
    )
    assert run.trigger == "beat"
    assert run.counts["grants"] >= len(ids)


@pytest.mark.django_db
def test_a_changed_cleanup_crontab_setting_moves_an_entry_nobody_edited(settings):
    fresh()
    install_schedule()
    settings.OAUTH_MAINTENANCE = {**settings.OAUTH_MAINTENANCE, "CLEANUP_CRONTAB": "30 2 * * *"}

    outcome = install_schedule()

    assert outcome[CLEANUP_ENTRY] == UPDATED
    crontab = PeriodicTask.objects.get(name=CLEANUP_ENTRY).crontab
    assert (crontab.minute, crontab.hour, str(crontab.timezone)) == ("30", "2", "UTC")
    assert install_schedule()[CLEANUP_ENTRY] == PRESENT


@pytest.mark.django_db
def test_a_changed_cleanup_crontab_setting_leaves_an_entry_the_operator_moved(settings):
    fresh()
    install_schedule()
    cleanup = PeriodicTask.objects.get(name=CLEANUP_ENTRY)
    cleanup.crontab = CrontabSchedule.objects.create(minute="45", hour="1", timezone="UTC")
    cleanup.save()
    settings.OAUTH_MAINTENANCE = {**settings.OAUTH_MAINTENANCE, "CLEANUP_CRONTAB": "30 2 * * *"}

    assert install_schedule()[CLEANUP_ENTRY] == PRESENT
    assert PeriodicTask.objects.get(name=CLEANUP_ENTRY).crontab.hour == "1"
