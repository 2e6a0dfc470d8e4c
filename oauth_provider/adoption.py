"""Adoption of a django-oauth-toolkit 3.x installation: its ``oauth2_provider_*`` rows become ours.

The provider decides *what* one batch of an adoption does; the ``adopt_dot`` job of the
maintenance worker decides when batches run. DOT's tables are read with raw SQL only, so DOT need
not be installed (nor importable) once its tables exist in the same database.

Every row keeps its primary key, its relations (``user``, ``application``, ``access_token``,
``source_refresh_token``, ``id_token``), its token string and checksum, its hashed client secret
(Django's hasher format is the same) and its ``created``/``updated``/``expires``/``revoked``
times, so every token a client holds keeps working after the switch.

A batch covers one window of primary keys, ``(lo, hi]`` with ``hi - lo = batch_size``: it reads at
most ``batch_size`` source rows whatever the filters, and one ``INSERT ... SELECT`` writes them,
upserting on the primary key. Running a batch again changes nothing more, which is what makes an
adoption resumable and lets it run again to copy what DOT wrote since (a *catch-up*: new ids above
the previous run's high-water mark, rows whose ``updated`` moved since the previous run, and rows
DOT deleted meanwhile, pruned here). An upsert never overwrites a row this provider changed more
recently than DOT did, so a token revoked here after the switch stays revoked.

Rows that the cleanup would delete at once (expired and revoked, by the same rules as
``clear_expired()``) are skipped unless ``skip_dead`` is off; a row already adopted is always kept
in step with DOT, dead or not, so a revocation on DOT's side reaches this provider.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections, router

from .cleanup import CleanupPlan
from .models import (
    AbstractApplication,
    AbstractGrant,
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

DEFAULT_SOURCE_PREFIX = "oauth2_provider"

#: The tables in copy order (a table only refers to tables before it, or to tables relinked later).
APPLICATIONS = "applications"
GRANTS = "grants"
ID_TOKENS = "id_tokens"
ACCESS_TOKENS = "access_tokens"
REFRESH_TOKENS = "refresh_tokens"
TABLES: tuple[str, ...] = (APPLICATIONS, GRANTS, ID_TOKENS, ACCESS_TOKENS, REFRESH_TOKENS)
#: Tables a catch-up prunes, in an order that never breaks a foreign key.
PRUNED_TABLES: tuple[str, ...] = (REFRESH_TOKENS, ACCESS_TOKENS, ID_TOKENS, GRANTS)

_SOURCE_SUFFIX = {
    APPLICATIONS: "application",
    GRANTS: "grant",
    ID_TOKENS: "idtoken",
    ACCESS_TOKENS: "accesstoken",
    REFRESH_TOKENS: "refreshtoken",
}

#: Columns copied as they are, per table (both schemas spell them the same way).
_COLUMNS = {
    APPLICATIONS: (
        "id client_id user_id redirect_uris post_logout_redirect_uris client_type authorization_grant_type "
        "client_secret hash_client_secret name skip_authorization created updated algorithm allowed_origins"
    ).split(),
    GRANTS: (
        "id user_id code application_id expires redirect_uri scope created updated code_challenge "
        "code_challenge_method nonce claims"
    ).split(),
    ID_TOKENS: "id user_id jti application_id expires scope created updated".split(),
    ACCESS_TOKENS: "id user_id token token_checksum application_id expires scope created updated".split(),
    REFRESH_TOKENS: (
        "id user_id token token_checksum application_id token_family created updated revoked"
    ).split(),
}

#: Links copied only when the row they point at is in this provider's table already (else NULL;
#: the ``relink`` step sets ``source_refresh_token`` once the refresh tokens are in).
_GUARDED_LINKS = {
    ACCESS_TOKENS: {"id_token_id": ID_TOKENS, "source_refresh_token_id": REFRESH_TOKENS},
    REFRESH_TOKENS: {"access_token_id": ACCESS_TOKENS},
}

_MODEL_GETTERS = {
    APPLICATIONS: get_application_model,
    GRANTS: get_grant_model,
    ID_TOKENS: get_id_token_model,
    ACCESS_TOKENS: get_access_token_model,
    REFRESH_TOKENS: get_refresh_token_model,
}

#: Problems that make the copy of a row fail or change its meaning: a real batch refuses them.
BLOCKING = "blocking"
#: Problems a real run copies anyway (the dry run lists them so the operator decides first).
WARNING = "warning"


class AdoptionError(Exception):
    """The source tables are missing, or a batch met rows this provider cannot hold."""


def _quote(name: str, using: str) -> str:
    return connections[using].ops.quote_name(name)


def target_table(table: str) -> str:
    return _MODEL_GETTERS[table]()._meta.db_table


def source_table(table: str, prefix: str = DEFAULT_SOURCE_PREFIX) -> str:
    return f"{prefix}_{_SOURCE_SUFFIX[table]}"


def database_alias() -> str:
    return router.db_for_write(get_access_token_model())


def missing_source_tables(prefix: str = DEFAULT_SOURCE_PREFIX, using: str | None = None) -> list[str]:
    """The DOT tables adoption reads that do not exist in the database (empty: all there)."""
    using = using or database_alias()
    with connections[using].cursor() as cursor:
        existing = set(connections[using].introspection.table_names(cursor))
    return [source_table(t, prefix) for t in TABLES if source_table(t, prefix) not in existing]


def source_columns(table: str, prefix: str, using: str) -> set[str]:
    connection = connections[using]
    with connection.cursor() as cursor:
        return {
            column.name
            for column in connection.introspection.get_table_description(cursor, source_table(table, prefix))
        }


@dataclass
class Context:
    """What every batch of one run needs: where DOT's tables are, the run's frozen ``now``, and
    what the previous adoption already copied (``high_water`` ids and ``since``, for a catch-up)."""

    now: datetime
    prefix: str = DEFAULT_SOURCE_PREFIX
    skip_dead: bool = True
    since: datetime | None = None
    high_water: dict[str, int] = field(default_factory=dict)
    using: str = ""

    def __post_init__(self) -> None:
        self.using = self.using or database_alias()
        self.plan = CleanupPlan.from_settings(self.now)

    @property
    def vendor(self) -> str:
        return connections[self.using].vendor

    def q(self, name: str) -> str:
        return _quote(name, self.using)

    def src(self, table: str) -> str:
        return self.q(source_table(table, self.prefix))

    def dst(self, table: str) -> str:
        return self.q(target_table(table))

    def dt(self, value: datetime) -> Any:
        return connections[self.using].ops.adapt_datetimefield_value(value)


# --------------------------------------------------------------------------------------------
# Which source rows the cleanup would delete at once (the rules of oauth_provider.cleanup, in SQL)


def _dead_refresh(ctx: Context, r: str, a: str) -> tuple[str, list]:
    plan, parts, params = ctx.plan, [f"({r}.revoked IS NULL AND {r}.access_token_id IS NULL)"], []
    if plan.refresh_revoked_before is not None:
        parts.append(f"({r}.revoked IS NOT NULL AND {r}.revoked <= %s)")
        params.append(ctx.dt(plan.refresh_revoked_before))
    if plan.refresh_expired_before is not None:
        parts.append(
            f"({r}.revoked IS NULL AND EXISTS (SELECT 1 FROM {ctx.src(ACCESS_TOKENS)} {a} "
            f"WHERE {a}.id = {r}.access_token_id AND {a}.expires <= %s))"
        )
        params.append(ctx.dt(plan.refresh_expired_before))
    return "(" + " OR ".join(parts) + ")", params


def _dead_access(ctx: Context, a: str, depth: int = 0) -> tuple[str, list]:
    r, a2 = f"r{depth}", f"a{depth}x"
    refresh_dead, params = _dead_refresh(ctx, r, a2)
    sql = (
        f"({a}.expires < %s AND NOT EXISTS (SELECT 1 FROM {ctx.src(REFRESH_TOKENS)} {r} "
        f"WHERE {r}.access_token_id = {a}.id AND NOT {refresh_dead}))"
    )
    return sql, [ctx.dt(ctx.plan.now), *params]


def _dead_id_token(ctx: Context, i: str) -> tuple[str, list]:
    access_dead, params = _dead_access(ctx, "ai", depth=1)
    sql = (
        f"({i}.expires < %s AND NOT EXISTS (SELECT 1 FROM {ctx.src(ACCESS_TOKENS)} ai "
        f"WHERE ai.id_token_id = {i}.id AND NOT {access_dead}))"
    )
    return sql, [ctx.dt(ctx.plan.now), *params]


def dead_predicate(ctx: Context, table: str, alias: str = "s") -> tuple[str, list]:
    """SQL true for a source row the cleanup would delete at once; ``("1=0", [])`` for none."""
    if table == REFRESH_TOKENS:
        return _dead_refresh(ctx, alias, "ax")
    if table == ACCESS_TOKENS:
        return _dead_access(ctx, alias)
    if table == ID_TOKENS:
        return _dead_id_token(ctx, alias)
    if table == GRANTS:
        return f"({alias}.expires < %s)", [ctx.dt(ctx.plan.now)]
    return "(1=0)", []


def _selection(ctx: Context, table: str, lo: int, hi: int, changed: bool = False) -> tuple[str, list]:
    """WHERE clause (on source alias ``s``) of the rows one window copies.

    ``changed``: a catch-up's second pass over the ids at or below the previous run's high-water
    mark. Those rows were copied (or skipped as dead) already: they are updated when DOT changed
    them since, and never inserted again, so a token this provider deleted (revoked, cleaned up)
    does not come back.
    """
    where, params = ["s.id > %s AND s.id <= %s"], [lo, hi]
    if changed:
        where.append(f"s.updated >= %s AND EXISTS (SELECT 1 FROM {ctx.dst(table)} t2 WHERE t2.id = s.id)")
        params.append(ctx.dt(ctx.since))
    if ctx.skip_dead and table != APPLICATIONS:
        dead, dead_params = dead_predicate(ctx, table)
        where.append(f"(NOT {dead} OR EXISTS (SELECT 1 FROM {ctx.dst(table)} t0 WHERE t0.id = s.id))")
        params += dead_params
    return " AND ".join(where), params


def catch_up_mark(ctx: Context, table: str) -> int | None:
    """The previous run's high-water mark of ``table`` on a catch-up, else None."""
    return ctx.high_water.get(table) if ctx.since is not None else None


