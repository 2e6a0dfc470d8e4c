"""The ``revoke`` job: every token of a user, of an application, of a user in one application, or
carrying a scope, revoked by the provider's own batches (``oauth_provider.revocation``).

A revocation takes effect when it is dispatched, not when its last batch runs: :meth:`RevokeJob.on_dispatch`
writes the target's "not valid before" watermark in the transaction that creates the run, so every
token check refuses the target's tokens from the moment the run exists. The batches then remove the
rows the watermark already refuses (those created before the run's cutoff), and nothing else: tokens
obtained after the revocation survive it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Model

from oauth_provider import revocation
from oauth_provider.models import get_application_model

from .base import BatchOutcome, Job
from .registry import register_job

#: How a user or an application may be named in the parameters, as the API publishes it.
_ID_OR_NAME = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "minLength": 1}]}


def _resolve(model: type[Model], value: Any, field: str, natural_key: str, what: str) -> int:
    """The primary key of the row ``value`` names: an integer id, or text matching ``natural_key``.

    Text made of digits that matches no ``natural_key`` is tried as an id, so a command line's
    ``--user 42`` works without a separate flag.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError({field: f"{field} must be an id (integer) or a {what} (text)"})
    manager = model._default_manager
    if isinstance(value, int):
        pk = manager.filter(pk=value).values_list("pk", flat=True).first()
    else:
        text = value.strip()
        if not text or len(text) > 255:
            raise ValidationError({field: f"{field} must be an id or a {what} of 1 to 255 characters"})
        pk = manager.filter(**{natural_key: text}).values_list("pk", flat=True).first()
        if pk is None and text.isdigit():
            pk = manager.filter(pk=int(text)).values_list("pk", flat=True).first()
    if pk is None:
        raise ValidationError({field: f"no {model._meta.verbose_name} with id or {what} {value!r}"})
    return pk


def resolve_user(value: Any, field: str = "user") -> int:
    """The id of the user named by id or username; ValidationError on ``field`` when there is none."""
    user_model = get_user_model()
    return _resolve(user_model, value, field, user_model.USERNAME_FIELD, "username")


def resolve_application(value: Any, field: str = "application") -> int:
    """The id of the application named by id or client id; ValidationError on ``field`` otherwise."""
    return _resolve(get_application_model(), value, field, "client_id", "client_id")


def target_from_params(params: dict[str, Any]) -> revocation.RevocationTarget:
    """The target of cleaned parameters (ids, as :meth:`RevokeJob.clean_params` stores them)."""
    return revocation.RevocationTarget(
        user_id=params.get("user"), application_id=params.get("application"), scope=params.get("scope", "")
    )


def affected_counts(params: dict[str, Any], at: datetime | None = None) -> dict[str, int]:
    """Rows a revocation of ``params`` would change, per phase, with one ``COUNT`` per table.

    What the admin's confirmation page shows; cheaper than a dry run, and the same predicate.
    """
    target = target_from_params(params)
    return {
        phase: revocation.phase_model(phase)._base_manager.filter(target.predicate(phase, at)).count()
        for phase in revocation.PHASES
    }


@register_job
class RevokeJob(Job):
    """Revoke every token of a user, an application, a user in one application, or a scope."""

    name = "revoke"
    label = "Revoke tokens"
    description = (
        "Revoke every token of a user, an application, a user in one application, or carrying a "
        "scope. Takes effect at dispatch (a watermark refuses the tokens at once); the batches "
        "then revoke refresh tokens and delete access tokens, ID tokens and grants."
    )
    params_schema = {
        "type": "object",
        "properties": {
            "user": {**_ID_OR_NAME, "description": "User id (integer) or username (text)."},
            "application": {**_ID_OR_NAME, "description": "Application id (integer) or client_id (text)."},
            "scope": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "description": "One scope name: every token carrying it (not with user or application).",
            },
        },
        "additionalProperties": False,
    }

    def default_batch_size(self) -> int:
        return 5000

    def clean_params(self, params: dict[str, Any]) -> dict[str, Any]:
        cleaned: dict[str, Any] = {}
        if "user" in params:
            cleaned["user"] = resolve_user(params["user"])
        if "application" in params:
            cleaned["application"] = resolve_application(params["application"])
        if "scope" in params:
            try:
                cleaned["scope"] = revocation.validate_scope_name(params["scope"])
            except ValueError as exc:
                raise ValidationError({"scope": str(exc)}) from None
        try:
            target_from_params(cleaned)
        except ValueError as exc:
            # "scope: ..." (a scope with a user or application) or "target: ..." (nothing named).
            field, _, message = str(exc).partition(": ")
            raise ValidationError({field if field == "scope" else "params": message or str(exc)}) from None
        return cleaned

    def phases(self, params: dict[str, Any]) -> Sequence[str]:
        return revocation.PHASES

    def on_dispatch(self, run) -> None:
        """The watermark at the run's cutoff: from now on every check refuses the target's tokens."""
        if run.dry_run:
            return
        revocation.record_watermark(
            target_from_params(run.params),
            at=run.cutoff,
            reason=f"maintenance run #{run.pk} ({run.trigger} {run.triggered_by})".strip()[:255],
        )

    def run_batch(self, run, phase: str, cursor: Any) -> BatchOutcome:
        result = revocation.run_revocation_batch(
            phase,
            target_from_params(run.params),
            batch_size=run.batch_size,
            cursor=cursor,
            now=run.cutoff,
            dry_run=run.dry_run,
            issued_before=run.cutoff,
        )
        detail = {"unlinked": result.unlinked} if result.unlinked else {}
        return BatchOutcome(
            processed=result.deleted, cursor=result.cursor, phase_done=result.done, detail=detail
        )
