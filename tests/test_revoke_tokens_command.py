"""``manage.py revoke_tokens``: dispatch to the worker by default, ``--sync`` in process, clear errors."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oauth_provider.models import RevocationWatermark, get_access_token_model, get_refresh_token_model
from oauth_provider.revocation import PHASES
from oauth_provider.tokens import is_token_usable
from oauth_tasks.models import MaintenanceRun, RunStatus
from tests.conftest import run_status, wait_until
from tests.factories import make_access_token, make_application, make_refresh_token, make_user

AccessToken = get_access_token_model()


def revoke_tokens(*args: str) -> str:
    out = StringIO()
    call_command("revoke_tokens", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def tokens(db):
    alice = make_user("alice")
    leaky, other = make_application(name="leaky"), make_application(name="other")
    return {
        "alice": alice,
        "leaky": leaky,
        "leaky_tokens": [make_access_token(leaky, alice) for _ in range(3)],
        "other_token": make_access_token(other, alice),
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        ([], "params: name a user, an application, both, or a scope"),
        (["--application", "no-such-client"], "application: no application with id or client_id"),
        (["--user", "nobody"], "user: no user with id or username"),
        (["--scope", "read write"], "scope: scope must be one scope name without spaces"),
        (["--scope", "read", "--user", "alice"], "scope: a scope revocation cannot also name"),
        (["--application", "{leaky}", "--batch-size", "0"], "batch_size"),
        (["--application", "{leaky}", "--interval", "-1"], "interval"),
        (["--application", "{leaky}", "--sync", "--batch-size", "0"], "batch_size"),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(tokens, args, message):
    args = [a.format(leaky=tokens["leaky"].client_id) for a in args]
    with pytest.raises(CommandError, match=re.escape(message)):
        revoke_tokens(*args)
    assert not MaintenanceRun.objects.exists()
    assert not RevocationWatermark.objects.exists()
    assert AccessToken.objects.count() == 4


@pytest.mark.django_db
def test_sync_revokes_in_process_and_prints_the_counts(tokens):
    leaky = tokens["leaky"]
    refresh = make_refresh_token(leaky, tokens["alice"], access_token=tokens["leaky_tokens"][0])
    dry = revoke_tokens("--application", leaky.client_id, "--sync", "--dry-run")
    assert "Would revoke tokens of application" in dry and "access_tokens: 3" in dry
    assert AccessToken.objects.count() == 4 and not RevocationWatermark.objects.exists()

    out = revoke_tokens("--application", str(leaky.pk), "--sync", "--batch-size", "2")
    assert "Revoked tokens of application" in out
    assert "access_tokens: 3" in out and "refresh_tokens: 1" in out
    assert list(AccessToken.objects.values_list("pk", flat=True)) == [tokens["other_token"].pk]
    assert get_refresh_token_model().objects.get(pk=refresh.pk).revoked is not None
    assert RevocationWatermark.objects.filter(application=leaky).exists()
    assert not MaintenanceRun.objects.exists()


@pytest.mark.django_db
def test_by_default_it_dispatches_a_run_and_the_tokens_are_refused_at_once(tokens):
    out = revoke_tokens("--user", "alice", "--application", tokens["leaky"].client_id)
    run = MaintenanceRun.objects.get()
    assert f"run #{run.pk}" in out and "refused from now on" in out
    assert (run.kind, run.trigger, run.dry_run) == ("revoke", "command", False)
    assert run.params == {"user": tokens["alice"].pk, "application": tokens["leaky"].pk}
    # No batch has run; the rows are all there and already refused.
    assert AccessToken.objects.count() == 4
    assert not any(is_token_usable(AccessToken.objects.get(pk=t.pk)) for t in tokens["leaky_tokens"])
    assert is_token_usable(AccessToken.objects.get(pk=tokens["other_token"].pk))

    again = revoke_tokens("--user", str(tokens["alice"].pk), "--application", str(tokens["leaky"].pk))
    assert f"already pending: run #{run.pk}" in again and MaintenanceRun.objects.count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_dispatched_revocation_is_finished_by_the_worker(tokens, worker):
    out = revoke_tokens("--application", tokens["leaky"].client_id, "--batch-size", "1")
    run_id = int(re.search(r"run #(\d+)", out).group(1))
    done = wait_until(lambda: (lambda r: r if not r.is_active else None)(run_status(run_id)), timeout=60)
    assert done.status == RunStatus.SUCCEEDED, done.last_error
    assert done.counts == {**dict.fromkeys(PHASES, 0), "access_tokens": 3}
    assert list(AccessToken.objects.values_list("pk", flat=True)) == [tokens["other_token"].pk]