# --------------------------------------------------------------------------------------------
# Problems: rows this provider cannot hold as they are


def _as_text(ctx: Context, expression: str) -> str:
    """A JSON column as text (PostgreSQL's ``jsonb``, MariaDB's checked ``longtext``, SQLite's text)."""
    return {"postgresql": f"{expression}::text", "mysql": f"CAST({expression} AS CHAR)"}.get(
        ctx.vendor, expression
    )


def _problem_checks(ctx: Context, table: str) -> list[tuple[str, str, str, list]]:
    """``(severity, description, SQL condition on s, params)`` for the table."""
    columns = source_columns(table, ctx.prefix, ctx.using)
    user_table = ctx.q(get_user_model()._meta.db_table)
    checks: list[tuple[str, str, str, list]] = []
    if "user_id" in columns:
        checks.append(
            (
                BLOCKING,
                "user_id names no user of this project",
                f"s.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {user_table} u WHERE u.id = s.user_id)",
                [],
            )
        )
    model = _MODEL_GETTERS[table]()
    if table == APPLICATIONS:
        limit = model._meta.get_field("client_id").max_length
        choices = {
            "client_type": [c for c, _ in AbstractApplication.CLIENT_TYPES],
            "authorization_grant_type": [c for c, _ in AbstractApplication.GRANT_TYPES],
            "algorithm": [c for c, _ in AbstractApplication.ALGORITHM_TYPES],
        }
        checks.append(
            (BLOCKING, f"client_id longer than {limit} characters", "LENGTH(s.client_id) > %s", [limit])
        )
        for column, allowed in choices.items():
            marks = ", ".join(["%s"] * len(allowed))
            label = "unknown algorithm" if column == "algorithm" else f"unknown {column}"
            checks.append((BLOCKING, label, f"s.{column} NOT IN ({marks})", list(allowed)))
        if "registration_source" in columns:
            checks.append(
                (
                    WARNING,
                    "registered by DCR or CIMD: adopted as a manually registered application",
                    "s.registration_source <> %s",
                    ["manual"],
                )
            )
        unique = "client_id"
    elif table == GRANTS:
        allowed = [c for c, _ in AbstractGrant.CODE_CHALLENGE_METHODS] + [""]
        marks = ", ".join(["%s"] * len(allowed))
        checks.append(
            (BLOCKING, "unknown code_challenge_method", f"s.code_challenge_method NOT IN ({marks})", allowed)
        )
        unique = "code"
    elif table == ID_TOKENS:
        unique = "jti"
    else:
        unique = "token_checksum" if table == ACCESS_TOKENS else ""
        if "token_checksum" not in columns:
            checks.append((BLOCKING, "no token_checksum column (DOT older than 3.x)", "1=1", []))
    if "resource" in columns:
        checks.append(
            (
                WARNING,
                "bound to RFC 8707 resource indicators, which this provider does not check",
                f"s.resource IS NOT NULL AND {_as_text(ctx, 's.resource')} NOT IN ('', '[]', 'null')",
                [],
            )
        )
    if unique:
        checks.append(
            (
                BLOCKING,
                f"{unique} already held by another row of this provider",
                f"EXISTS (SELECT 1 FROM {ctx.dst(table)} t1 "
                f"WHERE t1.{unique} = s.{unique} AND t1.id <> s.id)",
                [],
            )
        )
    return checks


