"""Client ids and authorization codes compare byte for byte on MySQL and MariaDB too.

Their default collations are case-insensitive, so ``client_id = 'ABC'`` found the client ``abc``
and ``code = 'ABC'`` the code ``abc``. The columns get the binary collation there (see
``ExactCharField``); PostgreSQL and SQLite already compare exactly, so their schema is left
untouched (no table rebuild on SQLite).
"""

from django.db import migrations

import oauth_provider.generators
import oauth_provider.models


class AlterFieldOnMySQL(migrations.AlterField):
    """``AlterField`` whose schema change runs on MySQL and MariaDB only; the state changes everywhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "mysql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "mysql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_provider", "0004_grant_consumed_auth_time"),
    ]

    operations = [
        AlterFieldOnMySQL(
            model_name="application",
            name="client_id",
            field=oauth_provider.models.ExactCharField(
                db_index=True, default=oauth_provider.generators.generate_client_id, max_length=100, unique=True
            ),
        ),
        AlterFieldOnMySQL(
            model_name="grant",
            name="code",
            field=oauth_provider.models.ExactCharField(max_length=255, unique=True),
        ),
    ]
