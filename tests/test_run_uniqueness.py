"""At most one active run per job and parameters, and one watermark per revocation target, held
by the database on every backend: concurrent processes, and the upgrade of existing rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from oauth_tasks.engine import params_fingerprint
from oauth_tasks.models import MaintenanceRun
from tests.conftest import database_url_for

ROOT = Path(__file__).resolve().parent.parent


def test_twelve_processes_dispatching_the_same_work_at_once_create_one_run(transactional_db):
    """Each process dispatches a cleanup, then a revocation (whose dispatch writes a watermark)."""
    from oauth_provider.models import RevocationWatermark

    work = [["cleanup", {}], ["revoke", {"scope": "payments"}]]
    env = dict(os.environ, DATABASE_URL=database_url_for(connection.settings_dict))
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.concurrent_dispatch", json.dumps(work)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(12)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:  # every process has Django set up and a connection open: go
            child.stdin.write("go\n")
            child.stdin.flush()
        answers = []
        for child in children:
            out, _ = child.communicate(timeout=120)
            assert child.returncode == 0
            answers.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for index, (kind, _) in enumerate(work):
        assert sum(answer[index]["created"] for answer in answers) == 1, kind
        assert len({answer[index]["run_id"] for answer in answers}) == 1, kind
        assert MaintenanceRun.objects.filter(kind=kind).count() == 1, kind
    assert RevocationWatermark.objects.filter(scope="payments").count() == 1


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_upgrade_gives_active_runs_their_key_and_leaves_one_run_per_fingerprint():
    """The migration moves existing runs; where the old conditional constraint did not exist
    (MariaDB, MySQL) duplicated active runs are cancelled but for the oldest."""
    old = _migrate([("oauth_tasks", "0002_run_result")])
    run_model = old.get_model("oauth_tasks", "MaintenanceRun")
    now = timezone.now()
    enforced = connection.features.supports_partial_indexes

    def add(status, key, minutes_ago):
        return run_model.objects.create(
            kind="cleanup",
            params_key=key,
            status=status,
            batch_size=10,
            interval=0,
            cutoff=now,
            trigger="test",
            created_at=now - timedelta(minutes=minutes_ago),
        ).pk

    key, other_key = params_fingerprint("cleanup", {}, False), params_fingerprint("cleanup", {}, True)
    oldest = add("running", key, 10)
    twins = [] if enforced else [add("pending", key, 5), add("running", key, 1)]
    other = add("pending", other_key, 3)
    finished = [add("succeeded", key, 20), add("failed", key, 30)]
    try:
        upgraded = _migrate([("oauth_tasks", "0003_active_key")]).get_model("oauth_tasks", "MaintenanceRun")
        rows = {run.pk: run for run in upgraded.objects.all()}
        assert (rows[oldest].status, rows[oldest].active_key) == ("running", key)
        assert (rows[other].status, rows[other].active_key) == ("pending", other_key)
        for pk in finished:
            assert rows[pk].active_key is None
        for pk in twins:
            assert (rows[pk].status, rows[pk].active_key) == ("cancelled", None)
            assert f"run #{oldest}" in rows[pk].last_error
    finally:
        run_model.objects.all().delete()
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_upgrade_gives_watermarks_their_key_and_keeps_the_latest_per_target():
    from django.contrib.auth import get_user_model

    from oauth_provider.models import watermark_target_key

    user = get_user_model().objects.create(username="wm-upgrade")
    old = _migrate([("oauth_provider", "0002_revocation_watermark")])
    mark_model = old.get_model("oauth_provider", "RevocationWatermark")
    now = timezone.now()
    enforced = connection.features.supports_partial_indexes
    user_mark = mark_model.objects.create(user_id=user.pk, not_before=now - timedelta(hours=1))
    scope_mark = mark_model.objects.create(scope="Read", not_before=now)
    lower_mark = mark_model.objects.create(scope="read", not_before=now)
    older_twin = None
    if not enforced:
        later = mark_model.objects.create(user_id=user.pk, not_before=now)
        older_twin, user_mark = user_mark, later
    try:
        upgraded = _migrate([("oauth_provider", "0003_watermark_target_key")]).get_model(
            "oauth_provider", "RevocationWatermark"
        )
        keys = dict(upgraded.objects.values_list("pk", "target_key"))
        assert keys == {
            user_mark.pk: watermark_target_key(None, user.pk, ""),
            scope_mark.pk: watermark_target_key(None, None, "Read"),
            lower_mark.pk: watermark_target_key(None, None, "read"),
        }
        assert older_twin is None or older_twin.pk not in keys
        assert upgraded.objects.get(pk=user_mark.pk).not_before == user_mark.not_before
    finally:
        mark_model.objects.all().delete()
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