def window_problems(
    ctx: Context, table: str, lo: int, hi: int, *, changed: bool = False, examples: int = 5
) -> list[dict[str, Any]]:
    """The problems of the rows one window would copy: severity, what, count and a few source ids."""
    where, params = _selection(ctx, table, lo, hi, changed)
    found = []
    with connections[ctx.using].cursor() as cursor:
        for severity, what, condition, extra in _problem_checks(ctx, table):
            cursor.execute(
                f"SELECT s.id FROM {ctx.src(table)} s WHERE {where} AND ({condition}) ORDER BY s.id",
                [*params, *extra],
            )
            ids = [row[0] for row in cursor.fetchall()]
            if ids:
                found.append(
                    {
                        "table": table,
                        "severity": severity,
                        "problem": what,
                        "count": len(ids),
                        "ids": ids[:examples],
                    }
                )
    return found


# --------------------------------------------------------------------------------------------
# Batches


@dataclass
class WindowResult:
    """What one window did: rows copied (or, on a dry run, that would be), and problems found."""

    processed: int
    cursor: int
    done: bool
    problems: list[dict[str, Any]] = field(default_factory=list)


def source_bounds(ctx: Context, table: str) -> tuple[int | None, int | None]:
    with connections[ctx.using].cursor() as cursor:
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM {ctx.src(table)}")
        return cursor.fetchone()


