"""gunicorn's logger for the provider: access and error lines with no token, code, secret or hint.

gunicorn writes its access log (``--access-logfile -``) and its error log with handlers of its own,
outside Django's ``LOGGING``, so the redaction filter configured there never sees them. This logger
class (``--logger-class config.gunicorn_logging.RedactingLogger``, set by the run command):

* masks every value of the query string in the request line (``%(r)s``), the query (``%(q)s``) and
  the referrer (``%(f)s``), whatever the parameter's name, and passes every other atom a format
  uses (headers ``%({name}i)s``, environment ``%({name}e)s``) through ``redact`` — in the atoms
  themselves, so a custom ``--access-logformat`` or ``--log-config-dict`` cannot bring them back;
* gives its handlers the redaction filter and, with ``LOG_FORMAT=json``, the JSON formatter, so
  gunicorn's lines look like the rest of the project's.
"""

from __future__ import annotations

import os

from gunicorn import glogging

from oauth_tasks.logging import JsonFormatter, RedactSecretsFilter, mask_query, redact


class RedactedAtoms(glogging.SafeAtoms):
    """The access log's atoms, each redacted when the format reads it."""

    def __getitem__(self, key: str):
        value = super().__getitem__(key)
        return redact(value) if isinstance(value, str) else value


class RedactingLogger(glogging.Logger):
    atoms_wrapper_class = RedactedAtoms

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        path, _, query = environ.get("RAW_URI", "").partition("?")
        if query:
            atoms["r"] = (
                f"{environ['REQUEST_METHOD']} {path}?{mask_query(query)} {environ['SERVER_PROTOCOL']}"
            )
        if atoms.get("q"):
            atoms["q"] = mask_query(atoms["q"])
        for name in ("{raw_uri}e", "{query_string}e"):
            atoms.pop(name, None)
        return atoms

    def setup(self, cfg) -> None:
        super().setup(cfg)
        json_lines = os.environ.get("LOG_FORMAT", "plain").strip().lower() == "json"
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
                    handler.addFilter(RedactSecretsFilter())
                if json_lines and not isinstance(handler.formatter, JsonFormatter):
                    handler.setFormatter(JsonFormatter())


__all__ = ["RedactedAtoms", "RedactingLogger"]
