"""Adaptive pacing: the next batch's size and the pause before it, from the last batch and the database.

A run with pacing on does not keep the size and interval it was started with. After each batch the
pacer looks at how long the batch took and decides:

* **size**, by AIMD toward a target batch duration: a batch under the target lets the next one grow
  by a fixed step (additive increase); a batch over the target, or one that failed on a lock wait,
  a deadlock or another database error, halves it (multiplicative decrease). The size stays between
  a minimum and a maximum.
* **pause**, from a duty cycle: the run spends at most ``max_busy_share`` of the wall time inside
  batches, so a batch of ``d`` seconds is followed by ``d * (1 - share) / share`` seconds of rest
  (never less than the run's fixed interval).
* **replica lag**: before a batch, the lag of the replicas is read; above ``max_replica_lag`` the
  batch does not run, and the same batch is sent again ``lag_recheck_seconds`` later, without any
  worker waiting for it.

Everything the pacer decides is stored on the run row (``MaintenanceRun.pacing``) in the same
transaction as the batch, so a killed worker's successor carries on with the same pace.

This module holds the settings, their validation and the arithmetic; :mod:`oauth_tasks.replication`
reads the lag; the engine applies the decisions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from django.core.exceptions import ValidationError

from oauth_provider.cleanup import MAX_BATCH_SIZE, MAX_INTERVAL


@dataclass(frozen=True)
class PacingSettings:
    """How one run is paced; frozen on the run at dispatch (``MaintenanceRun.pacing["settings"]``)."""

    enabled: bool = False
    target_batch_seconds: float = 0.3
    max_busy_share: float = 0.35
    min_batch_size: int = 100
    max_batch_size: int = 10_000
    batch_size_step: int = 500
    max_replica_lag: float = 5.0
    lag_recheck_seconds: float = 5.0
    lock_timeout_seconds: float = 2.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Run parameter name -> OAUTH_MAINTENANCE key giving its default.
SETTING_KEYS: dict[str, str] = {
    "enabled": "PACING",
    "target_batch_seconds": "PACING_TARGET_BATCH_SECONDS",
    "max_busy_share": "PACING_MAX_BUSY_SHARE",
    "min_batch_size": "PACING_MIN_BATCH_SIZE",
    "max_batch_size": "PACING_MAX_BATCH_SIZE",
    "batch_size_step": "PACING_BATCH_SIZE_STEP",
    "max_replica_lag": "MAX_REPLICA_LAG",
    "lag_recheck_seconds": "REPLICA_LAG_RECHECK_SECONDS",
    "lock_timeout_seconds": "PACING_LOCK_TIMEOUT_SECONDS",
}


def _number(name: str, value: Any, *, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value != value or (value <= low if low_open else value < low) or value > high:
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise ValueError(f"{name} must be {bound} and at most {high:g}, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def check(values: dict[str, Any], prefix: str = "") -> PacingSettings:
    """A PacingSettings from complete ``values``; ValueError naming the first bad one (``prefix`` + name)."""
    name = {key: f"{prefix}{key}" for key in SETTING_KEYS}
    enabled = values["enabled"]
    if not isinstance(enabled, bool):
        raise ValueError(f"{name['enabled']} must be true or false, got {enabled!r}")
    low = _integer(name["min_batch_size"], values["min_batch_size"], low=1, high=MAX_BATCH_SIZE)
    high = _integer(name["max_batch_size"], values["max_batch_size"], low=1, high=MAX_BATCH_SIZE)
    if low > high:
        raise ValueError(
            f"{name['min_batch_size']} ({low}) must not exceed {name['max_batch_size']} ({high})"
        )
    return PacingSettings(
        enabled=enabled,
        target_batch_seconds=_number(
            name["target_batch_seconds"], values["target_batch_seconds"], low=0, high=300, low_open=True
        ),
        max_busy_share=_number(
            name["max_busy_share"], values["max_busy_share"], low=0, high=1, low_open=True
        ),
        min_batch_size=low,
        max_batch_size=high,
        batch_size_step=_integer(
            name["batch_size_step"], values["batch_size_step"], low=1, high=MAX_BATCH_SIZE
        ),
        max_replica_lag=_number(name["max_replica_lag"], values["max_replica_lag"], low=0, high=86400),
        lag_recheck_seconds=_number(
            name["lag_recheck_seconds"],
            values["lag_recheck_seconds"],
            low=0,
            high=MAX_INTERVAL,
            low_open=True,
        ),
        lock_timeout_seconds=_number(
            name["lock_timeout_seconds"], values["lock_timeout_seconds"], low=0, high=300
        ),
    )


def defaults() -> dict[str, Any]:
    """The pacing values of ``OAUTH_MAINTENANCE`` (checked there), as run parameter names."""
    from .conf import maintenance_settings

    return {key: getattr(maintenance_settings, setting) for key, setting in SETTING_KEYS.items()}


def resolve(override: Any) -> PacingSettings:
    """The settings of a new run: the defaults, with the run's ``pacing`` parameter over them.

    ``override`` is None (the defaults), a bool (pacing on or off, the rest default) or an object of
    run parameter names. A bad value raises ValidationError under ``pacing`` naming the key.
    """
    values = defaults()
    if override is None:
        pass
    elif isinstance(override, bool):
        values["enabled"] = override
    elif isinstance(override, dict):
        unknown = sorted(set(override) - set(SETTING_KEYS))
        if unknown:
            raise ValidationError(
                {"pacing": f"pacing.{unknown[0]}: unknown setting; known: {', '.join(SETTING_KEYS)}"}
            )
        values.update({key: value for key, value in override.items() if value is not None})
        if "enabled" not in override:
            values["enabled"] = True  # asking for pacing settings means pacing
    else:
        raise ValidationError({"pacing": "pacing must be true, false or an object of pacing settings"})
    try:
        return check(values, prefix="pacing.")
    except ValueError as exc:
        raise ValidationError({"pacing": str(exc)}) from None


def stored_settings(run_pacing: dict[str, Any] | None) -> PacingSettings:
    """The settings frozen on a run (pacing off for runs started before pacing existed)."""
    stored = (run_pacing or {}).get("settings") or {}
    known = {f.name for f in fields(PacingSettings)}
    return PacingSettings(**{key: value for key, value in stored.items() if key in known})


def initial_state(settings: PacingSettings, batch_size: int, job_max: int) -> dict[str, Any]:
    """What a new run stores in ``MaintenanceRun.pacing``: its settings and the first batch's size."""
    state: dict[str, Any] = {"settings": settings.as_dict()}
    if settings.enabled:
        state.update(
            batch_size=clamp(batch_size, settings, job_max),
            pause=0.0,
            reason="",
            waiting=False,
            replica_lag=None,
            waits=0,
            slowdowns=0,
            last_slowdown=None,
        )
    return state