def target_bounds(ctx: Context, table: str) -> tuple[int | None, int | None]:
    with connections[ctx.using].cursor() as cursor:
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM {ctx.dst(table)}")
        return cursor.fetchone()


def _window(
    first: int | None, last: int | None, cursor: int | None, batch_size: int
) -> tuple[int, int] | None:
    """The key window ``(lo, hi]`` after ``cursor``, or None when ``cursor`` is past ``last``."""
    if first is None or last is None:
        return None
    lo = first - 1 if cursor is None else int(cursor)
    if lo >= last:
        return None
    return lo, lo + batch_size


def _upsert_sql(ctx: Context, table: str, columns: Sequence[str], select: str) -> str:
    dst = ctx.dst(table)
    names = ", ".join(ctx.q(c) for c in columns)
    changed = [c for c in columns if c not in ("id", "updated")] + ["updated"]
    if ctx.vendor == "mysql":
        newer = f"{dst}.updated < VALUES(updated)"
        sets = ", ".join(
            f"{dst}.{ctx.q(c)} = IF({newer}, VALUES({ctx.q(c)}), {dst}.{ctx.q(c)})" for c in changed
        )
        return f"INSERT INTO {dst} ({names}) {select} ON DUPLICATE KEY UPDATE {sets}"
    sets = ", ".join(f"{ctx.q(c)} = EXCLUDED.{ctx.q(c)}" for c in changed)
    return (
        f"INSERT INTO {dst} ({names}) {select} "
        f"ON CONFLICT (id) DO UPDATE SET {sets} WHERE {dst}.updated < EXCLUDED.updated"
    )


