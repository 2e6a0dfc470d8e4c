"""Log formatting and redaction for the provider and its maintenance worker.

``JsonFormatter`` writes one JSON object per line (``LOG_FORMAT=json``) with the record's ``extra``
fields (run id, job, phase, counts, duration) as keys of their own, so a log pipeline can index
them. ``RedactSecretsFilter`` and both formatters pass every message, argument and traceback through
``redact``: the code never logs a token or a secret on purpose, and this is the defence in depth for
the day something does (a repr, an exception carrying SQL parameters, a third-party library).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

MASK = "[REDACTED]"

# A value following a name that says it is secret: ``token=...``, ``"client_secret": "..."``,
# ``password: ...``. The name may be part of a longer one (access_token, refresh_token, id_token).
_SECRET_NAMES = (
    r"[A-Za-z_\-]*(?:token|secret|password|passwd|pwd|api[_-]?key|authorization|assertion|code_verifier)"
    r"|[A-Za-z_\-]*hint|code|jti|sessionid|csrftoken"
)
_KEY_VALUE = re.compile(
    rf"(?P<key>(?<![A-Za-z0-9])(?:{_SECRET_NAMES})[\"']?\s*(?:=|:)\s*[\"']?)(?P<value>[^\s\"'&,;)}}\]]+)",
    re.IGNORECASE,
)
# ``Authorization: Bearer <value>`` / ``Basic <value>``, also inside a header dump. A lower-case
# word after a lower-case scheme ("basic auth") is prose, not a credential.
_AUTH_SCHEME = re.compile(
    r"(?P<key>\b(?:Bearer|Basic|BEARER|BASIC|bearer|basic)\s+)(?P<value>[A-Za-z0-9\-._~+/]+=*)"
)
_SCHEMES = {"bearer", "basic"}
# Credentials in a URL: ``redis://:password@host``, ``postgres://user:password@host``.
_URL_CREDENTIALS = re.compile(
    r"(?P<key>\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)(?P<value>[^\s@/]+)(?=@)", re.IGNORECASE
)
# A JSON Web Token (an ID token or a signed access token): three base64url parts.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*")
# A stored secret hash (``pbkdf2_sha256$...``, ``argon2$...``): not the secret, but never needed in a log.
_PASSWORD_HASH = re.compile(r"\b(?:pbkdf2_sha256|pbkdf2_sha1|argon2|bcrypt_sha256|bcrypt|scrypt)\$[^\s\"',]+")
# A long run of token characters mixing letters and digits or cases: what generated tokens, client
# secrets and their checksums look like, whatever key (if any) they come with. Identifiers of the
# code (module paths, snake_case names) and UUIDs (task and run ids) are kept.
_TOKEN_LIKE = re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{24,}(?![A-Za-z0-9_\-])")


# The query string of a URL or of a path (``/o/userinfo/?access_token=...``): every value is masked,
# whatever its name, so a parameter no rule above knows (``id_token_hint``, ``logout_hint``, a
# project's own) never reaches a line either. The names stay, for the reader.
_URL_QUERY = re.compile(
    r"(?P<path>(?:\b[a-z][a-z0-9+.\-]*://[^\s/?#\"']*)?/[^\s?#\"']*)\?(?P<query>[^\s#\"']+)",
    re.IGNORECASE,
)


def mask_query(query: str) -> str:
    """``query`` (``a=1&b=2``) with every value replaced by the mask; names are kept."""
    parts = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        parts.append(f"{name}={MASK}" if sep and value else (part if sep or not part else MASK))
    return "&".join(parts)


def mask_url_queries(text: str) -> str:
    """``text`` with the query of every URL or path in it masked (see :func:`mask_query`)."""
    return _URL_QUERY.sub(lambda m: f"{m.group('path')}?{mask_query(m.group('query'))}", text)


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _looks_generated(value: str) -> bool:
    """Random rather than written: digits among letters, or upper and lower case mixed throughout.

    Generated tokens and secrets (30+ random letters and digits, base64url, hex checksums) pass;
    snake_case names, CamelCase class names (few capitals, each starting a word) and UUIDs do not.
    """
    if _UUID.fullmatch(value):
        # Task ids, run ids and ID token ``jti``s are identifiers operators need to correlate.
        return False
    digits = sum(c.isdigit() for c in value)
    upper = sum(c.isupper() for c in value)
    lower = sum(c.islower() for c in value)
    if digits >= 2 and (upper or lower):
        return True
    if not (upper and lower):
        return False
    capitals_together = re.search(r"[A-Z]{2}", value) is not None
    return digits >= 1 or capitals_together or upper / (upper + lower) > 0.25


def _mask_token_like(match: re.Match[str]) -> str:
    value = match.group(0)
    return MASK if _looks_generated(value) else value


def _mask_auth_scheme(match: re.Match[str]) -> str:
    value = match.group("value")
    if match.group("key")[0].islower() and re.fullmatch(r"[a-z]+", value) and len(value) < 20:
        return match.group(0)
    return match.group("key") + MASK


def _mask_key_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.lower() in _SCHEMES:
        # ``Authorization: Bearer [REDACTED]``: the scheme stays, its credential was masked already.
        return match.group(0)
    # Counts (``refresh_token=3`` in a batch line) and short words after a bare ``code:`` (an HTTP
    # status, an exit code) are not secrets; a grant code or a token is long and not a number.
    # A value masked already (the filter and the formatter both redact) is left as it is.
    if value.startswith(MASK[:-1]) or (value.isdigit() and len(value) < 12):
        return match.group(0)
    if match.group("key").lower().startswith(("code", "jti")) and len(value) < 8:
        return match.group(0)
    return match.group("key") + MASK


def redact(text: str) -> str:
    """``text`` with anything that looks like a token, a secret or a credential replaced by a mask."""
    if not text:
        return text
    text = mask_url_queries(text)
    text = _JWT.sub(MASK, text)
    text = _PASSWORD_HASH.sub(MASK, text)
    text = _URL_CREDENTIALS.sub(lambda m: m.group("key") + MASK, text)
    text = _AUTH_SCHEME.sub(_mask_auth_scheme, text)
    text = _KEY_VALUE.sub(_mask_key_value, text)
    return _TOKEN_LIKE.sub(_mask_token_like, text)


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_redact_value(v) for v in value]
    return redact(str(value))


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message (with its arguments merged in) and its extra fields, redacted.

    Attached to handlers, so it sees records of every logger, Django's and Celery's included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: keep its text only
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                setattr(record, name, _redact_value(value))
        return True


class RedactingFormatter(logging.Formatter):
    """The plain text formatter, with the formatted line (traceback included) redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception; redacted."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_") and name not in payload:
                payload[name] = _redact_value(value)
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            payload["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(payload, default=str, ensure_ascii=False)


def _add_filter_to_handlers(logger: logging.Logger | None, **kwargs: Any) -> None:
    """Give the handlers Celery installs for its own loggers the redaction filter too."""
    if logger is None:
        return
    for handler in logger.handlers:
        if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
            handler.addFilter(RedactSecretsFilter())


def _connect_celery_signals() -> None:
    try:
        from celery import signals
    except ImportError:  # pragma: no cover - Celery is a dependency
        return
    signals.after_setup_logger.connect(_add_filter_to_handlers, weak=False)
    signals.after_setup_task_logger.connect(_add_filter_to_handlers, weak=False)


_connect_celery_signals()
