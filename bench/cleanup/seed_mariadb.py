"""The shape of ``seed.py``, written into MariaDB: the same rows, ids and rule counts.

MariaDB has no ``generate_series``; its Sequence engine's ``seq_1_to_N`` tables serve instead, so
this module needs MariaDB (10.0.3 or later), not MySQL. The seed time is the session variable
``@T``, in UTC, as Django stores datetimes on this backend. Connections are ``MySQLdb`` ones.
"""

from __future__ import annotations

from datetime import UTC

from seed import DOT, OURS, Schema, count_tables, rule_predicates

__all__ = ["DOT", "OURS", "Schema", "count_rules", "count_tables", "floor_statements", "seed"]

EXPIRED = "(i * 37) % 100 < 95"
EXPIRES = (
    f"CASE WHEN {EXPIRED} THEN @T - INTERVAL 1 HOUR - INTERVAL (i % 2160) HOUR "
    "ELSE @T + INTERVAL 1 HOUR + INTERVAL (i % 48) HOUR END"
)


def naive_utc(moment):
    """A datetime as MariaDB's DATETIME columns hold it for Django: UTC, without a zone."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _md5_uuid(text: str) -> str:
    """A UUID from ``md5(text || i)``, with the version 4 and variant bits MariaDB's UUID type checks."""
    h = f"MD5(CONCAT({text}, i))"
    return (
        f"CONCAT_WS('-', SUBSTR({h}, 1, 8), SUBSTR({h}, 9, 4), CONCAT('4', SUBSTR({h}, 14, 3)), "
        f"CONCAT('8', SUBSTR({h}, 18, 3)), SUBSTR({h}, 21, 12))"
    )


def _checksum(prefix: str) -> str:
    return f"SHA2(CONCAT('{prefix}_', MD5(CONCAT('{prefix}', i))), 256)"


def _filler(data_type: str) -> str:
    if data_type in ("varchar", "char", "longtext", "text", "mediumtext"):
        return "''"
    if data_type in ("tinyint", "smallint", "int", "bigint", "double", "float", "decimal"):
        return "0"
    if data_type in ("datetime", "timestamp"):
        return "@T"
    if data_type == "uuid":
        return "UUID()"
    raise ValueError(f"no filler for a NOT NULL column of type {data_type}")


def _insert(cur, table: str, count: int, values: dict[str, str], where: str = "1") -> int:
    """``INSERT INTO table SELECT ... FROM seq_1_to_<count> WHERE where``; unset NOT NULL columns
    are filled from their type."""
    cur.execute(
        "SELECT column_name, data_type, column_default, extra FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name = %s AND is_nullable = 'NO' "
        "ORDER BY ordinal_position",
        [table],
    )
    required = cur.fetchall()
    # A JSON column is a longtext with a json_valid() check: it needs JSON, not empty text.
    cur.execute(
        "SELECT check_clause FROM information_schema.check_constraints "
        "WHERE constraint_schema = DATABASE() AND table_name = %s",
        [table],
    )
    checks = " ".join(row[0] for row in cur.fetchall())
    columns = dict(values)
    for name, data_type, default, extra in required:
        if name not in columns and default is None and "auto_increment" not in extra:
            columns[name] = "'{}'" if f"json_valid(`{name}`)" in checks else _filler(data_type)
    names = ", ".join(f"`{c}`" for c in columns)
    exprs = ", ".join(columns.values())
    cur.execute(
        f"INSERT INTO `{table}` ({names}) SELECT {exprs} "
        f"FROM (SELECT seq AS i FROM seq_1_to_{int(count)}) s WHERE {where}"
    )
    return cur.rowcount


