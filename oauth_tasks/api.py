"""The dispatch API: list job kinds, start runs, watch, cancel and resume them, as JSON.

Mounted under ``/maintenance/api/`` (see ``oauth_tasks/urls.py``). Who may call it:

* a staff user logged in by session, with CSRF enforced on ``POST`` (the admin's session cookie is
  otherwise something a third-party page could ride on);
* or a bearer token of this provider carrying the ``maintenance`` scope, issued to an active staff
  user (a client credentials token has no user and is refused).

Each route then needs one Django permission on ``MaintenanceRun``: ``view`` to read, ``add`` to
start a run, ``change`` to cancel or resume one. No credentials is 401 with ``WWW-Authenticate``;
anything else refused is 403. Every refusal is logged on ``oauth_tasks.api`` (never a token).
Bad input is 400 with the offending field named, and nothing is created.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation, ValidationError
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from oauth_provider.backends import OAuth2Backend, bearer_token_from_header

from . import engine
from .jobs import all_jobs
from .models import MaintenanceRun, RunStatus, attach_lane_counts

logger = logging.getLogger(__name__)

#: The scope a bearer token needs for this API.
MAINTENANCE_SCOPE = "maintenance"
#: The permission each action needs (app label ``oauth_tasks``).
PERMISSIONS = {
    "view": "oauth_tasks.view_maintenancerun",
    "start": "oauth_tasks.add_maintenancerun",
    "change": "oauth_tasks.change_maintenancerun",
}
#: Fields a start request may carry.
START_FIELDS = ("kind", "params", "dry_run", "batch_size", "interval", "pacing", "lanes")
MAX_BODY_BYTES = 64 * 1024
#: Objects and lists nested deeper than this in a start request's body are refused.
MAX_BODY_DEPTH = 20
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 200


@dataclass(frozen=True)
class Caller:
    """Who is calling, and how: ``"session"`` or ``"bearer"`` (with the token's client id)."""

    user: Any
    method: str
    client_id: str = ""

    @property
    def label(self) -> str:
        name = self.user.get_username()
        return f"{name} (bearer, client {self.client_id})" if self.method == "bearer" else name


def _error(status: int, error: str, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": error, "detail": detail, **extra}, status=status)


def _refuse(
    request: HttpRequest, status: int, error: str, detail: str, *, who: str = "", www_authenticate: str = ""
) -> JsonResponse:
    """Log the refusal (who, what, why; no credentials) and answer it."""
    logger.warning(
        "maintenance api refused status=%s error=%s method=%s path=%s caller=%s remote=%s reason=%s",
        status,
        error,
        request.method,
        request.path,
        who or "anonymous",
        request.META.get("REMOTE_ADDR", ""),
        detail,
        extra={"event": "api_refused", "status": status, "error": error, "path": request.path},
    )
    response = _error(status, error, detail)
    if www_authenticate:
        response["WWW-Authenticate"] = www_authenticate
    return response


def _bearer_caller(request: HttpRequest) -> Caller | JsonResponse:
    """Authenticate by the request's bearer token alone (a session cookie beside it is ignored)."""
    try:
        valid, oauthlib_request = OAuth2Backend.core().verify_request(request, scopes=[])
    except (ValueError, SuspiciousOperation):
        valid, oauthlib_request = False, None
    if not valid:
        return _refuse(
            request,
            401,
            "invalid_token",
            "the bearer token is unknown, expired or revoked",
            www_authenticate='Bearer realm="maintenance", error="invalid_token"',
        )
    token = oauthlib_request.access_token
    client_id = token.application.client_id if token.application_id else ""
    who = f"token of client {client_id}"
    if token.user_id is None:
        return _refuse(
            request, 403, "forbidden", "the bearer token has no user (client credentials)", who=who
        )
    if MAINTENANCE_SCOPE not in token.scope.split():
        return _refuse(
            request,
            403,
            "insufficient_scope",
            f"the bearer token lacks the {MAINTENANCE_SCOPE!r} scope",
            who=who,
            www_authenticate=(
                f'Bearer realm="maintenance", error="insufficient_scope", scope="{MAINTENANCE_SCOPE}"'
            ),
        )
    return Caller(user=token.user, method="bearer", client_id=client_id)


def _csrf_failure(request: HttpRequest) -> str | None:
    """The reason the session request fails the CSRF check, or None when it passes."""
    reasons: list[str] = []

    class Check(CsrfViewMiddleware):
        def _reject(self, request, reason):
            reasons.append(reason)
            return reason

    check = Check(lambda req: None)
    check.process_request(request)
    check.process_view(request, lambda req: None, (), {})
    return reasons[0] if reasons else None


def api_view(permissions: dict[str, str]) -> Callable:
    """Authenticate (bearer, or session with CSRF), authorize (active staff with the permission
    ``permissions`` names for the request's method), then call the view with the :class:`Caller`
    as second argument. The view is exempt from Django's CSRF middleware only so that the check
    here can answer in JSON and log the refusal; session requests are still checked."""
    methods = tuple(permissions)

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            try:
                return checked(request, *args, **kwargs)
            except RequestDataTooBig:
                # Whoever reads the body first (the bearer check, the CSRF check, the view) hits
                # Django's DATA_UPLOAD_MAX_MEMORY_SIZE: the answer is this API's JSON error, not
                # Django's HTML page.
                return _bad_request(request, "body", f"body: at most {MAX_BODY_BYTES} bytes")

        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method not in methods:
                response = _error(405, "method_not_allowed", f"use {' or '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            if bearer_token_from_header(request.META.get("HTTP_AUTHORIZATION", "")):
                caller = _bearer_caller(request)
                if isinstance(caller, JsonResponse):
                    return caller
            elif request.user.is_authenticated:
                caller = Caller(user=request.user, method="session")
                if request.method not in ("GET", "HEAD", "OPTIONS"):
                    reason = _csrf_failure(request)
                    if reason:
                        return _refuse(
                            request, 403, "csrf_failed", f"CSRF check failed: {reason}", who=caller.label
                        )
            else:
                return _refuse(
                    request,
                    401,
                    "unauthenticated",
                    "log in as staff, or send a bearer token with the maintenance scope",
                    www_authenticate=f'Bearer realm="maintenance", scope="{MAINTENANCE_SCOPE}"',
                )
            user = caller.user
            if not (user.is_active and user.is_staff):
                return _refuse(
                    request, 403, "forbidden", "only active staff users may use this API", who=caller.label
                )
            needed = PERMISSIONS[permissions[request.method]]
            if not user.has_perm(needed):
                return _refuse(request, 403, "forbidden", f"missing permission {needed}", who=caller.label)
            return view(request, caller, *args, **kwargs)

        return wrapper

    return decorate


def _run_url(request: HttpRequest, run_id: int, name: str = "api-run") -> str:
    return request.build_absolute_uri(reverse(f"oauth_tasks:{name}", args=[run_id]))


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def serialize_run(request: HttpRequest, run: MaintenanceRun) -> dict[str, Any]:
    """A run as the API shows it: progress, timings, last error and the job's result."""
    duration = run.duration
    return {
        "id": run.pk,
        "kind": run.kind,
        "params": run.params,
        "status": run.status,
        "active": run.is_active,
        # True while the next batch is more than STALL_SECONDS overdue; display_status says "stalled".
        "stalled": run.is_stalled,
        "display_status": run.display_status,
        "dry_run": run.dry_run,
        "phase": run.phase,
        "cursor": run.cursor,
        # The run's counts plus what its lanes counted in the phase under way, each row once.
        "counts": run.total_counts,
        "total": run.total_processed,
        "batch_number": run.batch_number,
        "batch_size": run.batch_size,
        "interval": run.interval,
        # The pacer's state: enabled, the next batch's size, the pause before it, why it slowed.
        "pacing": run.pacing_state(),
        "lanes": run.lanes,
        "trigger": run.trigger,
        "triggered_by": run.triggered_by,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "heartbeat_at": _iso(run.heartbeat_at),
        "next_batch_at": _iso(run.next_batch_at),
        "duration_seconds": round(duration.total_seconds(), 3) if duration is not None else None,
        "cutoff": _iso(run.cutoff),
        "last_error": run.last_error,
        "cancel_requested": run.cancel_requested,
        "requeue_count": run.requeue_count,
        "result": dict(run.result or {}),
        "url": _run_url(request, run.pk),
        "cancel_url": _run_url(request, run.pk, "api-run-cancel"),
        "resume_url": _run_url(request, run.pk, "api-run-resume"),
    }


def _broker_unavailable(exc: Exception) -> JsonResponse:
    """503: no broker answers, so no worker would hear of the run; nothing is left active."""
    logger.warning("maintenance api: %s", exc, extra={"event": "broker_unavailable"})
    response = _error(503, "broker_unavailable", str(exc))
    response["Retry-After"] = "30"
    return response


def _bad_request(request: HttpRequest, field: str, message: str, errors: dict | None = None) -> JsonResponse:
    logger.info(
        "maintenance api bad request method=%s path=%s field=%s",
        request.method,
        request.path,
        field,
        extra={"event": "api_bad_request", "field": field, "path": request.path},
    )
    return _error(400, "invalid_request", message, field=field, errors=errors or {field: [message]})


def _validation_response(request: HttpRequest, exc: ValidationError) -> JsonResponse:
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"params": exc.messages}
    field = next(iter(errors))
    return _bad_request(request, field, f"{field}: {errors[field][0]}", errors)


@api_view({"GET": "view"})
def jobs(request: HttpRequest, caller: Caller) -> JsonResponse:
    """``GET api/jobs/``: the job kinds, their parameter schemas and batch bounds."""
    return JsonResponse({"jobs": [job.describe() for job in all_jobs().values()]})


@api_view({"GET": "view", "POST": "start"})
def runs(request: HttpRequest, caller: Caller) -> JsonResponse:
    """``GET api/runs/``: recent runs (``?kind=``, ``?status=``, ``?limit=``); ``POST``: start one."""
    if request.method == "POST":
        return _start(request, caller)
    qs = MaintenanceRun.objects.all()
    kind, status, limit = request.GET.get("kind"), request.GET.get("status"), request.GET.get("limit")
    if kind:
        if kind not in all_jobs():
            return _bad_request(request, "kind", f"kind: unknown job kind {kind!r}")
        qs = qs.filter(kind=kind)
    if status:
        if status not in RunStatus.values:
            return _bad_request(request, "status", f"status: must be one of {', '.join(RunStatus.values)}")
        qs = qs.filter(status=status)
    if limit is None:
        count = DEFAULT_LIST_LIMIT
    elif limit.isdigit() and 1 <= int(limit) <= MAX_LIST_LIMIT:
        count = int(limit)
    else:
        return _bad_request(request, "limit", f"limit: must be an integer between 1 and {MAX_LIST_LIMIT}")
    runs = attach_lane_counts(qs[:count])  # every run's lane counts in one query
    return JsonResponse({"runs": [serialize_run(request, run) for run in runs]})


def _depth(value: Any) -> int:
    """How deeply ``value`` nests objects and lists (a scalar is 0), walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _start(request: HttpRequest, caller: Caller) -> JsonResponse:
    """``POST api/runs/``: 202 with the new run, 409 with the active one, 400 naming a bad field."""
    if len(request.body) > MAX_BODY_BYTES:
        return _bad_request(request, "body", f"body: at most {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        return _bad_request(request, "body", f"body: malformed JSON ({exc})")
    except RecursionError:
        return _bad_request(request, "body", f"body: nested deeper than {MAX_BODY_DEPTH} levels")
    if _depth(body) > MAX_BODY_DEPTH:
        return _bad_request(request, "body", f"body: nested deeper than {MAX_BODY_DEPTH} levels")
    if not isinstance(body, dict):
        return _bad_request(request, "body", "body: must be a JSON object with kind, params, dry_run, ...")
    unknown = sorted(set(body) - set(START_FIELDS))
    if unknown:
        return _bad_request(
            request, unknown[0], f"{unknown[0]}: unknown field; known: {', '.join(START_FIELDS)}"
        )
    if not isinstance(body.get("kind"), str) or not body["kind"]:
        return _bad_request(request, "kind", "kind: required, the name of a job (see api/jobs/)")
    for name in ("batch_size", "interval"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return _bad_request(request, name, f"{name}: must be a number")
    if isinstance(body.get("batch_size"), float):
        return _bad_request(request, "batch_size", "batch_size: must be an integer")
    try:
        run, created = engine.dispatch(
            body["kind"],
            body.get("params") if "params" in body else {},
            trigger="api",
            dry_run=body.get("dry_run", False),
            batch_size=body.get("batch_size"),
            interval=body.get("interval"),
            pacing=body.get("pacing"),
            lanes=body.get("lanes"),
            triggered_by=caller.label[:255],
            user=caller.user,
        )
    except ValidationError as exc:
        return _validation_response(request, exc)
    except PermissionDenied as exc:
        return _refuse(request, 403, "forbidden", str(exc), who=caller.label)
    except engine.BrokerUnavailable as exc:
        return _broker_unavailable(exc)
    if not created:
        response = _error(
            409,
            "conflict",
            f"run #{run.pk} of {run.kind} with these parameters is already {run.status}",
            run_id=run.pk,
            status_url=_run_url(request, run.pk),
        )
        response["Location"] = _run_url(request, run.pk)
        return response
    response = JsonResponse(
        {"run_id": run.pk, "status_url": _run_url(request, run.pk), "run": serialize_run(request, run)},
        status=202,
    )
    response["Location"] = _run_url(request, run.pk)
    return response


def _get_run(run_id: int) -> MaintenanceRun | None:
    return MaintenanceRun.objects.filter(pk=run_id).first()


def _not_found(run_id: int) -> JsonResponse:
    return _error(404, "not_found", f"no maintenance run #{run_id}")


@api_view({"GET": "view"})
def run_detail(request: HttpRequest, caller: Caller, run_id: int) -> JsonResponse:
    """``GET api/runs/<id>/``: the run's progress."""
    run = _get_run(run_id)
    return JsonResponse(serialize_run(request, run)) if run else _not_found(run_id)


@api_view({"POST": "change"})
def run_cancel(request: HttpRequest, caller: Caller, run_id: int) -> JsonResponse:
    """``POST api/runs/<id>/cancel/``: stop after the batch in flight; 409 when already finished."""
    run = _get_run(run_id)
    if run is None:
        return _not_found(run_id)
    if not run.is_active:
        return _error(409, "not_active", f"run #{run.pk} is {run.status}", run_id=run.pk)
    run = engine.cancel(run, by=caller.label)
    return JsonResponse(serialize_run(request, run))


@api_view({"POST": "change"})
def run_resume(request: HttpRequest, caller: Caller, run_id: int) -> JsonResponse:
    """``POST api/runs/<id>/resume/``: continue from the cursor; 409 when it succeeded or another
    run does the same work."""
    run = _get_run(run_id)
    if run is None:
        return _not_found(run_id)
    try:
        run = engine.resume(run)
    except engine.RunConflict as conflict:
        return _error(
            409,
            "conflict",
            f"run #{conflict.run.pk} does the same work and is active",
            run_id=conflict.run.pk,
            status_url=_run_url(request, conflict.run.pk),
        )
    except ValueError as exc:
        return _error(409, "not_resumable", str(exc), run_id=run.pk)
    except engine.BrokerUnavailable as exc:
        return _broker_unavailable(exc)
    return JsonResponse(serialize_run(request, run), status=202)
