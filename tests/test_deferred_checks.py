"""A batch's deferred foreign key checks run inside the batch (PostgreSQL), where its time is measured.

Django's foreign keys are ``DEFERRABLE INITIALLY DEFERRED`` on PostgreSQL: a row pointing at a
missing row is refused at ``COMMIT``. ``run_deferred_checks`` makes the check happen at once, so
the engine's batch duration (the pacer's input) includes the checks' cost.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from oauth_provider.models import get_grant_model
from oauth_tasks.deferred_checks import run_deferred_checks
from tests.conftest import make_expired_grants

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="deferred foreign key checks are PostgreSQL's (run with DATABASE_URL=postgres://...)",
    ),
]


def _point_a_grant_at_a_missing_application() -> None:
    grant = get_grant_model().objects.get(pk=make_expired_grants(1)[0])
    get_grant_model().objects.filter(pk=grant.pk).update(application_id=10**9)


def test_the_outstanding_checks_run_when_asked_not_at_commit():
    with pytest.raises(IntegrityError), transaction.atomic():
        _point_a_grant_at_a_missing_application()  # deferred: no error yet
        run_deferred_checks(outermost=True)
        pytest.fail("the deferred check did not run")  # pragma: no cover


def test_a_transaction_someone_else_opened_keeps_its_deferred_checks():
    with transaction.atomic():
        sid = transaction.savepoint()
        _point_a_grant_at_a_missing_application()
        run_deferred_checks(outermost=False)  # nothing runs: the check still waits for COMMIT
        transaction.savepoint_rollback(sid)
