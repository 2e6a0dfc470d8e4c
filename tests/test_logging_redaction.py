"""No token or secret value reaches a log line: not from a real worker's cleanup, not from issuance.

The worker tests read the log file of a real ``celery worker`` process; the issuance test swaps the
stream of the handler ``LOGGING`` configured, so both see exactly what production would write.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from oauthlib.common import generate_token

from oauth_provider.models import get_access_token_model, get_application_model, get_refresh_token_model
from oauth_tasks import engine
from oauth_tasks.logging import MASK, JsonFormatter, RedactSecretsFilter, redact
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import wait_until

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


# --- the redaction itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, secret",
    [
        ("token=%s", None),
        ('{"access_token": "%s", "token_type": "Bearer"}', None),
        ("Authorization: Bearer %s", None),
        ("client_secret: %s", None),
        ("refresh %s done", None),
        ("broker at redis://:%s@redis:6379/0", "hunter2-pw"),
        ("postgres://oauth:%s@postgres:5432/oauth", "pa55word"),
        ("password=%s", "correct horse"),
    ],
)
def test_token_and_secret_values_are_masked_wherever_they_appear(line, secret):
    value = secret or generate_token()
    redacted = redact(line % value)
    assert value.split()[0] not in redacted
    assert MASK in redacted


@pytest.mark.parametrize(
    "line",
    [
        "maintenance batch run=12 job=cleanup phase=access_tokens batch=3 processed=1000 duration=0.210s",
        "maintenance run succeeded run=12 job=cleanup batches=4 total=3000 counts={'refresh_token': 3}",
        "Task oauth_tasks.run_batch[8d5c1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b] succeeded in 0.05s",
        "beat schedule entry installed: oauth_tasks: daily token cleanup",
        "SoftTimeLimitExceededError in oauth_tasks.tasks.run_batch",
        "Flower behind basic auth; exited with code 1; HTTP status code: 503",
    ],
)
def test_operational_lines_stay_readable(line):
    assert redact(line) == line


def test_redacting_twice_changes_nothing_more():
    once = redact(f'{{"token": "{generate_token()}"}} Authorization: Bearer {generate_token()}')
    assert redact(once) == once == f'{{"token": "{MASK}"}} Authorization: Bearer {MASK}'


def test_the_json_formatter_writes_extra_fields_and_redacts_them():
    token = generate_token()
    record = logging.LogRecord(
        "oauth_tasks.tasks", logging.INFO, __file__, 1, "batch %s of %s", (3, token), None
    )
    record.run_id = 12
    record.counts = {"access_tokens": 5}
    record.leak = f"Bearer {token}"
    assert RedactSecretsFilter().filter(record)

    line = json.loads(JsonFormatter().format(record))

    assert line["message"] == f"batch 3 of {MASK}"
    assert line["run_id"] == 12 and line["counts"] == {"access_tokens": 5}
    assert (
        line["leak"] == f"Bearer {MASK}" and line["level"] == "INFO" and line["logger"] == "oauth_tasks.tasks"
    )
    assert token not in json.dumps(line)


# --- a real worker ---------------------------------------------------------------------------------


@pytest.fixture
def debug_worker_factory(monkeypatch, request):
    """Workers logging at DEBUG, the most talkative level an operator can choose."""
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    return request.getfixturevalue("worker_factory")


def seed_tokens() -> list[str]:
    """Expired and live tokens of a confidential application; returns every secret value created."""
    user = get_user_model().objects.create_user("owner")
    client_secret = generate_token(64)
    app = get_application_model().objects.create(
        name="logged",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=client_secret,
    )
    now = timezone.now()
    values = [client_secret, app.client_secret]  # the plaintext and its stored hash
    for index in range(12):
        access = AccessToken.objects.create(
            application=app,
            user=user,
            token=generate_token(),
            expires=now + timedelta(hours=-1 if index % 2 else 1),
            scope="read",
        )
        refresh = RefreshToken.objects.create(
            application=app,
            user=user,
            token=generate_token(),
            access_token=None if index % 3 == 0 else access,
            revoked=now - timedelta(days=2) if index % 4 == 0 else None,
        )
        values += [access.token, access.token_checksum, refresh.token, refresh.token_checksum]
    return values


def leaked(text: str, values: Iterator[str]) -> list[str]:
    return [value for value in values if value and value in text]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_cleanup_run_on_a_real_worker_logs_no_token_value(debug_worker_factory, celery_app):
    values = seed_tokens()
    run, created = engine.dispatch("cleanup", {}, trigger="test", batch_size=4, interval=0)
    assert created
    worker = debug_worker_factory()
    # A message carrying a token where an id belongs: the task fails, and Celery and the task log
    # the failure with its arguments. The token must not come out.
    canary = generate_token()
    values.append(canary)
    celery_app.send_task("oauth_tasks.run_batch", args=[canary, 0])
    # A message for a task no worker knows: Celery logs the whole message body.
    celery_app.send_task("oauth_tasks.no_such_task", args=[canary], kwargs={"token": canary})

    run = wait_until(
        lambda: MaintenanceRun.objects.filter(pk=run.pk).exclude(status__in=["pending", "running"]).first(),
        timeout=60,
        message="the cleanup run to finish",
    )
    assert run.status == RunStatus.SUCCEEDED, run.last_error
    assert sum(run.counts.values()) > 0
    wait_until(lambda: "no_such_task" in worker.log_text(), timeout=30, message="the unregistered message")
    wait_until(
        lambda: "raised unexpected" in worker.log_text(), timeout=30, message="the failed canary batch"
    )
    worker.stop()
    text = worker.logfile.read_text(errors="replace")

    # The log is the real one: batch and run lines with their numbers, the failures, at DEBUG.
    assert f"run={run.pk}" in text and "job=cleanup" in text
    assert "maintenance run succeeded" in text
    assert MASK in text, "the canaries were logged and masked"
    assert leaked(text, values) == []


@pytest.fixture
def json_worker_factory(monkeypatch, request):
    """Workers writing JSON lines (``LOG_FORMAT=json``)."""
    monkeypatch.setenv("LOG_FORMAT", "json")
    return request.getfixturevalue("worker_factory")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_json_log_lines_of_a_real_worker_carry_the_run_fields(json_worker_factory):
    values = seed_tokens()
    run, _ = engine.dispatch("cleanup", {}, trigger="test", batch_size=50, interval=0)
    worker = json_worker_factory()
    wait_until(
        lambda: MaintenanceRun.objects.filter(pk=run.pk, status=RunStatus.SUCCEEDED).exists(),
        timeout=60,
        message="the cleanup run to succeed",
    )
    worker.stop()
    text = worker.logfile.read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    finished = [
        line for line in lines if line.get("event") == "run_finished" and line.get("run_id") == run.pk
    ]
    assert len(finished) == 1, "one JSON line for the finished run"
    assert finished[0]["job"] == "cleanup" and finished[0]["status"] == "succeeded"
    assert sum(finished[0]["counts"].values()) > 0 and "duration" in finished[0]
    batches = [line for line in lines if line.get("event") == "batch" and line.get("run_id") == run.pk]
    assert batches and all({"phase", "processed", "duration"} <= set(line) for line in batches)
    assert leaked(text, values) == []


# --- token issuance in the web process ------------------------------------------------------------


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    """What the configured console handler writes, at DEBUG, for the test's duration."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if any(isinstance(f, RedactSecretsFilter) for f in h.filters)]
    assert handlers, "LOGGING gives the root logger the redacting console handler"
    handler = handlers[0]
    buffer = io.StringIO()
    previous_stream = handler.setStream(buffer)
    loggers = [
        root,
        *(logging.getLogger(name) for name in ("oauth_provider", "oauth_tasks", "django", "oauthlib")),
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        handler.setStream(previous_stream)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@pytest.mark.django_db
def test_token_issuance_and_use_log_no_token_or_secret(client, captured_log):
    client_secret = generate_token(64)
    app = get_application_model().objects.create(
        name="issuer",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=client_secret,
    )
    basic = base64.b64encode(f"{app.client_id}:{client_secret}".encode()).decode()

    issued = client.post(
        "/o/token/",
        {"grant_type": "client_credentials", "scope": "read"},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert issued.status_code == 200, issued.content
    access_token = issued.json()["access_token"]
    # A wrong secret, a token used at introspection, a revocation: the paths that log failures.
    wrong = base64.b64encode(f"{app.client_id}:{client_secret[:-4]}xxxx".encode()).decode()
    refused = client.post(
        "/o/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {wrong}"
    )
    assert refused.status_code == 401
    client.post("/o/introspect/", {"token": access_token}, HTTP_AUTHORIZATION=f"Basic {basic}")
    client.post("/o/revoke_token/", {"token": access_token}, HTTP_AUTHORIZATION=f"Basic {basic}")
    # Something in the code logs a token by mistake: the handler still masks it.
    logging.getLogger("oauth_provider.views").warning("issued %s for %s", access_token, app.client_id)

    text = captured_log.getvalue()
    assert "issued [REDACTED]" in text
    secrets_seen = [client_secret, access_token, basic, wrong, app.client_secret]
    assert leaked(text, secrets_seen) == []
