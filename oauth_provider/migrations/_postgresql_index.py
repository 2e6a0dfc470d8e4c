"""PostgreSQL: indexes of the token tables that only PostgreSQL gets, built ``CONCURRENTLY``.

Two kinds, each created by migrations that hold one :func:`operation`:

* :func:`key_with_expiry`: the table's primary key carrying ``expires`` (``INCLUDE``; ``0006`` for
  access tokens, ``0007`` for ID tokens). A cleanup with nothing to delete still has to show, for
  rules 4 and 5, that every expired row is kept by a row pointing at it: a merge of the table's
  keys with the other table's index of its link. Through the primary key that merge reads every
  expired row's ``expires`` from the table; with this index both sides are index-only scans.
* :func:`orphaned_refresh_tokens`: the keys of the refresh tokens rule 2 deletes (not revoked, no
  access token), a partial index (``0008``). Without it the phase's first window, which has no
  cursor yet, walks the primary key from the start and reads every live and revoked refresh token
  below the first orphan. The index holds the orphans alone, so it costs nothing to keep up.

The indexes exist on PostgreSQL only, and only in the database: no model declares them. A
covering index would be a plain duplicate of the primary key on MySQL, MariaDB (where InnoDB
already carries the key in the ``expires`` index) and SQLite; a partial index declared on a model
makes Django warn on every command run against MySQL or MariaDB, which have none (W037), and
SQLite's small tables do not need it. Each is built ``CONCURRENTLY`` (the migrations are not
atomic), so writes to a large table go on while it builds; an invalid index left by an interrupted
build is dropped and built again when the migration runs again. A swapped model has no table here:
nothing is done.

Django's migration loader skips modules whose name starts with an underscore, so this is no
migration of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.db import migrations

#: What follows ``ON table`` in ``CREATE INDEX``, from the model and the schema editor's quoting.
Definition = Callable[[type, Callable[[str], str]], str]


def key_with_expiry(model, quote) -> str:
    """``(key) INCLUDE (expires)``."""
    key, expires = model._meta.pk.column, model._meta.get_field("expires").column
    return f"({quote(key)}) INCLUDE ({quote(expires)})"


def orphaned_refresh_tokens(model, quote) -> str:
    """``(key) WHERE access_token IS NULL AND revoked IS NULL``: rule 2's rows."""
    key = model._meta.pk.column
    access_token = model._meta.get_field("access_token").column
    revoked = model._meta.get_field("revoked").column
    return f"({quote(key)}) WHERE {quote(access_token)} IS NULL AND {quote(revoked)} IS NULL"


def _table(apps, schema_editor, model_name: str) -> str | None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return None
    table = apps.get_model("oauth_provider", model_name)._meta.db_table
    with connection.cursor() as cursor:
        if table not in connection.introspection.table_names(cursor):
            return None  # a swapped model: the project's own table, not created here
    return table


def create(apps, schema_editor, model_name: str, index_name: str, definition: Definition) -> None:
    """Build ``model_name``'s index ``index_name`` as ``definition`` says, replacing an invalid one."""
    table = _table(apps, schema_editor, model_name)
    if table is None:
        return
    model = apps.get_model("oauth_provider", model_name)
    quote = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
            [index_name],
        )
        found = cursor.fetchone()
    if found and not found[0]:
        # An interrupted concurrent build leaves an invalid index that IF NOT EXISTS would keep.
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(index_name)}")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote(index_name)} "
        f"ON {quote(table)} {definition(model, quote)}"
    )


def drop(apps, schema_editor, model_name: str, index_name: str) -> None:
    if _table(apps, schema_editor, model_name) is None:
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(index_name)}")


def operation(model_name: str, index_name: str, definition: Definition) -> migrations.RunPython:
    """The migration operation that builds (and, backwards, drops) ``model_name``'s index."""
    return migrations.RunPython(
        partial(create, model_name=model_name, index_name=index_name, definition=definition),
        partial(drop, model_name=model_name, index_name=index_name),
        elidable=False,
    )
