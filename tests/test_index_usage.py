"""The lookups and cleanup statements use the indexes meant for them, checked with ``EXPLAIN``.

On MySQL and MariaDB every statement a cleanup batch runs and every credential lookup is explained
on tables with a few thousand rows and fresh statistics: no table may be read whole (``ALL``), and
every table is read through an index. The credential lookups are checked on PostgreSQL too. The
index definitions themselves are checked against utf8mb4's prefix limits: no indexed column is cut
to a prefix, and none exceeds InnoDB's 3072-byte key.
"""

from __future__ import annotations

import json
import secrets
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth_provider import cleanup
from oauth_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    token_checksum,
)

from .factories import make_application, make_user

pytestmark = [
    # ANALYZE TABLE commits on MySQL and MariaDB: the rows must go with a flush, not a rollback.
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor not in ("mysql", "postgresql"),
        reason="EXPLAIN is checked on MySQL/MariaDB and PostgreSQL; SQLite's planner is not production's",
    ),
]

N = 3000


@pytest.fixture
def populated(settings):
    """A few thousand rows per table, half of them due for cleanup, and fresh statistics."""
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "REFRESH_TOKEN_REUSE_PROTECTION": False}
    now = timezone.now()
    user = make_user()
    applications = [make_application(user) for _ in range(3)]
    access_model, refresh_model = get_access_token_model(), get_refresh_token_model()
    id_model, grant_model = get_id_token_model(), get_grant_model()

    def expires(i: int):
        return now - timedelta(hours=1 + i % 50) if i % 2 else now + timedelta(hours=1 + i % 50)

    id_tokens = id_model.objects.bulk_create(
        id_model(application=applications[i % 3], user=user, expires=expires(i)) for i in range(N // 5)
    )
    access = access_model.objects.bulk_create(
        access_model(
            application=applications[i % 3],
            user=user,
            token=secrets.token_urlsafe(24),
            expires=expires(i),
            id_token=id_tokens[i // 5] if i % 5 == 0 else None,
        )
        for i in range(N)
    )
    refresh_model.objects.bulk_create(
        refresh_model(
            application=applications[i % 3],
            user=user,
            token=secrets.token_urlsafe(24),
            access_token=access[i] if i % 4 else None,
            revoked=now - timedelta(hours=2) if i % 7 == 0 else None,
        )
        for i in range(0, N, 2)
    )
    grant_model.objects.bulk_create(
        grant_model(
            application=applications[i % 3],
            user=user,
            code=secrets.token_urlsafe(16),
            expires=expires(i),
            redirect_uri="https://client.example/callback",
        )
        for i in range(N // 4)
    )
    tables = [m._meta.db_table for m in (access_model, refresh_model, id_model, grant_model)]
    with connection.cursor() as cur:
        if connection.vendor == "mysql":
            cur.execute(f"ANALYZE TABLE {', '.join(connection.ops.quote_name(t) for t in tables)}")
            cur.fetchall()
        else:
            cur.execute(f"ANALYZE {', '.join(connection.ops.quote_name(t) for t in tables)}")
    return access[1]


def plan_of(sql: str, params: tuple | list = ()) -> list[dict]:
    """The access of each table in ``sql``'s plan: ``{"table", "type", "key", "possible_keys"}``."""
    with connection.cursor() as cur:
        if connection.vendor == "mysql":
            cur.execute("EXPLAIN " + sql, params or None)
            columns = [c[0].lower() for c in cur.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
            return [
                {
                    "table": row["table"],
                    "type": row["type"],
                    "key": row["key"],
                    "possible_keys": (row["possible_keys"] or "").split(","),
                }
                for row in rows
                if row["table"] and not row["table"].startswith("<")
            ]
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, params or None)
        found = []

        def walk(node: dict) -> None:
            if "Relation Name" in node:
                found.append(
                    {
                        "table": node["Relation Name"],
                        "type": node["Node Type"],
                        "key": node.get("Index Name"),
                        "possible_keys": [],
                    }
                )
            for child in node.get("Plans", []):
                walk(child)

        document = cur.fetchone()[0]
        walk((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])
        return found


@contextmanager
def indexes_only():
    """PostgreSQL plans a few thousand rows cheapest read whole: make it choose among its indexes."""
    with connection.cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        cur.execute("SET enable_bitmapscan = off")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET enable_seqscan")
            cur.execute("RESET enable_bitmapscan")


def full_scans(plan: list[dict]) -> list[dict]:
    return [step for step in plan if step["type"] in ("ALL", "Seq Scan")]


def captured(run) -> list[str]:
    """The SELECT, UPDATE and DELETE statements ``run()`` sends, with their parameters in place."""
    with CaptureQueriesContext(connection) as ctx:
        run()
    return [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))
    ]


def test_token_code_and_client_lookups_use_their_unique_indexes(populated):
    access = populated
    refresh = get_refresh_token_model().objects.exclude(revoked__isnull=False).first()
    grant = get_grant_model().objects.first()
    application = get_application_model().objects.first()
    lookups = {
        "access token by checksum": (
            lambda: get_access_token_model().lookup(access.token),
            get_access_token_model()._meta.db_table,
        ),
        "refresh token by checksum": (
            lambda: get_refresh_token_model().lookup(refresh.token),
            get_refresh_token_model()._meta.db_table,
        ),
        "grant by code": (
            lambda: get_grant_model().objects.filter(code=grant.code).first(),
            get_grant_model()._meta.db_table,
        ),
        "application by client_id": (
            lambda: get_application_model().objects.filter(client_id=application.client_id).first(),
            get_application_model()._meta.db_table,
        ),
    }
    assert access.token_checksum == token_checksum(access.token)
    for name, (lookup, table) in lookups.items():
        (sql,) = captured(lookup)
        steps = [step for step in plan_of(sql) if step["table"] == table]
        assert steps, (name, sql)
        for step in steps:
            assert step["key"], f"{name}: no index used: {step}"
            assert step["type"] not in ("ALL", "Seq Scan", "index"), f"{name}: {step}"


MYSQL_ONLY = pytest.mark.skipif(
    connection.vendor != "mysql",
    reason="PostgreSQL plans these by table size (a few thousand rows are cheapest read whole); "
    "its cleanup is measured at scale in bench/cleanup",
)


@MYSQL_ONLY
@pytest.mark.parametrize("phase", [p for p in cleanup.PHASES if p != cleanup.EXPIRED_REFRESH_TOKENS])
def test_every_statement_of_a_cleanup_batch_reads_by_an_index(populated, phase):
    plan = cleanup.CleanupPlan.from_settings()
    statements = captured(lambda: cleanup.run_phase_batch(phase, now=plan, batch_size=100))
    assert statements
    for sql in statements:
        steps = plan_of(sql)
        assert not full_scans(steps), f"{phase}: full scan in {sql}\n{steps}"
        for step in steps:
            assert step["key"], f"{phase}: a table read without an index in {sql}\n{step}"


@MYSQL_ONLY
def test_rule_3_reads_by_an_index(populated, settings):
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "REFRESH_TOKEN_EXPIRE_SECONDS": 600}
    plan = cleanup.CleanupPlan.from_settings()
    statements = captured(
        lambda: cleanup.run_phase_batch(cleanup.EXPIRED_REFRESH_TOKENS, now=plan, batch_size=100)
    )
    for sql in statements:
        steps = plan_of(sql)
        assert not full_scans(steps), f"full scan in {sql}\n{steps}"