def seed(conn, schema: Schema, n: int, seed_time, *, source_links: bool = True) -> dict[str, int]:
    """Write the shape for ``n`` access tokens into an empty, migrated database; rows per table."""
    users = max(1, -(-n // 100))
    apps = max(1, -(-n // 1000))
    s = schema
    counts: dict[str, int] = {}
    cur = conn.cursor()
    # The rows are consistent by construction: no foreign key or unique checks while loading.
    cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0, time_zone = '+00:00'")
    cur.execute("SET @T = %s", [naive_utc(seed_time)])
    counts["users"] = _insert(
        cur,
        "auth_user",
        users,
        {
            "id": "i",
            "password": "'!'",
            "username": "CONCAT('user', i)",
            "email": "CONCAT('user', i, '@example.com')",
            "is_active": "1",
            "date_joined": "@T - INTERVAL 400 DAY",
        },
    )
    counts["applications"] = _insert(
        cur,
        s.application,
        apps,
        {
            "id": "i",
            "client_id": "CONCAT('client-', i)",
            "client_secret": "'!'",
            "client_type": "'confidential'",
            "authorization_grant_type": "'authorization-code'",
            "name": "CONCAT('app ', i)",
            "redirect_uris": "CONCAT('https://app', i, '.example.com/cb')",
            "user_id": f"1 + (i % {users})",
            "created": "@T - INTERVAL 400 DAY",
            "updated": "@T - INTERVAL 400 DAY",
        },
    )
    owner = {"user_id": f"1 + ((i * 7) % {users})", "application_id": f"1 + (i % {apps})"}
    counts["id"] = _insert(
        cur,
        s.id_token,
        n,
        {
            "id": "i",
            "jti": _md5_uuid("'jti'"),
            "expires": EXPIRES,
            "scope": "'openid read'",
            "created": "@T - INTERVAL 91 DAY",
            "updated": "@T - INTERVAL 91 DAY",
            **owner,
        },
        where="i % 5 = 1",
    )
    counts["refresh_revoked"] = _insert(
        cur,
        s.refresh_token,
        n,
        {
            "id": f"{n} + i",
            "token": "CONCAT('rrt_', MD5(CONCAT('rrt', i)))",
            "token_checksum": _checksum("rrt"),
            "access_token_id": "NULL",
            "revoked": "@T - INTERVAL 1 HOUR - INTERVAL (i % 720) HOUR",
            "token_family": _md5_uuid("'fam'"),
            "created": "@T - INTERVAL 91 DAY",
            "updated": "@T - INTERVAL 1 HOUR",
            **owner,
        },
        where="i % 4 = 3",
    )
    counts["access"] = _insert(
        cur,
        s.access_token,
        n,
        {
            "id": "i",
            "token": "CONCAT('at_', MD5(CONCAT('at', i)))",
            "token_checksum": _checksum("at"),
            "expires": EXPIRES,
            "scope": "'read write'",
            "id_token_id": "CASE WHEN i % 5 = 1 THEN i END",
            "source_refresh_token_id": f"CASE WHEN i % 4 = 3 THEN {n} + i END" if source_links else "NULL",
            "created": "@T - INTERVAL 91 DAY",
            "updated": "@T - INTERVAL 91 DAY",
            **owner,
        },
    )
    counts["refresh_live"] = _insert(
        cur,
        s.refresh_token,
        n,
        {
            "id": "i",
            "token": "CONCAT('rt_', MD5(CONCAT('rt', i)))",
            "token_checksum": _checksum("rt"),
            "access_token_id": "i",
            "revoked": "NULL",
            "token_family": _md5_uuid("'fam'"),
            "created": "@T - INTERVAL 91 DAY",
            "updated": "@T - INTERVAL 91 DAY",
            **owner,
        },
        where="i % 2 = 0",
    )
    counts["refresh_orphaned"] = _insert(
        cur,
        s.refresh_token,
        max(1, n // 50),
        {
            "id": f"{3 * n} + i",
            "token": "CONCAT('ort_', MD5(CONCAT('ort', i)))",
            "token_checksum": _checksum("ort"),
            "access_token_id": "NULL",
            "revoked": "NULL",
            "token_family": _md5_uuid("'ofam'"),
            "created": "@T - INTERVAL 91 DAY",
            "updated": "@T - INTERVAL 91 DAY",
            **owner,
        },
    )
    counts["grant"] = _insert(
        cur,
        s.grant,
        max(1, n // 8),
        {
            "id": "i",
            "code": "CONCAT('code-', MD5(CONCAT('code', i)))",
            "expires": EXPIRES,
            "redirect_uri": f"CONCAT('https://app', 1 + (i % {apps}), '.example.com/cb')",
            "scope": "'read write'",
            "created": "@T - INTERVAL 91 DAY",
            "updated": "@T - INTERVAL 91 DAY",
            **owner,
        },
    )
    conn.commit()
    cur.execute("SET SESSION foreign_key_checks = 1, unique_checks = 1")
    return counts


def count_rules(conn, schema: Schema, now) -> dict[str, int]:
    """How many rows each rule deletes from the data as it is now."""
    counts = {}
    cur = conn.cursor()
    for rule, (table, predicate) in rule_predicates(schema).items():
        cur.execute(f"SELECT count(*) FROM {table} x WHERE {predicate}", {"now": naive_utc(now)})
        counts[rule] = cur.fetchone()[0]
    return counts


def floor_statements(schema: Schema) -> list[tuple[str, str]]:
    """The floor on MariaDB: per rule, the fewest statements that delete exactly its rows.

    MariaDB has no data-modifying CTE, so a refresh token rule is two statements: one multi-table
    ``UPDATE`` clearing ``source_refresh_token`` of the access tokens refreshed from the doomed
    rows (the models' SET NULL), then the ``DELETE``. A rule may therefore appear twice.
    """
    s = schema
    rules = rule_predicates(schema)
    statements = []
    for rule in ("revoked_refresh_tokens", "orphaned_refresh_tokens"):
        table, predicate = rules[rule]
        statements.append(
            (
                rule,
                f"UPDATE {s.access_token} a JOIN {table} x ON a.source_refresh_token_id = x.id "
                f"SET a.source_refresh_token_id = NULL WHERE {predicate}",
            )
        )
        statements.append((rule, f"DELETE x FROM {table} x WHERE {predicate}"))
    statements.append(
        (
            "access_tokens",
            f"DELETE x FROM {s.access_token} x WHERE x.expires < %(now)s AND NOT EXISTS "
            f"(SELECT 1 FROM {s.refresh_token} r WHERE r.access_token_id = x.id)",
        )
    )
    statements.append(
        (
            "id_tokens",
            f"DELETE x FROM {s.id_token} x WHERE x.expires < %(now)s AND NOT EXISTS "
            f"(SELECT 1 FROM {s.access_token} a WHERE a.id_token_id = x.id)",
        )
    )
    statements.append(("grants", f"DELETE x FROM {s.grant} x WHERE x.expires < %(now)s"))
    return statements
