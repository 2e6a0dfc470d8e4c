"""Migrations are complete, apply on the configured database, and create the cleanup indexes."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from oauth_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_makemigrations_check_is_clean():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def _indexed_column_sets(model) -> list[list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "get_model, columns",
    [
        (get_access_token_model, ["expires"]),
        (get_access_token_model, ["user_id", "application_id"]),
        (get_access_token_model, ["token_checksum"]),
        (get_refresh_token_model, ["revoked"]),
        (get_refresh_token_model, ["access_token_id"]),
        (get_refresh_token_model, ["user_id", "application_id"]),
        (get_id_token_model, ["expires"]),
        (get_grant_model, ["expires"]),
    ],
)
def test_migrated_database_has_the_index(get_model, columns):
    assert columns in _indexed_column_sets(get_model())


def test_migrations_apply_forwards_and_backwards_on_a_fresh_database(tmp_path, fresh_database_url):
    """On the configured engine: a new database (a file for SQLite, one on the test server else)."""
    env = dict(os.environ, DATA_DIR=str(tmp_path), DATABASE_URL=fresh_database_url)
    for args in (["migrate"], ["migrate", "oauth_provider", "zero"], ["migrate"]):
        subprocess.run([sys.executable, "manage.py", *args, "-v0"], cwd=ROOT, env=env, check=True)
    # No warning on any backend (MariaDB and MySQL warned of unique constraints they do not create).
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert "no issues (0 silenced)" in checked.stdout


def test_a_project_can_swap_the_application_model(tmp_path):
    """A project with its own application model migrates, creates one and points tokens at it."""
    env = dict(
        os.environ,
        DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'swapped.sqlite3'}",
        DJANGO_SETTINGS_MODULE="tests.swapped_project.settings",
    )

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    manage("migrate", "-v0")
    assert "No changes detected" in manage("makemigrations", "--check", "--dry-run")
    code = (
        "from oauth_provider.models import get_application_model, get_access_token_model\n"
        "App = get_application_model()\n"
        "app = App.objects.create(name='t', tenant='acme', client_type='confidential',"
        " authorization_grant_type='password',"
        " extra_grant_types='client-credentials')\n"
        "target = get_access_token_model()._meta.get_field('application').related_model\n"
        "print(App._meta.label, target._meta.label,"
        " app.allows_grant_type('client-credentials'), app.allows_grant_type('implicit'))\n"
    )
    assert manage("shell", "--no-imports", "-c", code).split() == [
        "swapped_app.TenantApplication",
        "swapped_app.TenantApplication",
        "True",
        "False",
    ]


#: The indexes only PostgreSQL gets (``migrations/_postgresql_index.py``): model, index, the end
#: of its definition, the migration before the one that builds it.
KEY_WITH_EXPIRY = "(id) INCLUDE (expires)"
ORPHANED = "(id) WHERE ((access_token_id IS NULL) AND (revoked IS NULL))"
POSTGRESQL_INDEXES = [
    pytest.param(
        get_access_token_model, "oauth_provider_accesstoken_id_expires", KEY_WITH_EXPIRY, "0005", id="access"
    ),
    pytest.param(get_id_token_model, "oauth_provider_idtoken_id_expires", KEY_WITH_EXPIRY, "0006", id="id"),
    pytest.param(
        get_refresh_token_model, "oauth_provider_refreshtoken_orphaned", ORPHANED, "0007", id="orphaned"
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize("get_model, index, ending, _before", POSTGRESQL_INDEXES)
def test_token_tables_have_their_postgresql_only_indexes_there_alone(get_model, index, ending, _before):
    table = get_model()._meta.db_table
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, table)
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexname = %s",
                [table, index],
            )
            (definition,) = cursor.fetchone()
            assert definition.endswith(ending), definition
        else:
            assert index not in indexes


@pytest.mark.parametrize("get_model, index, ending, before", POSTGRESQL_INDEXES)
def test_an_invalid_index_left_by_an_interrupted_build_is_built_again(
    tmp_path, fresh_database_url, get_model, index, ending, before
):
    """``CREATE INDEX CONCURRENTLY`` interrupted leaves an invalid index; ``IF NOT EXISTS`` alone
    would keep it, and the planner never uses an invalid index. The next ``migrate`` replaces it."""
    if connection.vendor != "postgresql":
        pytest.skip("the index and its concurrent build are PostgreSQL's")
    import psycopg

    env = dict(os.environ, DATA_DIR=str(tmp_path), DATABASE_URL=fresh_database_url)
    table = get_model()._meta.db_table

    def migrate(*target: str) -> None:
        argv = [sys.executable, "manage.py", "migrate", *target, "-v0"]
        subprocess.run(argv, cwd=ROOT, env=env, check=True)

    def sql(statement: str) -> list[tuple]:
        with psycopg.connect(fresh_database_url, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def validity() -> list[bool]:
        query = "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        return [valid for (valid,) in sql(f"{query} WHERE c.relname = '{index}'")]

    migrate()
    assert validity() == [True]
    migrate("oauth_provider", before)
    assert validity() == []
    # What an interrupted build leaves: an index under that name, marked invalid.
    sql(f"CREATE INDEX {index} ON {table} (id)")
    sql(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{index}'::regclass")
    assert validity() == [False]
    migrate()
    assert validity() == [True]
    ((definition,),) = sql(f"SELECT indexdef FROM pg_indexes WHERE indexname = '{index}'")
    assert definition.endswith(ending), definition
