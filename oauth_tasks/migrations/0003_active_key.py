"""One active run per job and parameters on every backend: a plain unique constraint on
``active_key`` (the fingerprint while a run is active, NULL after) replaces the conditional unique
constraint, which MariaDB and MySQL do not create.

Existing active runs get their fingerprint. Where the old constraint was missing (MariaDB, MySQL)
several active runs may share one: the oldest keeps running, the others are cancelled with a note
naming it, since two runs of the same work race over the same rows.
"""

from django.db import migrations, models
from django.utils import timezone

ACTIVE = ["pending", "running"]


def set_active_keys(apps, schema_editor):
    run_model = apps.get_model("oauth_tasks", "MaintenanceRun")
    db = schema_editor.connection.alias
    kept: dict[str, int] = {}
    active = run_model._base_manager.using(db).filter(status__in=ACTIVE).order_by("created_at", "id")
    for run in active.only("id", "params_key"):
        if run.params_key in kept:
            run_model._base_manager.using(db).filter(pk=run.pk).update(
                status="cancelled",
                finished_at=timezone.now(),
                next_batch_at=None,
                cancel_requested=True,
                last_error=f"cancelled on upgrade: run #{kept[run.params_key]} does the same work",
            )
            continue
        kept[run.params_key] = run.pk
        run_model._base_manager.using(db).filter(pk=run.pk).update(active_key=run.params_key)


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_tasks", "0002_run_result"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="maintenancerun",
            name="oauth_tasks_one_active_run_per_job",
        ),
        migrations.AddField(
            model_name="maintenancerun",
            name="active_key",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="The fingerprint while the run is active, NULL after: one active run per fingerprint.",
                max_length=64,
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="maintenancerun",
            name="params_key",
            field=models.CharField(
                editable=False, help_text="Fingerprint of kind, parameters and dry-run flag.", max_length=64
            ),
        ),
        migrations.RunPython(set_active_keys, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="maintenancerun",
            constraint=models.UniqueConstraint(
                fields=("active_key",),
                name="oauth_tasks_one_active_run_per_job",
                violation_error_message="A run of this job with these parameters is already active.",
            ),
        ),
        migrations.AddConstraint(
            model_name="maintenancerun",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("active_key__isnull", False), ("status__in", ["pending", "running"])),
                    models.Q(
                        models.Q(("status__in", ["pending", "running"]), _negated=True),
                        ("active_key__isnull", True),
                    ),
                    _connector="OR",
                ),
                name="oauth_tasks_active_key_while_active",
                violation_error_message="active_key is the fingerprint while the run is active, NULL after.",
            ),
        ),
    ]
