"""The pgvector extension and the database cache table (used when there is no Redis)."""

from django.contrib.postgres.operations import CreateExtension
from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    initial = True
    dependencies: list = []
    operations = [
        CreateExtension("vector"),
        migrations.RunPython(create_cache_table, migrations.RunPython.noop),
    ]
