"""PostgreSQL: a partial index of the refresh tokens that rule 2 deletes.

Rule 2 deletes refresh tokens that are not revoked and have no access token. Its first window has
no cursor yet, and the planner walked the primary key from the start, reading every live and
revoked refresh token below the first orphan (at 1M access tokens, the phase's first batch took
0.42-0.47 s against 0.18-0.20 s for the next one). This index holds the orphans' keys alone. See
``_postgresql_index`` for where the index exists and how it is built.
"""

from django.db import migrations

from . import _postgresql_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("oauth_provider", "0007_idtoken_key_with_expiry"),
    ]

    operations = [
        _postgresql_index.operation(
            "RefreshToken", "oauth_provider_refreshtoken_orphaned", _postgresql_index.orphaned_refresh_tokens
        ),
    ]
