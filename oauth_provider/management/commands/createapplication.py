"""Create an OAuth2 application from the command line.

Takes the arguments of django-oauth-toolkit's command. Bad input ends the command with a non-zero
exit status and one line naming the field; nothing is saved. The plaintext client secret is printed
once, because only its hash is stored.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from oauth_provider.models import get_application_model


def _choices(pairs) -> list[str]:
    return [value for value, _label in pairs]


class Command(BaseCommand):
    help = "Create a new OAuth2 application (client) and print its client id and secret."

    def add_arguments(self, parser) -> None:
        Application = get_application_model()
        parser.add_argument("client_type", help="One of: " + ", ".join(_choices(Application.CLIENT_TYPES)))
        parser.add_argument(
            "authorization_grant_type",
            help="One of: " + ", ".join(_choices(Application.GRANT_TYPES)),
        )
        parser.add_argument("--client-id", help="The client id (default: generated)")
        parser.add_argument("--client-secret", help="The client secret (default: generated)")
        parser.add_argument(
            "--no-hash-client-secret",
            dest="hash_client_secret",
            action="store_false",
            help="Store the client secret in plaintext (needed for HS256 ID tokens)",
        )
        parser.add_argument("--name", help="A name for the application")
        parser.add_argument("--user", help="Owner of the application: a user id or username")
        parser.add_argument("--redirect-uris", default="", help="Space-separated redirect URIs")
        parser.add_argument(
            "--post-logout-redirect-uris", default="", help="Space-separated post-logout redirect URIs"
        )
        parser.add_argument(
            "--skip-authorization",
            action="store_true",
            help="Never show the consent form for this application",
        )
        parser.add_argument(
            "--algorithm",
            default="",
            help="OIDC signing algorithm: '' (none), RS256 or HS256",
        )

    def handle(self, *args, **options) -> None:
        Application = get_application_model()
        if options["client_type"] not in _choices(Application.CLIENT_TYPES):
            raise CommandError(
                f"client_type: {options['client_type']!r} is not one of "
                + ", ".join(_choices(Application.CLIENT_TYPES))
            )
        if options["authorization_grant_type"] not in _choices(Application.GRANT_TYPES):
            raise CommandError(
                f"authorization_grant_type: {options['authorization_grant_type']!r} is not one of "
                + ", ".join(_choices(Application.GRANT_TYPES))
            )
        if options["algorithm"] not in _choices(Application.ALGORITHM_TYPES):
            raise CommandError(
                f"algorithm: {options['algorithm']!r} is not one of '', "
                + ", ".join(a for a in _choices(Application.ALGORITHM_TYPES) if a)
            )

        data = {
            "client_type": options["client_type"],
            "authorization_grant_type": options["authorization_grant_type"],
            "hash_client_secret": options["hash_client_secret"],
            "redirect_uris": options["redirect_uris"] or "",
            "post_logout_redirect_uris": options["post_logout_redirect_uris"] or "",
            "skip_authorization": options["skip_authorization"],
            "algorithm": options["algorithm"],
            "name": options["name"] or "",
        }
        if options["client_id"]:
            data["client_id"] = options["client_id"]
        if options["client_secret"]:
            data["client_secret"] = options["client_secret"]
        if options["user"]:
            data["user"] = self._find_user(options["user"])

        application = Application(**data)
        try:
            application.full_clean()
        except ValidationError as exc:
            raise CommandError(self._one_line(exc)) from exc

        plaintext_secret = application.client_secret
        with transaction.atomic():
            application.save()
        self.stdout.write(f"client_id: {application.client_id}")
        if plaintext_secret:
            stored = (
                "hashed; shown only this once" if application.hash_client_secret else "stored in plaintext"
            )
            self.stdout.write(f"client_secret: {plaintext_secret}  ({stored})")
        self.stdout.write(
            self.style.SUCCESS(
                f"Application {application.name or application.client_id} created (id {application.pk})."
            )
        )

    def _find_user(self, value: str):
        User = get_user_model()
        user = None
        if value.isdigit():
            user = User._default_manager.filter(pk=int(value)).first()
        if user is None:
            user = User._default_manager.filter(**{User.USERNAME_FIELD: value}).first()
        if user is None:
            raise CommandError(f"user: no user with id or {User.USERNAME_FIELD} {value!r}")
        return user

    @staticmethod
    def _one_line(exc: ValidationError) -> str:
        parts = []
        for field, messages in exc.message_dict.items():
            label = "application" if field == "__all__" else field
            parts.append(f"{label}: {' '.join(str(m) for m in messages)}")
        return "; ".join(parts)
