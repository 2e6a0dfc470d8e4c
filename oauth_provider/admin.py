"""Admin for the provider's models.

Secrets never show after creation: the client secret column holds a hash, and the change form
shows it read-only. A token or a grant code is found by its whole value only (compared through the
indexed checksum), never by a part of it: a prefix search answers "some token starts with this",
which recovers a token a character at a time. Lists show the start of a value's checksum, never a
part of the value itself.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils.translation import ngettext

from .models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    is_hashed_secret,
    token_checksum,
)
from .settings import oauth2_settings

# As django-oauth-toolkit: the user's username, and e-mail when the user model has one.
_user_model = get_user_model()
USER_SEARCH_FIELDS: tuple[str, ...] = (f"user__{_user_model.USERNAME_FIELD}",)
if _user_model.USERNAME_FIELD != "email" and any(f.name == "email" for f in _user_model._meta.get_fields()):
    USER_SEARCH_FIELDS += ("user__email",)


def _fingerprint(value: str, length: int = 12) -> str:
    """What the admin shows of a token or code: a prefix of its SHA-256, nothing of the value."""
    return f"sha256:{token_checksum(value)[:length]}…" if value else ""


MASK_MIN_LENGTH = 16
MASK_SUFFIX_LENGTH = 4


def mask_credential(value):
    """django-oauth-toolkit's masking of a credential, for admin subclasses written for DOT: a value
    of at least 16 characters shows its last 4, a shorter one only "…", an empty one stays empty.

    This admin itself shows a SHA-256 fingerprint (``masked_token``, ``masked_code``), which reveals
    no character of the credential.
    """
    if not value:
        return value
    if len(value) < MASK_MIN_LENGTH:
        return "…"
    return "…" + value[-MASK_SUFFIX_LENGTH:]


class ExactSecretSearchMixin:
    """Adds the search "this whole secret value", by equality, to the admin's ``search_fields``.

    ``secret_lookup`` turns the search term into a filter that matches only the row holding exactly
    that value; nothing here ever matches part of a secret.
    """

    def secret_lookup(self, value: str) -> Q:
        return Q(token_checksum=token_checksum(value))

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term and " " not in term:
            results = results | queryset.filter(self.secret_lookup(term))
        return results, may_have_duplicates


class ApplicationAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "client_id", "user", "client_type", "authorization_grant_type", "created")
    list_filter = ("client_type", "authorization_grant_type", "skip_authorization", "algorithm")
    radio_fields = {"client_type": admin.HORIZONTAL, "authorization_grant_type": admin.VERTICAL}
    search_fields = ("name", "client_id", "user__" + get_user_model().USERNAME_FIELD)
    raw_id_fields = ("user",)
    readonly_fields = ("created", "updated")

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        # Once saved, a hashed secret is shown read-only: it is a hash, not the secret.
        if obj is not None and is_hashed_secret(obj.client_secret):
            fields.append("client_secret")
        return fields


class AccessTokenAdmin(ExactSecretSearchMixin, admin.ModelAdmin):
    list_display = ("id", "masked_token", "user", "application", "expires", "scope")
    actions = ("revoke_tokens",)
    list_select_related = ("application", "user")
    raw_id_fields = ("user", "source_refresh_token", "id_token", "application")
    search_fields = ("application__client_id", "application__name", *USER_SEARCH_FIELDS)
    list_filter = ("application",)
    exclude = ("token", "token_checksum")
    readonly_fields = ("masked_token",)
    show_full_result_count = False

    def __init__(self, model, admin_site) -> None:
        super().__init__(model, admin_site)
        # A swapped access token model may have no ``id_token`` (or other) link.
        names = {field.name for field in model._meta.get_fields()}
        self.raw_id_fields = tuple(name for name in type(self).raw_id_fields if name in names)

    @admin.display(description="token")
    def masked_token(self, obj):
        return _fingerprint(obj.token)

    @admin.action(description="Revoke selected access tokens")
    def revoke_tokens(self, request, queryset):
        """As DOT: an access token goes with its refresh token (revoked), so neither is usable."""
        revoked = 0
        for access_token in queryset.iterator():
            refresh_token = getattr(access_token, "refresh_token", None)
            if refresh_token is not None:
                refresh_token.revoke()  # marks it revoked and deletes its access token
            access_token.revoke()  # the access token of an already revoked refresh token too
            revoked += 1
        self.message_user(
            request, ngettext("Revoked %d access token.", "Revoked %d access tokens.", revoked) % revoked
        )


class RefreshTokenAdmin(ExactSecretSearchMixin, admin.ModelAdmin):
    list_display = ("id", "masked_token", "user", "application", "revoked", "created")
    actions = ("revoke_tokens",)
    list_select_related = ("application", "user")
    raw_id_fields = ("user", "access_token", "application")
    search_fields = ("application__client_id", "application__name", *USER_SEARCH_FIELDS)
    list_filter = ("application",)
    exclude = ("token", "token_checksum")
    readonly_fields = ("masked_token",)
    show_full_result_count = False

    @admin.display(description="token")
    def masked_token(self, obj):
        return _fingerprint(obj.token)

    @admin.action(description="Revoke selected refresh tokens")
    def revoke_tokens(self, request, queryset):
        revoked = 0
        for refresh_token in queryset.iterator():
            refresh_token.revoke()
            revoked += 1
        self.message_user(
            request, ngettext("Revoked %d refresh token.", "Revoked %d refresh tokens.", revoked) % revoked
        )


class GrantAdmin(ExactSecretSearchMixin, admin.ModelAdmin):
    list_display = ("id", "masked_code", "application", "user", "expires")
    raw_id_fields = ("user", "application")
    search_fields = ("application__client_id", "application__name", *USER_SEARCH_FIELDS)
    exclude = ("code",)
    readonly_fields = ("masked_code",)
    show_full_result_count = False

    def secret_lookup(self, value: str) -> Q:
        # Compared again in Python: a case-insensitive collation (MySQL's default) would match
        # the code with its letters' case changed.
        rows = self.model._default_manager.filter(code=value).values_list("pk", "code")
        return Q(pk__in=[pk for pk, code in rows if code == value])

    @admin.display(description="code")
    def masked_code(self, obj):
        return _fingerprint(obj.code)


class IDTokenAdmin(admin.ModelAdmin):
    list_display = ("jti", "user", "application", "expires")
    raw_id_fields = ("user", "application")
    search_fields = ("application__client_id", "application__name", *USER_SEARCH_FIELDS)
    list_filter = ("application",)
    show_full_result_count = False


def get_application_admin_class():
    """``APPLICATION_ADMIN_CLASS`` (DOT's helper)."""
    return oauth2_settings.APPLICATION_ADMIN_CLASS


def get_access_token_admin_class():
    return oauth2_settings.ACCESS_TOKEN_ADMIN_CLASS


def get_grant_admin_class():
    return oauth2_settings.GRANT_ADMIN_CLASS


def get_id_token_admin_class():
    return oauth2_settings.ID_TOKEN_ADMIN_CLASS


def get_refresh_token_admin_class():
    return oauth2_settings.REFRESH_TOKEN_ADMIN_CLASS


admin.site.register(get_application_model(), get_application_admin_class())
admin.site.register(get_access_token_model(), get_access_token_admin_class())
admin.site.register(get_grant_model(), get_grant_admin_class())
admin.site.register(get_id_token_model(), get_id_token_admin_class())
admin.site.register(get_refresh_token_model(), get_refresh_token_admin_class())
