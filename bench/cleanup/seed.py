"""Seeding and rule counting of the cleanup benchmark, in plain SQL (no Django).

The same shape is written into this project's schema and into django-oauth-toolkit's: the two
differ in table prefix and in a few columns, so every ``NOT NULL`` column the shape does not set is
filled from its type (empty text, false, zero, the seed time), read from ``information_schema``.

Shape for ``n`` access tokens (``i`` runs over 1..n; ``T`` is the seed time):

* ``ceil(n/1000)`` applications, ``ceil(n/100)`` users;
* access token ``i``: 95% expired (between 1 hour and 90 days before ``T``), 5% live (1 to 48
  hours after ``T``);
* a live refresh token (``revoked`` NULL) linked to every even access token (half of them);
* for ``i % 4 == 3`` a revoked refresh token (revoked 1 hour to 30 days before ``T``, no access
  token) that access token ``i`` was refreshed from (its ``source_refresh_token``);
* ``n/50`` orphaned refresh tokens (not revoked, no access token);
* an ID token for every ``i % 5 == 1`` access token, with the same expiry;
* ``n/8`` grants, 95% expired.

With django-oauth-toolkit's default settings that deletes, at 1M access tokens: 250k revoked and
20k orphaned refresh tokens, 470k access tokens (the expired ones no live refresh token keeps),
90k ID tokens (those of deleted access tokens) and 118,750 grants: 948,750 rows. Every margin to
``T`` is at least one hour, so a run started minutes after seeding deletes the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Schema:
    """Table names of one schema (this project's or django-oauth-toolkit's)."""

    prefix: str

    @property
    def application(self) -> str:
        return f"{self.prefix}_application"

    @property
    def access_token(self) -> str:
        return f"{self.prefix}_accesstoken"

    @property
    def refresh_token(self) -> str:
        return f"{self.prefix}_refreshtoken"

    @property
    def id_token(self) -> str:
        return f"{self.prefix}_idtoken"

    @property
    def grant(self) -> str:
        return f"{self.prefix}_grant"

    @property
    def token_tables(self) -> dict[str, str]:
        """The four tables a cleanup deletes from, by the short name used in the tables printed."""
        return {
            "refresh": self.refresh_token,
            "access": self.access_token,
            "id": self.id_token,
            "grant": self.grant,
        }


OURS = Schema("oauth_provider")
DOT = Schema("oauth2_provider")

EXPIRED = "(i * 37) % 100 < 95"
EXPIRES = (
    f"CASE WHEN {EXPIRED} THEN T - interval '1 hour' - (i % 2160) * interval '1 hour' "
    "ELSE T + interval '1 hour' + (i % 48) * interval '1 hour' END"
)


def _filler(data_type: str) -> str:
    if data_type in ("text", "character varying", "character"):
        return "''"
    if data_type == "boolean":
        return "false"
    if data_type in ("integer", "bigint", "smallint", "numeric", "double precision", "real"):
        return "0"
    if data_type.startswith("timestamp"):
        return "T"
    if data_type == "uuid":
        return "gen_random_uuid()"
    if data_type in ("json", "jsonb"):
        return "'{}'"
    raise ValueError(f"no filler for a NOT NULL column of type {data_type}")


def _insert(cur, table: str, count: int, values: dict[str, str], seed_time, where: str = "true") -> int:
    """``INSERT INTO table SELECT ... FROM generate_series(1, count) i WHERE where``.

    NOT NULL columns without a value here are filled from their type.
    """
    cur.execute(
        "SELECT column_name, data_type, column_default FROM information_schema.columns "
        "WHERE table_name = %s AND is_nullable = 'NO' ORDER BY ordinal_position",
        [table],
    )
    columns = dict(values)
    for name, data_type, default in cur.fetchall():
        if name not in columns and default is None:
            columns[name] = _filler(data_type)
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    # Literal percent signs (modulo) are doubled: the query is sent with parameters.
    exprs = sql.SQL(", ").join(sql.SQL(e.replace("%", "%%")) for e in columns.values())
    query = sql.SQL(
        "INSERT INTO {table} ({names}) SELECT {exprs} FROM "
        "(SELECT i, %(t)s::timestamptz AS T FROM generate_series(1, %(count)s::bigint) i) s WHERE {where}"
    ).format(table=sql.Identifier(table), names=names, exprs=exprs, where=sql.SQL(where.replace("%", "%%")))
    cur.execute(query, {"t": seed_time, "count": count})
    return cur.rowcount


def seed(
    conn: psycopg.Connection, schema: Schema, n: int, seed_time, *, source_links: bool = True
) -> dict[str, int]:
    """Write the shape for ``n`` access tokens into an empty, migrated database; rows per table.

    ``source_links=False`` leaves ``source_refresh_token`` NULL everywhere: the revoked refresh
    tokens then have nothing to unlink when they are deleted.
    """
    users = max(1, -(-n // 100))
    apps = max(1, -(-n // 1000))
    s = schema
    counts: dict[str, int] = {}
    with conn.transaction(), conn.cursor() as cur:
        # The rows are consistent by construction: skipping the foreign key triggers (superuser
        # only) saves their deferred checks, most of the seeding time at 1M.
        cur.execute("SET LOCAL session_replication_role = replica")
        counts["users"] = _insert(
            cur,
            "auth_user",
            users,
            {
                "id": "i",
                "password": "'!'",
                "username": "'user' || i",
                "email": "'user' || i || '@example.com'",
                "is_active": "true",
                "date_joined": "T - interval '400 days'",
            },
            seed_time,
        )
        counts["applications"] = _insert(
            cur,
            s.application,
            apps,
            {
                "id": "i",
                "client_id": "'client-' || i",
                "client_secret": "'!'",
                "client_type": "'confidential'",
                "authorization_grant_type": "'authorization-code'",
                "name": "'app ' || i",
                "redirect_uris": "'https://app' || i || '.example.com/cb'",
                "user_id": f"1 + (i % {users})",
                "created": "T - interval '400 days'",
                "updated": "T - interval '400 days'",
            },
            seed_time,
        )
        owner = {"user_id": f"1 + ((i * 7) % {users})", "application_id": f"1 + (i % {apps})"}
        counts["id"] = _insert(
            cur,
            s.id_token,
            n,
            {
                "id": "i",
                "jti": "md5('jti' || i)::uuid",
                "expires": EXPIRES,
                "scope": "'openid read'",
                "created": "T - interval '91 days'",
                "updated": "T - interval '91 days'",
                **owner,
            },
            seed_time,
            where="i % 5 = 1",
        )
        # Revoked refresh tokens (ids above n), the source of access tokens with i % 4 == 3.
        counts["refresh_revoked"] = _insert(
            cur,
            s.refresh_token,
            n,
            {
                "id": f"{n} + i",
                "token": "'rrt_' || md5('rrt' || i)",
                "token_checksum": "encode(sha256(('rrt_' || md5('rrt' || i))::bytea), 'hex')",
                "access_token_id": "NULL",
                "revoked": "T - interval '1 hour' - (i % 720) * interval '1 hour'",
                "token_family": "md5('fam' || i)::uuid",
                "created": "T - interval '91 days'",
                "updated": "T - interval '1 hour'",
                **owner,
            },
            seed_time,
            where="i % 4 = 3",
        )
        counts["access"] = _insert(
            cur,
            s.access_token,
            n,
            {
                "id": "i",
                "token": "'at_' || md5('at' || i)",
                "token_checksum": "encode(sha256(('at_' || md5('at' || i))::bytea), 'hex')",
                "expires": EXPIRES,
                "scope": "'read write'",
                "id_token_id": "CASE WHEN i % 5 = 1 THEN i END",
                "source_refresh_token_id": f"CASE WHEN i % 4 = 3 THEN {n} + i END"
                if source_links
                else "NULL",
                "created": "T - interval '91 days'",
                "updated": "T - interval '91 days'",
                **owner,
            },
            seed_time,
        )
        counts["refresh_live"] = _insert(
            cur,
            s.refresh_token,
            n,
            {
                "id": "i",
                "token": "'rt_' || md5('rt' || i)",
                "token_checksum": "encode(sha256(('rt_' || md5('rt' || i))::bytea), 'hex')",
                "access_token_id": "i",
                "revoked": "NULL",
                "token_family": "md5('fam' || i)::uuid",
                "created": "T - interval '91 days'",
                "updated": "T - interval '91 days'",
                **owner,
            },
            seed_time,
            where="i % 2 = 0",
        )
        counts["refresh_orphaned"] = _insert(
            cur,
            s.refresh_token,
            max(1, n // 50),
            {
                "id": f"{3 * n} + i",
                "token": "'ort_' || md5('ort' || i)",
                "token_checksum": "encode(sha256(('ort_' || md5('ort' || i))::bytea), 'hex')",
                "access_token_id": "NULL",
                "revoked": "NULL",
                "token_family": "md5('ofam' || i)::uuid",
                "created": "T - interval '91 days'",
                "updated": "T - interval '91 days'",
                **owner,
            },
            seed_time,
        )
        counts["grant"] = _insert(
            cur,
            s.grant,
            max(1, n // 8),
            {
                "id": "i",
                "code": "'code-' || md5('code' || i)",
                "expires": EXPIRES,
                "redirect_uri": f"'https://app' || (1 + (i % {apps})) || '.example.com/cb'",
                "scope": "'read write'",
                "created": "T - interval '91 days'",
                "updated": "T - interval '91 days'",
                **owner,
            },
            seed_time,
        )
        for table in ("auth_user", s.application, s.id_token, s.refresh_token, s.access_token, s.grant):
            # Later inserts with Django must not collide with the explicit ids written here.
            cur.execute(
                sql.SQL("SELECT setval(pg_get_serial_sequence({t}, 'id'), (SELECT max(id) FROM {i}))").format(
                    t=sql.Literal(table), i=sql.Identifier(table)
                )
            )
    return counts


def rule_predicates(schema: Schema) -> dict[str, tuple[str, str]]:
    """Each cleanup rule (default settings) as ``(table, SQL predicate on alias x)`` at ``%(now)s``.

    Rule 3 (expired refresh tokens) is off with django-oauth-toolkit's defaults. Rules 4 and 5 are
    written for the state the earlier rules leave behind, so each counts on the seeded data.
    """
    s = schema
    kept_access = (
        f"NOT (a.expires < %(now)s AND NOT EXISTS "
        f"(SELECT 1 FROM {s.refresh_token} r WHERE r.access_token_id = a.id "
        "AND (r.revoked IS NULL OR r.revoked > %(now)s)))"
    )
    return {
        "revoked_refresh_tokens": (s.refresh_token, "x.revoked <= %(now)s"),
        "orphaned_refresh_tokens": (s.refresh_token, "x.revoked IS NULL AND x.access_token_id IS NULL"),
        "access_tokens": (
            s.access_token,
            f"x.expires < %(now)s AND NOT EXISTS (SELECT 1 FROM {s.refresh_token} r "
            "WHERE r.access_token_id = x.id AND (r.revoked IS NULL OR r.revoked > %(now)s))",
        ),
        "id_tokens": (
            s.id_token,
            f"x.expires < %(now)s AND NOT EXISTS (SELECT 1 FROM {s.access_token} a "
            f"WHERE a.id_token_id = x.id AND {kept_access})",
        ),
        "grants": (s.grant, "x.expires < %(now)s"),
    }


def count_rules(conn: psycopg.Connection, schema: Schema, now) -> dict[str, int]:
    """How many rows each rule deletes from the data as it is now."""
    counts = {}
    with conn.cursor() as cur:
        for rule, (table, predicate) in rule_predicates(schema).items():
            cur.execute(f"SELECT count(*) FROM {table} x WHERE {predicate}", {"now": now})
            counts[rule] = cur.fetchone()[0]
    return counts


def count_tables(conn: psycopg.Connection, schema: Schema) -> dict[str, int]:
    with conn.cursor() as cur:
        counts = {}
        for short, table in schema.token_tables.items():
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[short] = cur.fetchone()[0]
        return counts


def floor_statements(schema: Schema) -> list[tuple[str, str]]:
    """The floor: one statement per rule deleting exactly its rows, links set NULL in the same one.

    A refresh token's deletion clears ``source_refresh_token`` of the access tokens refreshed from
    it (the models' SET NULL), in a data-modifying CTE of the same statement. Rule 4 only deletes
    access tokens no refresh token points at, and rule 5 only ID tokens no access token points at,
    so neither has a link to clear.
    """
    s = schema
    rules = rule_predicates(schema)
    statements = []
    for rule in ("revoked_refresh_tokens", "orphaned_refresh_tokens"):
        table, predicate = rules[rule]
        statements.append(
            (
                rule,
                f"WITH d AS (DELETE FROM {table} x WHERE {predicate} RETURNING x.id), "
                f"u AS (UPDATE {s.access_token} a SET source_refresh_token_id = NULL FROM d "
                "WHERE a.source_refresh_token_id = d.id) SELECT count(*) FROM d",
            )
        )
    statements.append(
        (
            "access_tokens",
            f"DELETE FROM {s.access_token} x WHERE x.expires < %(now)s AND NOT EXISTS "
            f"(SELECT 1 FROM {s.refresh_token} r WHERE r.access_token_id = x.id)",
        )
    )
    statements.append(
        (
            "id_tokens",
            f"DELETE FROM {s.id_token} x WHERE x.expires < %(now)s AND NOT EXISTS "
            f"(SELECT 1 FROM {s.access_token} a WHERE a.id_token_id = x.id)",
        )
    )
    statements.append(("grants", f"DELETE FROM {s.grant} x WHERE x.expires < %(now)s"))
    return statements