def _select_expressions(ctx: Context, table: str, columns: set[str]) -> tuple[list[str], list[str]]:
    names, expressions = [], []
    for column in _COLUMNS[table]:
        names.append(column)
        if column == "token_checksum" and "token_checksum" not in columns:
            expressions.append(_sql_sha256(ctx, "s.token"))
        else:
            expressions.append(f"s.{ctx.q(column)}")
    for column, target in _GUARDED_LINKS.get(table, {}).items():
        names.append(column)
        expressions.append(
            f"CASE WHEN EXISTS (SELECT 1 FROM {ctx.dst(target)} g WHERE g.id = s.{column}) "
            f"THEN s.{column} END"
        )
    return names, expressions


def _sql_sha256(ctx: Context, expression: str) -> str:
    if ctx.vendor == "postgresql":
        return f"encode(sha256(convert_to({expression}, 'UTF8')), 'hex')"
    if ctx.vendor == "mysql":
        return f"SHA2({expression}, 256)"
    connection = connections[ctx.using]
    connection.ensure_connection()
    connection.connection.create_function(
        "oauth_sha256", 1, lambda v: hashlib.sha256(v.encode()).hexdigest() if v is not None else None
    )
    return f"oauth_sha256({expression})"


def copy_window(
    ctx: Context, table: str, cursor: int | None, batch_size: int, *, dry_run: bool, changed: bool = False
) -> WindowResult:
    """Copy (upsert) the source rows of the next key window of ``table``; count them on a dry run.

    On a catch-up, the first pass (``changed=False``) only walks the ids above the previous run's
    high-water mark, so tokens DOT issued since are here within seconds whatever the table's size;
    the second pass (``changed=True``) walks the ids below it for rows DOT updated. A real batch
    refuses rows with a blocking problem (nothing of the window is written); the dry run reports
    every problem. Call inside a transaction.
    """
    first, last = source_bounds(ctx, table)
    mark = catch_up_mark(ctx, table)
    if changed:
        if mark is None or last is None:
            return WindowResult(0, int(cursor) if cursor is not None else 0, True)
        last = min(last, mark)
    elif mark is not None and first is not None:
        first = max(first, mark + 1)
    window = _window(first, last, cursor, batch_size)
    if window is None:
        return WindowResult(0, int(cursor) if cursor is not None else 0, True)
    lo, hi = window
    problems = window_problems(ctx, table, lo, hi, changed=changed)
    where, params = _selection(ctx, table, lo, hi, changed)
    if dry_run:
        with connections[ctx.using].cursor() as db:
            db.execute(f"SELECT COUNT(*) FROM {ctx.src(table)} s WHERE {where}", params)
            processed = db.fetchone()[0]
        return WindowResult(processed, hi, hi >= last, problems)
    blocking = [p for p in problems if p["severity"] == BLOCKING]
    if blocking:
        first_problem = blocking[0]
        raise AdoptionError(
            f"{first_problem['count']} row(s) of {source_table(table, ctx.prefix)} "
            f"between ids {lo + 1} and {hi}: "
            f"{first_problem['problem']} (ids {first_problem['ids']}); nothing of this batch was copied. "
            "A dry run lists every problem."
        )
    names, expressions = _select_expressions(ctx, table, source_columns(table, ctx.prefix, ctx.using))
    select = f"SELECT {', '.join(expressions)} FROM {ctx.src(table)} s WHERE {where}"
    sql = _upsert_sql(ctx, table, names, select)
    if table == ACCESS_TOKENS and ctx.vendor != "mysql":
        # Never drop a link a previous run or the relink step already set.
        link = ctx.q("source_refresh_token_id")
        sql = sql.replace(
            f"{link} = EXCLUDED.{link}", f"{link} = COALESCE(EXCLUDED.{link}, {ctx.dst(table)}.{link})"
        )
    with connections[ctx.using].cursor() as db:
        db.execute(sql, params)
        # MySQL counts an updated row twice and an unchanged one as 0: count the window instead.
        db.execute(f"SELECT COUNT(*) FROM {ctx.src(table)} s WHERE {where}", params)
        processed = db.fetchone()[0]
    return WindowResult(processed, hi, hi >= last, problems)


