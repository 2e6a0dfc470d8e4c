"""Both apps inside an existing Django project with its own Celery app, used as libraries.

The project under ``tests/existing_project`` is copied to a temporary folder and driven there with
its own ``manage.py`` and its own worker (``celery -A someproject``), so the apps come from
wherever they are installed: the source tree's editable install here, the built wheel in CI
(``.ci/run`` sets ``EXPECT_INSTALLED_APPS=1`` and then checks they are not the source tree's).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from .conftest import ROOT, wait_until

PROJECT = ROOT / "tests" / "existing_project"


class ExistingProject:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env

    def manage(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr[-3000:]}"
        return done.stdout

    def python(self, code: str) -> dict:
        """Run ``code`` in the project's Django shell; it prints one JSON line."""
        return json.loads(self.manage("shell", "-c", textwrap.dedent(code)).strip().splitlines()[-1])


@pytest.fixture
def project(tmp_path, broker_url) -> ExistingProject:
    folder = tmp_path / "existing"
    shutil.copytree(PROJECT, folder, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "DATABASE_URL")
    }
    env.update(CELERY_BROKER_URL=broker_url, CELERY_RESULT_BACKEND=broker_url, PYTHONDONTWRITEBYTECODE="1")
    return ExistingProject(folder, env)


def test_the_apps_never_import_the_bundled_project_or_celeryconfig():
    offenders = []
    for package in ("oauth_provider", "oauth_tasks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    # import_module("config...") or a dotted path in a string
                    if node.value.split(".")[0] in ("config", "celeryconfig") and "." in node.value:
                        names = [node.value]
                for name in names:
                    if name.split(".")[0] in ("config", "celeryconfig"):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert offenders == []


@pytest.mark.worker
def test_an_existing_project_migrates_schedules_and_cleans_up_with_its_own_worker(project):
    project.manage("migrate", "-v", "0")
    state = project.python(
        """
        import json, sys
        from django.apps import apps
        from importlib import import_module
        import pkgutil
        import oauth_provider, oauth_tasks
        # Every module of both apps, imported as the project runs them (the optional
        # integrations under contrib need their own extra).
        skipped = (".migrations.", ".management.commands.", ".contrib.")
        for package in (oauth_provider, oauth_tasks):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                if not any(part in info.name + "." for part in skipped):
                    import_module(info.name)
        from django_celery_beat.models import PeriodicTask
        from celery import current_app
        print(json.dumps({
            "provider": oauth_provider.__file__,
            "tasks": oauth_tasks.__file__,
            "bundled": sorted(m for m in sys.modules if m.split(".")[0] in ("config", "celeryconfig")),
            "schedule": sorted(PeriodicTask.objects.values_list("task", flat=True)),
            "celery_app": current_app.main,
        }))
        """
    )
    assert state["bundled"] == []
    assert state["celery_app"] == "someproject"
    assert "oauth_tasks.start_cleanup" in state["schedule"]
    assert "oauth_tasks.watchdog" in state["schedule"]
    for module in (state["provider"], state["tasks"]):
        assert not module.startswith(str(project.folder))
        if os.environ.get("EXPECT_INSTALLED_APPS"):
            assert not module.startswith(str(ROOT)), (
                f"{module} is the source tree's, not the installed wheel's"
            )

    seeded = project.python(
        """
        import json
        from datetime import timedelta
        from django.contrib.auth import get_user_model
        from django.utils import timezone
        from oauth_provider.models import AccessToken, Application
        user = get_user_model().objects.create_user("someone")
        app = Application.objects.create(
            name="app", client_type="confidential", authorization_grant_type="client-credentials"
        )
        now = timezone.now()
        expired = [
            AccessToken.objects.create(
                user=user, application=app, token=f"expired-{i}", expires=now - timedelta(days=1)
            ).pk
            for i in range(3)
        ]
        live = AccessToken.objects.create(
            user=user, application=app, token="live", expires=now + timedelta(hours=1)
        )
        print(json.dumps({"expired": expired, "live": live.pk}))
        """
    )

    log = project.folder / "worker.log"
    name = f"someproject-{uuid.uuid4().hex[:8]}@%h"
    with open(log, "wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "someproject", "worker", "-Q", "maintenance,celery"]
            + ["-c", "1", "-n", name, "--without-gossip", "--without-mingle", "-l", "info"],
            cwd=project.folder,
            env=project.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        run = project.python(
            """
            import json
            from oauth_tasks import engine
            run, created = engine.dispatch("cleanup", {}, trigger="test", batch_size=100, interval=0)
            print(json.dumps({"id": run.pk, "created": created}))
            """
        )
        assert run["created"]

        def finished():
            assert worker.poll() is None, log.read_text(errors="replace")
            status = project.python(
                f"""
                import json
                from oauth_tasks.models import MaintenanceRun
                run = MaintenanceRun.objects.get(pk={run["id"]})
                print(json.dumps({{"status": run.status, "error": run.last_error}}))
                """
            )
            return status if status["status"] not in ("pending", "running") else None

        status = wait_until(
            finished, timeout=120, interval=1, message="the cleanup run to finish on the worker"
        )
        assert status == {"status": "succeeded", "error": ""}
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)
    assert "oauth_tasks.run_batch" in log.read_text(errors="replace")
    left = project.python(
        """
        import json
        from oauth_provider.models import AccessToken
        print(json.dumps(sorted(AccessToken.objects.values_list("pk", flat=True))))
        """
    )
    assert left == [seeded["live"]]
