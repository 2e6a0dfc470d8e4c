"""cleartokens: DOT's command, in batches, with checked options and a hand-off to the worker."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oauth_provider import maintenance
from oauth_provider.cleanup import PHASE_LABELS
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import wait_until


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("cleartokens", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, option",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "-3"], "--batch-size"),
        (["--batch-size", "ten"], "--batch-size"),
        (["--batch-size", "100001"], "--batch-size"),
        (["--batch-size", "2.5"], "--batch-size"),
        (["--interval", "-1"], "--interval"),
        (["--interval", "3601"], "--interval"),
        (["--interval", "soon"], "--interval"),
        (["--interval", "nan"], "--interval"),
        (["--async", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_options_are_refused_with_a_message_naming_the_option(cleanup_dataset, args, option):
    ds = cleanup_dataset()
    before = ds.snapshot()
    with pytest.raises(CommandError) as excinfo:
        run_command(*args)
    assert option in str(excinfo.value)
    assert ds.snapshot() == before
    assert not MaintenanceRun.objects.exists()


def dataset_an_hour_ago(cleanup_dataset):
    """Rows built around a "now" one hour back: the command's own "now" lands in a quiet gap."""
    from datetime import timedelta

    from django.utils import timezone

    ds = cleanup_dataset(now=timezone.now() - timedelta(hours=1))
    return ds, ds.now + timedelta(hours=1, minutes=30)


@pytest.mark.django_db
def test_a_synchronous_run_deletes_the_expected_rows_and_prints_a_count_per_category(cleanup_dataset):
    ds, command_now = dataset_an_hour_ago(cleanup_dataset)
    expected_kept, expected_counts = ds.expected(now=command_now)
    output = run_command("--batch-size", "2", "--interval", "0")
    assert ds.kept_now() == expected_kept
    lines = output.splitlines()
    for phase, label in PHASE_LABELS.items():
        assert f"{label} deleted: {expected_counts[phase]}" in lines
    assert f"Total deleted: {sum(expected_counts.values())}" in output


@pytest.mark.django_db
def test_dry_run_changes_nothing_and_says_what_would_be_deleted(cleanup_dataset):
    ds = cleanup_dataset()
    before = ds.snapshot()
    output = run_command("--dry-run")
    assert ds.snapshot() == before
    assert "would be deleted" in output
    assert "Total would be deleted:" in output


@pytest.mark.django_db
def test_async_dispatches_a_run_and_prints_its_id(django_capture_on_commit_callbacks):
    output = run_command("--async", "--batch-size", "50", "--interval", "1.5")
    run = MaintenanceRun.objects.get()
    assert output.strip().splitlines()[-1] == str(run.pk)
    assert (run.kind, run.trigger, run.batch_size, run.interval) == ("cleanup", "command", 50, 1.5)
    assert run.triggered_by.startswith("cleartokens")
    again = run_command("--async")
    assert "already active" in again and MaintenanceRun.objects.count() == 1


@pytest.mark.django_db
def test_async_without_a_worker_app_fails_clearly():
    installed = maintenance.get_async_dispatcher()
    maintenance.set_async_dispatcher(None)
    try:
        with pytest.raises(CommandError, match="--async.*oauth_tasks"):
            run_command("--async")
    finally:
        maintenance.set_async_dispatcher(installed)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_async_run_is_finished_by_the_worker(worker, cleanup_dataset):
    ds, command_now = dataset_an_hour_ago(cleanup_dataset)
    expected_kept, expected_counts = ds.expected(now=command_now)
    output = run_command("--async", "--batch-size", "3")
    run_id = int(output.strip().splitlines()[-1])
    run = wait_until(
        lambda: MaintenanceRun.objects.filter(pk=run_id).exclude(status__in=["pending", "running"]).first(),
        message="the dispatched run to finish",
    )
    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert run.counts == expected_counts
    assert ds.kept_now() == expected_kept