def relink_window(ctx: Context, cursor: int | None, batch_size: int, *, dry_run: bool) -> WindowResult:
    """Set ``source_refresh_token`` of adopted access tokens whose refresh token is now adopted too."""
    first, last = target_bounds(ctx, ACCESS_TOKENS)
    window = _window(first, last, cursor, batch_size)
    if window is None:
        return WindowResult(0, int(cursor) if cursor is not None else 0, True)
    lo, hi = window
    dst, src, refresh = ctx.dst(ACCESS_TOKENS), ctx.src(ACCESS_TOKENS), ctx.dst(REFRESH_TOKENS)
    condition = (
        f"{dst}.id > %s AND {dst}.id <= %s AND {dst}.source_refresh_token_id IS NULL AND EXISTS "
        f"(SELECT 1 FROM {src} s JOIN {refresh} r ON r.id = s.source_refresh_token_id WHERE s.id = {dst}.id)"
    )
    with connections[ctx.using].cursor() as db:
        if dry_run:
            db.execute(f"SELECT COUNT(*) FROM {dst} WHERE {condition}", [lo, hi])
            processed = db.fetchone()[0]
        else:
            db.execute(
                f"UPDATE {dst} SET source_refresh_token_id = "
                f"(SELECT s.source_refresh_token_id FROM {src} s WHERE s.id = {dst}.id) WHERE {condition}",
                [lo, hi],
            )
            processed = db.rowcount
    return WindowResult(processed, hi, hi >= last)


