"""One watermark per revocation target on every backend: a plain unique constraint on
``target_key`` (a SHA-256 of application, user and scope) replaces the four conditional unique
constraints, which MariaDB and MySQL do not create.

Existing rows get their key. Where the old constraints were missing (MariaDB, MySQL) a target may
have several rows: the one with the latest ``not_before`` stays (it refuses everything the others
refused), the others are deleted.
"""

from django.conf import settings
from django.db import migrations, models

from oauth_provider.models import watermark_target_key


def set_target_keys(apps, schema_editor):
    model = apps.get_model("oauth_provider", "RevocationWatermark")
    rows = model._base_manager.using(schema_editor.connection.alias)
    seen: set[str] = set()
    for mark in rows.order_by("-not_before", "-id").only("id", "application_id", "user_id", "scope"):
        key = watermark_target_key(mark.application_id, mark.user_id, mark.scope)
        if key in seen:
            rows.filter(pk=mark.pk).delete()
            continue
        seen.add(key)
        rows.filter(pk=mark.pk).update(target_key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_provider", "0002_revocation_watermark"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="revocationwatermark", name="watermark_user_application"),
        migrations.RemoveConstraint(model_name="revocationwatermark", name="watermark_application"),
        migrations.RemoveConstraint(model_name="revocationwatermark", name="watermark_user"),
        migrations.RemoveConstraint(model_name="revocationwatermark", name="watermark_scope"),
        migrations.AddField(
            model_name="revocationwatermark",
            name="target_key",
            field=models.CharField(max_length=64, null=True, editable=False),
        ),
        migrations.RunPython(set_target_keys, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="revocationwatermark",
            name="target_key",
            field=models.CharField(
                editable=False,
                help_text="SHA-256 of application, user and scope, set on save: one row per target.",
                max_length=64,
            ),
        ),
        migrations.AddConstraint(
            model_name="revocationwatermark",
            constraint=models.UniqueConstraint(fields=("target_key",), name="watermark_one_row_per_target"),
        ),
    ]
