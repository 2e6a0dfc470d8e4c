"""Relations, on-delete rules, secret hashing and token lookup of the provider models."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.core.exceptions import ValidationError

from oauth_provider.models import (
    AbstractApplication,
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    token_checksum,
)
from tests.factories import (
    make_access_token,
    make_application,
    make_grant,
    make_id_token,
    make_refresh_token,
    make_user,
)

pytestmark = pytest.mark.django_db


def test_model_getters_return_the_default_models():
    assert get_application_model()._meta.label == "oauth_provider.Application"
    assert get_access_token_model()._meta.label == "oauth_provider.AccessToken"
    assert get_refresh_token_model()._meta.label == "oauth_provider.RefreshToken"
    assert get_grant_model()._meta.label == "oauth_provider.Grant"
    assert get_id_token_model()._meta.label == "oauth_provider.IDToken"


def test_access_refresh_and_id_token_are_linked_both_ways():
    user = make_user()
    app = make_application(user)
    id_token = make_id_token(app, user)
    access = make_access_token(app, user, id_token=id_token)
    refresh = make_refresh_token(app, user, access_token=access)
    successor = make_access_token(app, user, source_refresh_token=refresh)

    assert access.refresh_token == refresh
    assert refresh.refreshed_access_token == successor
    assert id_token.access_token == access


def test_deleting_a_refresh_token_sets_the_successors_source_link_to_null():
    user = make_user()
    app = make_application(user)
    refresh = make_refresh_token(app, user)
    successor = make_access_token(app, user, source_refresh_token=refresh)
    refresh.delete()
    successor.refresh_from_db()
    assert successor.source_refresh_token_id is None


def test_deleting_an_access_token_keeps_its_refresh_token_with_a_null_link():
    user = make_user()
    app = make_application(user)
    access = make_access_token(app, user)
    refresh = make_refresh_token(app, user, access_token=access)
    access.delete()
    refresh.refresh_from_db()
    assert refresh.access_token_id is None


def test_deleting_an_id_token_deletes_its_access_token():
    user = make_user()
    app = make_application(user)
    id_token = make_id_token(app, user)
    access = make_access_token(app, user, id_token=id_token)
    id_token.delete()
    assert not get_access_token_model().objects.filter(pk=access.pk).exists()


def test_deleting_an_application_deletes_its_tokens_and_grants():
    user = make_user()
    app = make_application(user)
    access = make_access_token(app, user)
    make_refresh_token(app, user, access_token=access)
    make_id_token(app, user)
    make_grant(app, user)
    app.delete()
    for model in (
        get_access_token_model(),
        get_refresh_token_model(),
        get_id_token_model(),
        get_grant_model(),
    ):
        assert model.objects.count() == 0, model


def test_deleting_a_user_deletes_their_applications_and_tokens():
    user = make_user()
    app = make_application(user)
    make_access_token(app, user)
    user.delete()
    assert get_application_model().objects.count() == 0
    assert get_access_token_model().objects.count() == 0


def test_revoking_a_refresh_token_marks_it_and_deletes_its_access_token():
    user = make_user()
    app = make_application(user)
    access = make_access_token(app, user)
    refresh = make_refresh_token(app, user, access_token=access)
    refresh.revoke()
    refresh.refresh_from_db()
    assert refresh.revoked is not None
    assert refresh.access_token_id is None
    assert not get_access_token_model().objects.filter(pk=access.pk).exists()
    first_revoked = refresh.revoked
    refresh.revoke()
    refresh.refresh_from_db()
    assert refresh.revoked == first_revoked


def test_client_secret_is_stored_hashed_and_checked():
    app = make_application(client_secret="s3cret-value")
    app.refresh_from_db()
    assert app.client_secret != "s3cret-value"
    assert identify_hasher(app.client_secret)
    assert app.check_client_secret("s3cret-value")
    assert not app.check_client_secret("s3cret-valuf")
    assert not app.check_client_secret("")
    assert not app.check_client_secret(None)


def test_saving_again_does_not_hash_the_hash():
    app = make_application(client_secret="s3cret-value")
    app.name = "renamed"
    app.save()
    app.refresh_from_db()
    assert app.check_client_secret("s3cret-value")


def test_unhashed_secret_is_stored_as_given_and_compared():
    app = make_application(client_secret="plain-secret", hash_client_secret=False)
    app.refresh_from_db()
    assert app.client_secret == "plain-secret"
    assert app.check_client_secret("plain-secret")
    assert not app.check_client_secret("plain-secreT")


def test_generated_secret_is_hashed_by_default():
    app = make_application()
    assert identify_hasher(app.client_secret)


def test_token_checksum_is_derived_on_save_and_used_for_lookup():
    user = make_user()
    app = make_application(user)
    access = make_access_token(app, user)
    assert access.token_checksum == token_checksum(access.token)
    assert get_access_token_model().lookup(access.token) == access
    assert get_access_token_model().lookup(access.token + "x") is None
    refresh = make_refresh_token(app, user, access_token=access)
    assert get_refresh_token_model().lookup(refresh.token) == refresh


def test_redirect_uris_match_exactly():
    app = make_application(redirect_uris="https://a.example/cb https://b.example/cb")
    assert app.redirect_uri_allowed("https://a.example/cb")
    assert not app.redirect_uri_allowed("https://a.example/cb/extra")
    assert not app.redirect_uri_allowed("https://a.example/c")
    assert not app.redirect_uri_allowed("https://a.example/cb?x=1")


def test_allows_grant_type_is_the_registered_grant_by_default():
    app = make_application()
    assert app.allows_grant_type(AbstractApplication.GRANT_AUTHORIZATION_CODE)
    assert app.allows_grant_type("password", AbstractApplication.GRANT_AUTHORIZATION_CODE)
    assert not app.allows_grant_type(AbstractApplication.GRANT_CLIENT_CREDENTIALS)


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"redirect_uris": "ftp://a.example/cb"}, "redirect_uris"),
        ({"redirect_uris": "https://a.example/cb#frag"}, "redirect_uris"),
        ({"redirect_uris": "not-a-uri"}, "redirect_uris"),
        ({"redirect_uris": ""}, "redirect_uris"),
        ({"client_type": "public", "algorithm": "HS256", "hash_client_secret": False}, "algorithm"),
        ({"algorithm": "HS256"}, "hash_client_secret"),
    ],
)
def test_clean_names_the_bad_field(fields, field):
    Application = get_application_model()
    data = {
        "name": "x",
        "client_type": "confidential",
        "authorization_grant_type": "authorization-code",
        "redirect_uris": "https://a.example/cb",
    }
    data.update(fields)
    with pytest.raises(ValidationError) as excinfo:
        Application(**data).full_clean()
    assert field in excinfo.value.message_dict


def test_token_validity_and_scopes():
    user = make_user()
    app = make_application(user)
    live = make_access_token(app, user, scope="read write")
    expired = make_access_token(app, user, expires_in=-1)
    assert live.is_valid(["read"])
    assert not live.is_valid(["admin"])
    assert not expired.is_valid()
    assert live.scopes == {"read": "Reading scope", "write": "Writing scope"}


def test_bearer_backend_does_not_restore_an_inactive_users_session():
    from oauth_provider.backends import OAuth2Backend

    user = make_user()
    assert OAuth2Backend().get_user(user.pk) == user
    user.is_active = False
    user.save()
    assert OAuth2Backend().get_user(user.pk) is None
    assert OAuth2Backend().get_user(999_999) is None