def prune_window(
    ctx: Context, table: str, cursor: int | None, batch_size: int, *, dry_run: bool
) -> WindowResult:
    """Delete adopted rows that DOT deleted since they were copied (a revoked access token, ...).

    Only ids at or below DOT's largest id are looked at: this provider's own rows are numbered
    above it (the sequences are reset past DOT's ids with room to spare).
    """
    _, source_last = source_bounds(ctx, table)
    first, last = target_bounds(ctx, table)
    if source_last is None or last is None:
        return WindowResult(0, int(cursor) if cursor is not None else 0, True)
    last = min(last, source_last)
    window = _window(first, last, cursor, batch_size)
    if window is None:
        return WindowResult(0, int(cursor) if cursor is not None else 0, True)
    lo, hi = window
    dst, src = ctx.dst(table), ctx.src(table)
    gone = f"{dst}.id > %s AND {dst}.id <= %s AND NOT EXISTS (SELECT 1 FROM {src} s WHERE s.id = {dst}.id)"
    if table == ID_TOKENS:
        gone += f" AND NOT EXISTS (SELECT 1 FROM {ctx.dst(ACCESS_TOKENS)} a WHERE a.id_token_id = {dst}.id)"
    params = [lo, hi]
    with connections[ctx.using].cursor() as db:
        if dry_run:
            db.execute(f"SELECT COUNT(*) FROM {dst} WHERE {gone}", params)
            return WindowResult(db.fetchone()[0], hi, hi >= last)
        # The SET NULL links towards the rows about to go, then the rows themselves.
        links = {
            REFRESH_TOKENS: (ACCESS_TOKENS, "source_refresh_token_id"),
            ACCESS_TOKENS: (REFRESH_TOKENS, "access_token_id"),
        }
        if table in links:
            other, column = links[table]
            other_table = ctx.dst(other)
            db.execute(
                f"UPDATE {other_table} SET {column} = NULL "
                f"WHERE {column} > %s AND {column} <= %s AND NOT EXISTS "
                f"(SELECT 1 FROM {src} s WHERE s.id = {other_table}.{column})",
                params,
            )
        db.execute(f"DELETE FROM {dst} WHERE {gone}", params)
        processed = db.rowcount
    return WindowResult(processed, hi, hi >= last)


def reset_sequences(ctx: Context, headroom: int) -> dict[str, int]:
    """Number this provider's next rows past every adopted id, plus ``headroom``.

    The headroom is for the ids DOT keeps issuing between the last copy and the switch: a
    catch-up after the switch copies them without meeting this provider's own new rows.
    """
    connection = connections[ctx.using]
    next_ids = {}
    with connection.cursor() as db:
        for table in TABLES:
            _, source_last = source_bounds(ctx, table)
            _, target_last = target_bounds(ctx, table)
            next_id = max(source_last or 0, target_last or 0) + headroom + 1
            name = target_table(table)
            if ctx.vendor == "postgresql":
                db.execute("SELECT pg_get_serial_sequence(%s, 'id')", [name])
                sequence = db.fetchone()[0]
                db.execute(f"SELECT last_value FROM {sequence}")
                next_id = max(next_id, db.fetchone()[0] + 1)
                db.execute("SELECT setval(%s, %s, false)", [sequence, next_id])
            elif ctx.vendor == "mysql":
                db.execute(f"ALTER TABLE {ctx.q(name)} AUTO_INCREMENT = {int(next_id)}")
            elif ctx.vendor == "sqlite":
                db.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [name])
                row = db.fetchone()
                if row is None:
                    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [name, next_id - 1])
                else:
                    next_id = max(next_id, row[0] + 1)
                    db.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s", [next_id - 1, name])
            next_ids[table] = next_id
    return next_ids


# --------------------------------------------------------------------------------------------
# Verification