@pytest.mark.skipif(connection.vendor != "mysql", reason="the count runs on MySQL and MariaDB only")
@pytest.mark.parametrize("phase", [cleanup.ACCESS_TOKENS, cleanup.ID_TOKENS])
def test_the_nothing_to_delete_count_reads_expires_and_link_indexes_only(populated, phase):
    plan = cleanup.CleanupPlan.from_settings()
    (sql,) = captured(lambda: cleanup._unreferenced_expired_count(phase, plan))
    steps = plan_of(sql)
    model = cleanup.phase_model(phase)
    link = cleanup._referencing_link(phase)
    expires_index = next(i.name for i in model._meta.indexes if i.fields == ["expires"])
    own = [s for s in steps if s["table"] == model._meta.db_table]
    other = [s for s in steps if s["table"] == link.model._meta.db_table]
    # Its expiry index, or its primary key when the join starts from the other table's link.
    assert own and all(s["key"] in (expires_index, "PRIMARY") for s in own), steps
    assert any(s["key"] == expires_index for s in own), steps
    assert other and all(s["key"] == link.column or link.column in (s["key"] or "") for s in other), steps


@pytest.mark.skipif(connection.vendor != "mysql", reason="utf8mb4 key limits are InnoDB's")
def test_no_index_is_cut_to_a_prefix_or_longer_than_innodb_allows(populated):
    tables = [
        model._meta.db_table
        for model in (
            get_access_token_model(),
            get_refresh_token_model(),
            get_id_token_model(),
            get_grant_model(),
            get_application_model(),
        )
    ]
    placeholders = ", ".join(["%s"] * len(tables))
    with connection.cursor() as cur:
        cur.execute(
            "SELECT s.table_name, s.index_name, s.column_name, s.sub_part, c.data_type, "
            "c.character_maximum_length, c.character_set_name "
            "FROM information_schema.statistics s JOIN information_schema.columns c "
            "ON c.table_schema = s.table_schema AND c.table_name = s.table_name "
            "AND c.column_name = s.column_name "
            f"WHERE s.table_schema = DATABASE() AND s.table_name IN ({placeholders})",
            tables,
        )
        rows = cur.fetchall()
    assert rows
    key_bytes: dict[tuple[str, str], int] = {}
    for table, index, column, sub_part, data_type, length, charset in rows:
        assert sub_part is None, f"{table}.{index} indexes only a prefix of {column}"
        assert data_type not in ("text", "mediumtext", "longtext", "blob"), f"{table}.{index}: {column}"
        if length is not None:
            assert charset in (None, "utf8mb4", "binary"), f"{table}.{column} is {charset}"
            key_bytes[(table, index)] = key_bytes.get((table, index), 0) + length * 4
    assert max(key_bytes.values()) <= 3072, key_bytes
    checksum = {
        (table, column): index
        for table, index, column, *_ in rows
        if column == "token_checksum" and table == get_access_token_model()._meta.db_table
    }
    assert checksum, "the access token checksum is indexed"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner setting is PostgreSQL's")
