"""The Celery task name on the row (replaces the kind → task registry) and per-stage timings."""

from django.db import migrations, models

# The Celery task that ran each background kind before rows carried the name themselves.
CELERY_TASK_OF_KIND = {"document_ingestion": "documents.ingest"}


def fill_celery_task_names(apps, schema_editor):
    Task = apps.get_model("tasks", "Task")
    for kind, name in CELERY_TASK_OF_KIND.items():
        Task.objects.filter(kind=kind, celery_task_name="").update(celery_task_name=name)


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="celery_task_name",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name="task",
            name="timings",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(fill_celery_task_names, migrations.RunPython.noop),
    ]
