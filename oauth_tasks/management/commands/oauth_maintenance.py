"""``manage.py oauth_maintenance``: statistics, an audit and a cleanup of the provider's tokens.

    manage.py oauth_maintenance --stats            # applications and tokens, top 10 applications
    manage.py oauth_maintenance --audit            # long-lived access tokens, unused refresh tokens
    manage.py oauth_maintenance --cleanup          # cleartokens' cleanup, with the counts in the report
    manage.py oauth_maintenance --stats --audit --json

Every number comes from a set-based query (aggregates and ``GROUP BY``), never from a loop over
rows, so the command stays quick on large tables. No token value is ever printed: rows are shown by
id, application, user and dates.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Q
from django.utils import timezone

from oauth_provider.cleanup import PHASE_LABELS, clear_expired
from oauth_provider.management.terminal import logger_level
from oauth_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)
from oauth_tasks.conf import maintenance_settings

TOP_APPLICATIONS = 10


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def collect_stats(now: datetime, top: int = TOP_APPLICATIONS) -> dict[str, Any]:
    """Applications (total, active) and each token table (total, active), plus the busiest applications.

    An application is active when it has at least one access token that has not expired.
    """
    access = get_access_token_model().objects
    refresh = get_refresh_token_model().objects
    live_access = Q(expires__gt=now)
    tokens = {
        "access_tokens": access.aggregate(total=Count("pk"), active=Count("pk", filter=live_access)),
        "refresh_tokens": refresh.aggregate(
            total=Count("pk"), active=Count("pk", filter=Q(revoked__isnull=True))
        ),
        "id_tokens": get_id_token_model().objects.aggregate(
            total=Count("pk"), active=Count("pk", filter=live_access)
        ),
        "grants": get_grant_model().objects.aggregate(
            total=Count("pk"), active=Count("pk", filter=live_access)
        ),
    }
    applications = {
        "total": get_application_model().objects.count(),
        "active": access.filter(live_access, application__isnull=False)
        .values("application_id")
        .distinct()
        .count(),
    }
    top_rows = list(
        access.filter(application__isnull=False)
        .values("application_id", "application__name", "application__client_id")
        .annotate(access_tokens=Count("pk"), active_access_tokens=Count("pk", filter=live_access))
        .order_by("-active_access_tokens", "-access_tokens", "application_id")[:top]
    )
    refresh_by_app = {
        row["application_id"]: row
        for row in refresh.filter(application_id__in=[r["application_id"] for r in top_rows])
        .values("application_id")
        .annotate(
            refresh_tokens=Count("pk"), active_refresh_tokens=Count("pk", filter=Q(revoked__isnull=True))
        )
    }
    top_applications = [
        {
            "id": row["application_id"],
            "name": row["application__name"],
            "client_id": row["application__client_id"],
            "access_tokens": row["access_tokens"],
            "active_access_tokens": row["active_access_tokens"],
            "refresh_tokens": refresh_by_app.get(row["application_id"], {}).get("refresh_tokens", 0),
            "active_refresh_tokens": refresh_by_app.get(row["application_id"], {}).get(
                "active_refresh_tokens", 0
            ),
        }
        for row in top_rows
    ]
    return {"applications": applications, "tokens": tokens, "top_applications": top_applications}


def _by_application(queryset, top: int) -> list[dict[str, Any]]:
    return [
        {"id": row["application_id"], "name": row["application__name"], "count": row["count"]}
        for row in queryset.values("application_id", "application__name")
        .annotate(count=Count("pk"))
        .order_by("-count", "application_id")[:top]
    ]


def collect_audit(now: datetime, access_days: int, refresh_days: int, limit: int) -> dict[str, Any]:
    """Tokens that deserve a look: old but still valid access tokens, refresh tokens never used.

    A refresh token was never used when it is not revoked and no access token was minted from it
    (its ``refreshed_access_token`` reverse link is empty).
    """
    old_access = get_access_token_model().objects.filter(
        created__lt=now - timedelta(days=access_days), expires__gt=now
    )
    unused_refresh = get_refresh_token_model().objects.filter(
        revoked__isnull=True,
        refreshed_access_token__isnull=True,
        created__lt=now - timedelta(days=refresh_days),
    )
    return {
        "long_lived_access_tokens": {
            "older_than_days": access_days,
            "count": old_access.count(),
            "by_application": _by_application(old_access, TOP_APPLICATIONS),
            "oldest": [
                {
                    "id": row["id"],
                    "application_id": row["application_id"],
                    "user_id": row["user_id"],
                    "created": _iso(row["created"]),
                    "expires": _iso(row["expires"]),
                    "scope": row["scope"],
                }
                for row in old_access.order_by("created", "id").values(
                    "id", "application_id", "user_id", "created", "expires", "scope"
                )[:limit]
            ],
        },
        "unused_refresh_tokens": {
            "older_than_days": refresh_days,
            "count": unused_refresh.count(),
            "by_application": _by_application(unused_refresh, TOP_APPLICATIONS),
            "oldest": [
                {
                    "id": row["id"],
                    "application_id": row["application_id"],
                    "user_id": row["user_id"],
                    "created": _iso(row["created"]),
                    "access_token_id": row["access_token_id"],
                }
                for row in unused_refresh.order_by("created", "id").values(
                    "id", "application_id", "user_id", "created", "access_token_id"
                )[:limit]
            ],
        },
    }


def run_cleanup() -> dict[str, Any]:
    """``cleartokens``'s cleanup, in process: rows deleted per phase, their total and the time taken."""
    started = time.monotonic()
    with logger_level("oauth_provider", logging.WARNING):  # the counts are in the report
        counts = clear_expired()
    return {
        "deleted": counts,
        "total": sum(counts.values()),
        "seconds": round(time.monotonic() - started, 3),
    }


