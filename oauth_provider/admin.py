"""Admin for the provider's models.

Secrets never show after creation: the client secret column holds a hash, and the change form
shows it read-only. Tokens are searched by their leading characters (a prefix), never listed in
full in the changelist.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model

from .models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    is_hashed_secret,
)
from .settings import oauth2_settings


def _prefix(value: str, length: int = 8) -> str:
    return f"{value[:length]}…" if value else ""


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


class AccessTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "token_prefix", "user", "application", "expires", "scope")
    list_select_related = ("application", "user")
    raw_id_fields = ("user", "source_refresh_token", "id_token", "application")
    search_fields = (
        "token__startswith",
        "user__" + get_user_model().USERNAME_FIELD,
        "application__client_id",
    )
    list_filter = ("application",)
    exclude = ("token", "token_checksum")
    readonly_fields = ("token_prefix",)
    show_full_result_count = False

    @admin.display(description="token")
    def token_prefix(self, obj):
        return _prefix(obj.token)


class RefreshTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "token_prefix", "user", "application", "revoked", "created")
    list_select_related = ("application", "user")
    raw_id_fields = ("user", "access_token", "application")
    search_fields = (
        "token__startswith",
        "user__" + get_user_model().USERNAME_FIELD,
        "application__client_id",
    )
    list_filter = ("application",)
    exclude = ("token", "token_checksum")
    readonly_fields = ("token_prefix",)
    show_full_result_count = False

    @admin.display(description="token")
    def token_prefix(self, obj):
        return _prefix(obj.token)


class GrantAdmin(admin.ModelAdmin):
    list_display = ("id", "code_prefix", "application", "user", "expires")
    raw_id_fields = ("user", "application")
    search_fields = ("code__startswith", "application__client_id", "user__" + get_user_model().USERNAME_FIELD)
    exclude = ("code",)
    readonly_fields = ("code_prefix",)
    show_full_result_count = False

    @admin.display(description="code")
    def code_prefix(self, obj):
        return _prefix(obj.code)


class IDTokenAdmin(admin.ModelAdmin):
    list_display = ("jti", "user", "application", "expires")
    raw_id_fields = ("user", "application")
    search_fields = ("user__" + get_user_model().USERNAME_FIELD, "application__client_id")
    list_filter = ("application",)
    show_full_result_count = False


admin.site.register(get_application_model(), oauth2_settings.APPLICATION_ADMIN_CLASS)
admin.site.register(get_access_token_model(), oauth2_settings.ACCESS_TOKEN_ADMIN_CLASS)
admin.site.register(get_grant_model(), oauth2_settings.GRANT_ADMIN_CLASS)
admin.site.register(get_id_token_model(), oauth2_settings.ID_TOKEN_ADMIN_CLASS)
admin.site.register(get_refresh_token_model(), oauth2_settings.REFRESH_TOKEN_ADMIN_CLASS)
