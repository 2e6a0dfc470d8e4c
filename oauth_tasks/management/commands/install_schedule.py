"""Install the maintenance app's default beat schedule (idempotent; operators' edits are kept)."""

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS

from oauth_tasks.schedule import install_schedule


class Command(BaseCommand):
    help = (
        "Create the default django-celery-beat entries (daily token cleanup, watchdog) that were "
        "never installed. Entries edited, disabled or deleted in the admin are left as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database to install into.")

    def handle(self, *args, **options):
        outcome = install_schedule(using=options["database"])
        for name, result in outcome.items():
            style = self.style.SUCCESS if result == "created" else self.style.NOTICE
            self.stdout.write(style(f"{name}: {result}"))