class Command(BaseCommand):
    help = "Token statistics (--stats), an audit (--audit) and a cleanup (--cleanup); --json for machines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stats", action="store_true", help="applications and tokens (the default)")
        parser.add_argument(
            "--audit", action="store_true", help="long-lived access tokens, unused refresh tokens"
        )
        parser.add_argument(
            "--cleanup", action="store_true", help="delete expired tokens, as cleartokens does"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON document")
        parser.add_argument(
            "--access-days",
            type=int,
            default=None,
            help="audit: access tokens created more than this many days ago "
            "(default OAUTH_MAINTENANCE['AUDIT_ACCESS_TOKEN_AGE_DAYS'])",
        )
        parser.add_argument(
            "--refresh-days",
            type=int,
            default=None,
            help="audit: unused refresh tokens created more than this many days ago "
            "(default OAUTH_MAINTENANCE['AUDIT_UNUSED_REFRESH_TOKEN_DAYS'])",
        )
        parser.add_argument(
            "--limit", type=int, default=20, help="audit: rows listed per finding (default 20)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        want_stats = options["stats"] or not (options["audit"] or options["cleanup"])
        access_days = options["access_days"]
        refresh_days = options["refresh_days"]
        if access_days is None:
            access_days = maintenance_settings.AUDIT_ACCESS_TOKEN_AGE_DAYS
        if refresh_days is None:
            refresh_days = maintenance_settings.AUDIT_UNUSED_REFRESH_TOKEN_DAYS
        for name, value in (
            ("--access-days", access_days),
            ("--refresh-days", refresh_days),
            ("--limit", options["limit"]),
        ):
            if value < 0:
                raise CommandError(f"{name} must not be negative, got {value}")

        now = timezone.now()
        report: dict[str, Any] = {"generated_at": now.isoformat()}
        if options["cleanup"]:
            report["cleanup"] = run_cleanup()
        if want_stats:
            report["stats"] = collect_stats(now)
        if options["audit"]:
            report["audit"] = collect_audit(now, int(access_days), int(refresh_days), options["limit"])

        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        if "cleanup" in report:
            self._write_cleanup(report["cleanup"])
        if "stats" in report:
            self._write_stats(report["stats"])
        if "audit" in report:
            self._write_audit(report["audit"])

    def _write_cleanup(self, cleanup: dict[str, Any]) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING("Cleanup"))
        for phase, count in cleanup["deleted"].items():
            self.stdout.write(f"  {PHASE_LABELS[phase]} deleted: {count}")
        self.stdout.write(f"  total deleted: {cleanup['total']} in {cleanup['seconds']} s")

    def _write_stats(self, stats: dict[str, Any]) -> None:
        apps = stats["applications"]
        self.stdout.write(self.style.MIGRATE_HEADING("Applications"))
        self.stdout.write(
            f"  total {apps['total']}, active {apps['active']} (with an unexpired access token)"
        )
        self.stdout.write(self.style.MIGRATE_HEADING("Tokens"))
        self.stdout.write(f"  {'table':<16} {'total':>10} {'active':>10}")
        for table, counts in stats["tokens"].items():
            self.stdout.write(f"  {table:<16} {counts['total']:>10} {counts['active']:>10}")
        self.stdout.write(
            self.style.MIGRATE_HEADING(f"Top {TOP_APPLICATIONS} applications by active access tokens")
        )
        if not stats["top_applications"]:
            self.stdout.write("  (no access tokens)")
            return
        self.stdout.write(
            f"  {'id':>6} {'name':<24} {'access':>8} {'active':>8} {'refresh':>8} {'active':>8}"
        )
        for row in stats["top_applications"]:
            self.stdout.write(
                f"  {row['id']:>6} {(row['name'] or row['client_id'])[:24]:<24} "
                f"{row['access_tokens']:>8} {row['active_access_tokens']:>8} "
                f"{row['refresh_tokens']:>8} {row['active_refresh_tokens']:>8}"
            )

    def _write_audit(self, audit: dict[str, Any]) -> None:
        old = audit["long_lived_access_tokens"]
        unused = audit["unused_refresh_tokens"]
        self.stdout.write(self.style.MIGRATE_HEADING("Audit"))
        self.stdout.write(
            f"  access tokens older than {old['older_than_days']} days and still valid: {old['count']}"
        )
        for row in old["oldest"]:
            self.stdout.write(
                f"    #{row['id']} application {row['application_id']} user {row['user_id']} "
                f"created {row['created']} expires {row['expires']} scope {row['scope']!r}"
            )
        self.stdout.write(
            f"  refresh tokens never used and older than {unused['older_than_days']} days: {unused['count']}"
        )
        for row in unused["oldest"]:
            self.stdout.write(
                f"    #{row['id']} application {row['application_id']} user {row['user_id']} "
                f"created {row['created']}"
            )
