"""--limit, --only and --keep-if-younger on cleartokens, the API and beat's kwargs (one validation);
the terminal progress bar that log lines do not break into; counts printed once; -v 0; --async."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from oauth_provider.models import get_access_token_model, get_grant_model
from oauth_tasks import engine
from oauth_tasks.models import MaintenanceRun
from oauth_tasks.tasks import start_cleanup
from tests.conftest import ROOT, database_url_for
from tests.factories import make_access_token, make_application, make_grant, make_user
from tests.test_engine_dispatch import drive


def run_command(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("cleartokens", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def expired(access_tokens: int = 0, grants: int = 0, *, created_ago: timedelta | None = None) -> None:
    application, user = make_application(), make_user()
    tokens = [make_access_token(application, user, expires_in=-60) for _ in range(access_tokens)]
    codes = [make_grant(application, user, expires_in=-60) for _ in range(grants)]
    if created_ago is not None:
        created = timezone.now() - created_ago
        get_access_token_model().objects.filter(pk__in=[t.pk for t in tokens]).update(created=created)
        get_grant_model().objects.filter(pk__in=[g.pk for g in codes]).update(created=created)


BAD_VALUES = [
    ("limit", "0"),
    ("limit", "-5"),
    ("limit", "many"),
    ("only", "tokens,refresh"),
    ("only", ""),
    ("keep_if_younger", "soon"),
    ("keep_if_younger", "-1d"),
    ("keep_if_younger", "20000w"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("name, value", BAD_VALUES)
def test_a_bad_value_gets_the_same_error_naming_it_from_the_command_api_and_beat(name, value):
    option = "--" + name.replace("_", "-")
    with pytest.raises(CommandError, match=option):
        run_command(f"{option}={value}")
    with pytest.raises(ValidationError) as from_api:
        engine.dispatch("cleanup", {name: value}, trigger="api")
    with pytest.raises(ValidationError) as from_beat:
        start_cleanup(**{name: value})

    assert name in from_api.value.message_dict
    assert from_api.value.message_dict == from_beat.value.message_dict
    assert not MaintenanceRun.objects.exists()


@pytest.mark.django_db
def test_limit_stops_after_n_rows_and_the_next_call_carries_on():
    expired(access_tokens=5, grants=4)

    first, _ = run_command("--limit", "6", "--batch-size", "2")
    second, _ = run_command("--limit", "6", "--batch-size", "2")

    assert "Total deleted: 6" in first and "Stopped at --limit 6" in first
    assert "Total deleted: 3" in second and "Stopped at" not in second
    assert get_access_token_model().objects.count() + get_grant_model().objects.count() == 0


@pytest.mark.django_db
def test_only_cleans_the_named_groups():
    expired(access_tokens=3, grants=2)

    out, _ = run_command("--only", "grants")

    assert "Expired grants deleted: 2" in out and "Total deleted: 2" in out
    assert get_access_token_model().objects.count() == 3
    assert get_grant_model().objects.count() == 0


@pytest.mark.django_db
def test_keep_if_younger_keeps_recent_rows_that_the_rules_would_delete():
    expired(access_tokens=2, grants=1, created_ago=timedelta(days=40))
    expired(access_tokens=3, grants=1, created_ago=timedelta(days=2))

    out, _ = run_command("--keep-if-younger", "30d")

    assert "Total deleted: 3" in out
    assert get_access_token_model().objects.count() == 3 and get_grant_model().objects.count() == 1


@pytest.mark.django_db
def test_the_api_run_honours_limit_only_and_keep_if_younger():
    expired(access_tokens=4, grants=3, created_ago=timedelta(days=40))
    expired(access_tokens=2, created_ago=timedelta(hours=1))

    run, _ = engine.dispatch(
        "cleanup",
        {"limit": 3, "only": "tokens", "keep_if_younger": "1d"},
        trigger="api",
        batch_size=2,
    )
    assert run.params == {"limit": 3, "only": ["tokens"], "keep_if_younger": 86400}
    assert run.estimated_total == 3
    run = drive(run)

    assert run.total_processed == 3 and run.status == "succeeded"
    assert get_access_token_model().objects.count() == 3  # 1 old one left by the limit, 2 young ones
    assert get_grant_model().objects.count() == 3


@pytest.mark.django_db
def test_beat_kwargs_start_a_run_with_the_same_parameters():
    result = start_cleanup(limit=100, only="tokens,grants", keep_if_younger="12h")

    run = MaintenanceRun.objects.get(pk=result["run_id"])
    assert run.params == {"limit": 100, "only": ["tokens", "grants"], "keep_if_younger": 43200}


@pytest.mark.django_db
def test_counts_are_printed_once_and_not_logged_again(caplog):
    expired(access_tokens=2)

    with caplog.at_level("INFO"):
        out, err = run_command()

    assert out.count("Total deleted: 2") == 1
    assert "deleted" not in err  # standard error has at most the REFRESH_TOKEN_EXPIRE_SECONDS warning
    assert not [r for r in caplog.records if r.name.startswith("oauth_provider") and r.levelname == "INFO"]


@pytest.mark.django_db
def test_verbosity_0_prints_nothing(caplog):
    expired(access_tokens=2)

    with caplog.at_level("INFO"):
        out, err = run_command("-v", "0")

    assert (out, err) == ("", "")
    assert not [r for r in caplog.records if r.name.startswith("oauth_provider")]
    assert get_access_token_model().objects.count() == 0


@pytest.mark.django_db
def test_dry_run_counts_in_this_process_and_starts_no_run():
    expired(access_tokens=2, grants=1)

    out, _ = run_command("--dry-run")

    assert "Total would be deleted: 3" in out
    assert not MaintenanceRun.objects.exists()
    assert get_access_token_model().objects.count() == 2


@pytest.mark.django_db
def test_async_prints_where_to_watch_the_run():
    out, _ = run_command("--async", "--limit", "10")

    run = MaintenanceRun.objects.get()
    assert f"/admin/oauth_tasks/maintenancerun/{run.pk}/change/" in out
    assert f"/maintenance/api/runs/{run.pk}/" in out
    assert out.strip().splitlines()[-1] == str(run.pk)
    assert run.params == {"limit": 10}


@pytest.mark.django_db(transaction=True)
def test_on_a_terminal_the_progress_bar_never_runs_into_a_log_line():
    """A pseudo-terminal on stderr, log lines at -v 2: each log line starts on a line of its own."""
    from django.db import connection

    expired(access_tokens=40, grants=10)
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for(connection.settings_dict),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "cleartokens", "--batch-size", "7", "-v", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    terminal = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    stdout = process.communicate(timeout=60)[0].decode()
    os.close(primary)
    text = terminal.decode(errors="replace")

    assert process.returncode == 0, text
    assert "[" in text and "rows/s" in text  # the bar was drawn
    log_lines = re.findall(r"(.)(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO oauth_provider)", text)
    assert log_lines  # -v 2 shows the cleanup's own log lines
    assert all(before in ("\n", "K") for before, _ in log_lines), text  # after a newline or a wiped line
    assert stdout.count("Total deleted: 50") == 1
