"""Settings read from the environment: a private secret key by default, clear errors for bad values."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from tests.conftest import ROOT

PRINT = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup();"
    "from django.conf import settings; print(settings.SECRET_KEY);"
    "print(settings.DATABASES['default']['ENGINE'])"
)


def settings_of(tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "DEBUG")}
    environment.update(DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", PRINT], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_without_secret_key_a_random_one_is_made_once_and_kept_private(tmp_path):
    first, second = settings_of(tmp_path), settings_of(tmp_path)
    assert first.returncode == 0, first.stderr
    key = first.stdout.splitlines()[0]
    assert len(key) >= 50 and second.stdout.splitlines()[0] == key
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    other = settings_of(tmp_path / "elsewhere")
    assert other.stdout.splitlines()[0] != key


def test_secret_key_and_database_url_come_from_the_environment(tmp_path):
    result = settings_of(tmp_path, SECRET_KEY="from-env-" + "x" * 40, DATABASE_URL="postgres://u@db:5432/n")
    assert result.stdout.splitlines() == ["from-env-" + "x" * 40, "django.db.backends.postgresql"]
    assert not (tmp_path / "secret_key").exists()


def test_the_example_secret_key_is_refused(tmp_path):
    result = settings_of(tmp_path, SECRET_KEY="change-me")
    assert result.returncode != 0
    assert "SECRET_KEY is still the example value" in result.stderr


def test_a_bad_boolean_names_the_variable(tmp_path):
    result = settings_of(tmp_path, DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


WRITE_AND_LIST_MODES = (
    "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup();"
    "from django.conf import settings; from django.db import connection;"
    "cursor = connection.cursor(); cursor.execute('CREATE TABLE t (x text)');"
    "cursor.execute(\"INSERT INTO t VALUES ('a user row')\");"
    # Listed while the connection is open, so SQLite's -wal and -shm files exist too.
    "[print(f'{name} {os.stat(os.path.join(root, name)).st_mode & 0o777:o}')"
    " for root in [str(settings.DATA_DIR)] for name in ['.', *sorted(os.listdir(root))]]"
)


def test_the_data_folder_and_the_sqlite_database_are_readable_by_their_owner_only(tmp_path):
    data_dir = tmp_path / "fresh" / "data"
    environment = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "DEBUG")}
    environment.update(DATA_DIR=str(data_dir))
    result = subprocess.run(
        [sys.executable, "-c", WRITE_AND_LIST_MODES],
        cwd=ROOT,
        env={**environment, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    modes = dict(line.split() for line in result.stdout.splitlines())

    assert modes.pop(".") == "700", "DATA_DIR must be private to its owner"
    assert {"db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm", "secret_key"} <= set(modes), modes
    # No other local user may read the database (sessions, token checksums, client secret hashes).
    for name, mode in modes.items():
        if name in {"static"}:
            continue
        assert mode == "600", f"{name} is created with mode {mode}, readable beyond its owner"
    assert stat.S_IMODE((data_dir / "db.sqlite3").stat().st_mode) == 0o600
