"""A refresh token replayed within ``REFRESH_TOKEN_GRACE_PERIOD_SECONDS``, as django-oauth-toolkit.

A client that lost the answer to its refresh retries with the old token and gets the pair the
first refresh issued. When the refresh token of that pair is gone (cleaned up, or revoked by a
concurrent rotation) while its access token survived, the retry still succeeds: the surviving
access token comes back with a new refresh token bound to it. Over real HTTP against
``live_server``.
"""

from __future__ import annotations

import requests
from requests.auth import HTTPBasicAuth

from oauth_provider.models import get_access_token_model, get_refresh_token_model, token_checksum

from .factories import make_access_token, make_refresh_token
from .test_endpoints_support import (
    base_url_fixture,  # noqa: F401  (the base_url fixture)
    make_client,
    make_staff_user,
    provider_settings,
)


def refresh(base_url: str, client, raw: str) -> requests.Response:
    return requests.post(
        f"{base_url}/o/token/",
        data={"grant_type": "refresh_token", "refresh_token": raw},
        auth=HTTPBasicAuth(client.client_id, client.secret),
    )


def first_rotation(base_url: str, settings, grace: int):
    provider_settings(settings, REFRESH_TOKEN_GRACE_PERIOD_SECONDS=grace, ROTATE_REFRESH_TOKEN=True)
    user = make_staff_user()
    client = make_client()
    first = make_refresh_token(
        client.application, user, access_token=make_access_token(client.application, user)
    )
    rotated = refresh(base_url, client, first.token)
    assert rotated.status_code == 200, rotated.text
    return client, first, rotated.json()


def test_a_replay_within_the_grace_period_returns_the_same_pair(base_url, settings):
    client, first, pair = first_rotation(base_url, settings, grace=300)

    replay = refresh(base_url, client, first.token)

    assert replay.status_code == 200, replay.text
    assert replay.json()["access_token"] == pair["access_token"]
    assert replay.json()["refresh_token"] == pair["refresh_token"]


def test_a_replay_after_the_successors_refresh_token_is_gone_gets_a_new_one_for_the_same_access_token(
    base_url, settings
):
    client, first, pair = first_rotation(base_url, settings, grace=300)
    successor = get_access_token_model().objects.get(token_checksum=token_checksum(pair["access_token"]))
    get_refresh_token_model().objects.filter(access_token=successor).delete()

    replay = refresh(base_url, client, first.token)

    assert replay.status_code == 200, replay.text
    body = replay.json()
    assert body["access_token"] == pair["access_token"]
    reissued = get_refresh_token_model().objects.get(token_checksum=token_checksum(body["refresh_token"]))
    assert reissued.access_token_id == successor.pk
    assert reissued.revoked is None
    assert reissued.token_family == first.token_family or first.token_family is None
    # The new refresh token is a working one.
    onward = refresh(base_url, client, body["refresh_token"])
    assert onward.status_code == 200, onward.text


def test_without_a_grace_period_a_replay_is_refused(base_url, settings):
    client, first, pair = first_rotation(base_url, settings, grace=0)
    successor = get_access_token_model().objects.get(token_checksum=token_checksum(pair["access_token"]))
    get_refresh_token_model().objects.filter(access_token=successor).delete()

    replay = refresh(base_url, client, first.token)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert not get_refresh_token_model().objects.filter(access_token=successor).exists()
