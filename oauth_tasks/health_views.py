"""The health endpoint: ``GET /maintenance/health/``.

200 with ``"status": "healthy"`` or ``"warning"``, 503 with ``"unhealthy"`` (database or broker not
reachable), so a load balancer or a container health check reads the code and a person reads the
JSON. ``?check=database,broker`` runs only the named checks (a liveness probe that must not depend
on the token counts). Anonymous callers get the statuses only, unless ``HEALTH_PUBLIC_DETAILS`` is
on; staff users always get the numbers.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .conf import maintenance_settings
from .health import CHECKS, UNHEALTHY, run_health_checks


def _statuses_only(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": report["status"],
        "time": report["time"],
        # Why a check is not ok, as a code that carries no number (see docs/operations.md).
        "checks": {
            name: {key: check[key] for key in ("status", "reason") if key in check}
            for name, check in report["checks"].items()
        },
    }


def _is_staff(request: HttpRequest) -> bool:
    """Whether the caller is staff; an unreachable database (sessions, users) means anonymous."""
    try:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_staff)
    except DatabaseError:
        return False


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    requested = request.GET.get("check")
    names = None
    if requested:
        names = [name.strip() for name in requested.split(",") if name.strip()]
        unknown = sorted(set(names) - set(CHECKS))
        if unknown:
            return JsonResponse(
                {"error": f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}"},
                status=400,
            )
    report = run_health_checks(names)
    if not (maintenance_settings.HEALTH_PUBLIC_DETAILS or _is_staff(request)):
        report = _statuses_only(report)
    return JsonResponse(report, status=503 if report["status"] == UNHEALTHY else 200)