def clamp(size: int, settings: PacingSettings, job_max: int) -> int:
    high = min(settings.max_batch_size, job_max)
    return max(min(settings.min_batch_size, high), min(int(size), high))


@dataclass(frozen=True)
class Decision:
    """The pace after one batch: the next batch's size, the pause before it, why it slowed ('' if not)."""

    batch_size: int
    pause: float
    reason: str = ""


def duty_cycle_pause(duration: float, share: float) -> float:
    """Rest after a batch of ``duration`` seconds so batches fill at most ``share`` of the wall time."""
    if share >= 1:
        return 0.0
    return max(0.0, duration) * (1 - share) / share


def after_batch(
    settings: PacingSettings,
    batch_size: int,
    duration: float,
    *,
    interval: float = 0.0,
    job_max: int = MAX_BATCH_SIZE,
) -> Decision:
    """AIMD on the batch size toward the target duration, and the duty-cycle pause (at least ``interval``)."""
    pause = max(float(interval), duty_cycle_pause(duration, settings.max_busy_share))
    if duration > settings.target_batch_seconds:
        reason = f"over target duration ({duration:.3f} s > {settings.target_batch_seconds:g} s)"
        return Decision(clamp(batch_size // 2, settings, job_max), pause, reason)
    return Decision(clamp(batch_size + settings.batch_size_step, settings, job_max), pause)


def after_error(
    settings: PacingSettings, batch_size: int, reason: str, *, job_max: int = MAX_BATCH_SIZE
) -> Decision:
    """A batch failed on ``reason`` (lock wait, deadlock, database error): halve, as over the target."""
    return Decision(clamp(batch_size // 2, settings, job_max), 0.0, reason)


#: The longest pause before a failed batch's retry, paced or not (the fixed back-off's cap too).
MAX_RETRY_PAUSE = 60.0


def retry_pause(
    settings: PacingSettings,
    failed_seconds: float,
    *,
    interval: float = 0.0,
    chains: int = 1,
    backoff: float = 0.0,
) -> float:
    """The pause before retrying a batch that failed after ``failed_seconds`` (a lock wait lasts the
    lock timeout): the duty-cycle pause after a batch that long, at least ``interval``, times the
    ``chains`` sharing the run (lanes), at most ``MAX_RETRY_PAUSE``; or the task's fixed
    ``backoff`` (2, 4, 8... s) when that is longer, so a paced run rides out a held lock as long as
    an unpaced one before its retries are spent."""
    pause = max(float(interval), duty_cycle_pause(failed_seconds, settings.max_busy_share))
    return max(float(backoff), min(MAX_RETRY_PAUSE, pause * max(1, chains)))


def lag_reason(lag: float, limit: float) -> str:
    return f"replica lag {lag:.1f} s > {limit:g} s"


def error_reason(exc: BaseException) -> str:
    """What a failed batch says about the database: "lock wait", "deadlock" or the error's class."""
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None)
    code = cause.args[0] if getattr(cause, "args", None) and isinstance(cause.args[0], int) else None
    text = str(exc).lower()
    if sqlstate in ("55P03",) or code == 1205 or "lock timeout" in text or "lock wait" in text:
        return "lock wait"
    if sqlstate == "40P01" or code == 1213 or "deadlock" in text:
        return "deadlock"
    if sqlstate == "57014" or "statement timeout" in text:
        return "statement timeout"
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return "batch over its time limit"
    if "database is locked" in text:
        return "lock wait"
    return f"database error ({type(cause).__name__})"
