"""The maintenance API answers hostile bodies with its JSON error naming ``body``, over real HTTP.

A body nested deep enough to exhaust the JSON parser's recursion, and a body larger than Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE``, sent by a staff user's ``maintenance`` token to the provider
served by ``live_server``: neither is a 500 nor Django's HTML error page, and no run is created.
"""

from __future__ import annotations

import pytest
import requests
from django.conf import settings

from oauth_tasks.api import MAX_BODY_DEPTH
from oauth_tasks.models import MaintenanceRun
from tests.factories import make_access_token, make_application, make_user

RUNS = "/maintenance/api/runs/"


@pytest.fixture
def maintenance_token(transactional_db) -> str:
    user = make_user("operator", is_staff=True, is_superuser=True)
    return make_access_token(make_application(), user, scope="maintenance").token


def post_raw(live_server, token: str, body: bytes) -> requests.Response:
    return requests.post(
        live_server.url + RUNS,
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=60,
    )


def assert_body_refused(response: requests.Response) -> dict:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    answer = response.json()
    assert answer["error"] == "invalid_request" and answer["field"] == "body", answer
    assert not MaintenanceRun.objects.exists()
    return answer


def test_json_nested_past_the_parsers_recursion_limit_is_a_400_naming_body(live_server, maintenance_token):
    depth = 30_000  # 60 KB, under the API's own 64 KB limit
    body = b'{"kind": "cleanup", "params": ' + b"[" * depth + b"]" * depth + b"}"

    answer = assert_body_refused(post_raw(live_server, maintenance_token, body))

    assert "nested deeper" in answer["detail"]


def test_json_nested_deeper_than_the_api_allows_is_a_400_naming_body(live_server, maintenance_token):
    depth = MAX_BODY_DEPTH + 1
    body = b'{"kind": "cleanup", "params": {"batch": ' + b"[" * depth + b"]" * depth + b"}}"

    answer = assert_body_refused(post_raw(live_server, maintenance_token, body))

    assert f"nested deeper than {MAX_BODY_DEPTH} levels" in answer["detail"]


def test_a_body_over_djangos_upload_limit_is_the_json_error_not_an_html_page(live_server, maintenance_token):
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024
    body = b'{"kind": "cleanup", "params": {"pad": "' + b"x" * size + b'"}}'

    answer = assert_body_refused(post_raw(live_server, maintenance_token, body))

    assert "bytes" in answer["detail"]


def test_a_body_within_the_limits_still_starts_a_run(live_server, maintenance_token):
    response = post_raw(live_server, maintenance_token, b'{"kind": "cleanup", "dry_run": true}')

    assert response.status_code == 202, response.text[:300]
    assert MaintenanceRun.objects.count() == 1