def verify_window(
    ctx: Context, table: str, cursor: int | None, batch_size: int
) -> tuple[WindowResult, dict[str, int]]:
    """Counts over one window: source rows, rows that should be here, rows missing, rows extra."""
    source_first, source_last = source_bounds(ctx, table)
    window = _window(source_first, source_last, cursor, batch_size)
    counts = {"source": 0, "expected": 0, "missing": 0, "extra": 0}
    if window is None:
        return WindowResult(0, int(cursor) if cursor is not None else 0, True), counts
    lo, hi = window
    src, dst = ctx.src(table), ctx.dst(table)
    here = f"EXISTS (SELECT 1 FROM {dst} t WHERE t.id = s.id)"
    expected, params = "(1=1)", []
    if ctx.skip_dead and table != APPLICATIONS:
        dead, params = dead_predicate(ctx, table)
        expected = f"(NOT {dead} OR {here})"
    mark = ctx.high_water.get(table)
    if mark is not None:
        # Rows of earlier runs absent here were skipped then or deleted here since: not missing.
        expected = f"({expected} AND (s.id > {int(mark)} OR {here}))"
    with connections[ctx.using].cursor() as db:
        db.execute(
            f"SELECT COUNT(*), SUM(CASE WHEN {expected} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {expected} AND NOT {here} THEN 1 ELSE 0 END) "
            f"FROM {src} s WHERE s.id > %s AND s.id <= %s",
            [*params, *params, lo, hi],
        )
        # SUM() is a DECIMAL on MySQL and MariaDB, which JSON (the run's counts) cannot hold.
        total, wanted, missing = (int(value or 0) for value in db.fetchone())
        db.execute(
            f"SELECT COUNT(*) FROM {dst} t WHERE t.id > %s AND t.id <= %s "
            f"AND NOT EXISTS (SELECT 1 FROM {src} s WHERE s.id = t.id)",
            [lo, min(hi, source_last)],
        )
        extra = db.fetchone()[0]
    counts.update(source=total or 0, expected=wanted or 0, missing=missing or 0, extra=extra)
    return WindowResult(total or 0, hi, hi >= source_last), counts


def verify_sample(ctx: Context, table: str, size: int) -> dict[str, Any]:
    """Compare up to ``size`` rows spread over the table, column by column, and check each adopted
    token's checksum against its token string."""
    first, last = source_bounds(ctx, table)
    if first is None:
        return {"checked": 0, "newer_here": 0, "mismatched": 0, "ids": []}
    columns = [c for c in _COLUMNS[table]] + list(_GUARDED_LINKS.get(table, {}))
    if table == ACCESS_TOKENS:
        columns.remove("source_refresh_token_id")  # may lag until the relink step
    if "token_checksum" in columns and "token_checksum" not in source_columns(table, ctx.prefix, ctx.using):
        columns.remove("token_checksum")
    names = ", ".join(ctx.q(c) for c in columns)
    step = max(1, (last - first) // max(1, size))
    checked, newer_here, mismatched = 0, 0, []
    with connections[ctx.using].cursor() as db:
        for point in range(first, last + 1, step):
            db.execute(f"SELECT {names} FROM {ctx.src(table)} WHERE id >= %s ORDER BY id LIMIT 1", [point])
            source_row = db.fetchone()
            if source_row is None:
                continue
            db.execute(f"SELECT {names} FROM {ctx.dst(table)} WHERE id = %s", [source_row[0]])
            target_row = db.fetchone()
            if target_row is None:
                continue  # skipped as dead, or missing: the counts say which
            row = dict(zip(columns, target_row, strict=True))
            if row["updated"] > dict(zip(columns, source_row, strict=True))["updated"]:
                newer_here += 1  # changed by this provider since (revoked, refreshed): not DOT's any more
                continue
            checked += 1
            same = list(source_row) == list(target_row)
            if "token" in row:
                db.execute(f"SELECT token_checksum FROM {ctx.dst(table)} WHERE id = %s", [source_row[0]])
                same = same and db.fetchone()[0] == hashlib.sha256(row["token"].encode()).hexdigest()
            if not same:
                mismatched.append(source_row[0])
            if checked >= size:
                break
    return {
        "checked": checked,
        "newer_here": newer_here,
        "mismatched": len(mismatched),
        "ids": mismatched[:20],
    }


def adopted_rows(ctx: Context) -> dict[str, int]:
    """Rows this provider's tables hold, per table (to refuse a first adoption into used tables)."""
    counts = {}
    with connections[ctx.using].cursor() as db:
        for table in TABLES:
            db.execute(f"SELECT COUNT(*) FROM {ctx.dst(table)}")
            counts[table] = db.fetchone()[0]
    return counts