def test_a_batch_inside_a_transaction_leaves_its_planner_settings_as_it_found_them(populated):
    """A batch plans its statements without bitmap scans (``cleanup._key_range_plans``) and
    restores the setting, so the rest of an enclosing transaction plans as before."""
    from django.db import transaction

    plan = cleanup.CleanupPlan.from_settings()
    with transaction.atomic(), connection.cursor() as cur:
        result = cleanup.run_phase_batch(cleanup.REVOKED_REFRESH_TOKENS, now=plan, batch_size=100)
        cur.execute("SHOW enable_bitmapscan")
        assert cur.fetchone()[0] == "on"
    assert result.deleted > 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the covering index exists on PostgreSQL only")
@pytest.mark.parametrize(
    "phase, index",
    [
        (cleanup.ACCESS_TOKENS, "oauth_provider_accesstoken_id_expires"),
        (cleanup.ID_TOKENS, "oauth_provider_idtoken_id_expires"),
    ],
)
def test_the_window_of_rules_4_and_5_reads_keys_and_expiry_from_an_index_alone(populated, phase, index):
    """Rule 4's and rule 5's windows (expired, nothing pointing at it, by key) need no table read.

    With nothing to delete a window walks every expired row; through the primary key each one is a
    heap visit for ``expires``. Index access is required here, since a few thousand rows are
    cheapest read whole: among the indexes, the one carrying the key and the expiry must answer
    without visiting the table once it is vacuumed (migrations 0006 and 0007).
    """
    model = cleanup.phase_model(phase)
    table = model._meta.db_table
    with connection.cursor() as cur:
        for each in (get_id_token_model(), get_access_token_model(), get_refresh_token_model()):
            cur.execute(f"VACUUM ANALYZE {connection.ops.quote_name(each._meta.db_table)}")
    plan = cleanup.CleanupPlan.from_settings()
    rows = model._base_manager.filter(cleanup.phase_predicate(phase, plan))
    window = cleanup._window_query(rows, None, 100)
    sql, params = window.query.get_compiler("default").as_sql()
    with indexes_only(), connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        document = cur.fetchone()[0]
    nodes, todo = [], [(json.loads(document) if isinstance(document, str) else document)[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    reads = [node for node in nodes if node.get("Relation Name") == table]
    assert reads, nodes
    for node in reads:
        assert node["Node Type"] == "Index Only Scan", node
        assert node["Index Name"] == index, node
        assert node["Heap Fetches"] == 0, node


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the partial index exists on PostgreSQL only")
def test_the_first_window_of_rule_2_reads_the_orphans_index_not_the_primary_key(populated):
    """Rule 2's first window has no cursor. Through the primary key it walked every live and
    revoked refresh token below the first orphan (migration 0008); the partial index holds the
    orphans alone, so the window reads it and nothing else of the table."""
    model = cleanup.phase_model(cleanup.ORPHANED_REFRESH_TOKENS)
    table = model._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"VACUUM ANALYZE {connection.ops.quote_name(table)}")
    plan = cleanup.CleanupPlan.from_settings()
    rows = model._base_manager.filter(cleanup.phase_predicate(cleanup.ORPHANED_REFRESH_TOKENS, plan))
    assert rows.exists()
    window = cleanup._window_query(rows, None, 100)
    sql, params = window.query.get_compiler("default").as_sql()
    with indexes_only():
        steps = plan_of(sql, params)
    reads = [step for step in steps if step["table"] == table]
    assert reads, steps
    assert all(step["key"] == "oauth_provider_refreshtoken_orphaned" for step in reads), steps
