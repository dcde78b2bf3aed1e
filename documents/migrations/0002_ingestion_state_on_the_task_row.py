"""The task row becomes the one record of an ingestion: the document drops progress, stage and error.

A document's error is first copied to its task row where the row has none, so nothing is lost.
"""

from django.db import migrations


def copy_errors_to_tasks(apps, schema_editor):
    Document = apps.get_model("documents", "Document")
    Task = apps.get_model("tasks", "Task")
    for task_id, error in Document.objects.exclude(error=None).exclude(task=None).values_list("task_id", "error"):
        if error:
            Task.objects.filter(pk=task_id, error={}).update(error=error)


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0001_initial"),
        ("tasks", "0002_celery_task_name_and_timings"),
    ]

    operations = [
        migrations.RunPython(copy_errors_to_tasks, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="document",
            name="documents_document_progress_lte_100",
        ),
        migrations.RemoveField(model_name="document", name="error"),
        migrations.RemoveField(model_name="document", name="progress"),
        migrations.RemoveField(model_name="document", name="stage"),
    ]
