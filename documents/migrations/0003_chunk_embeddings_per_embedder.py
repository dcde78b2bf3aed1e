"""Vectors move to ``ChunkEmbedding`` (one row per chunk and embedder, untyped ``halfvec``, no padding);
chunks gain ``page_breaks``; every tenant that has chunks is pinned to the embedder they were made
with, so that a new default embedder changes nothing for it until it is re-embedded.

The per-embedder HNSW indexes are made after ``migrate`` (``documents.apps``), not here: the set of
embedders is configuration.
"""

import django.db.models.deletion
import pgvector.django.halfvec
from django.db import migrations, models

LOCAL_MODEL = "all-MiniLM-L6-v2-int8"  # documents.embeddings.LOCAL_MODEL when this was written


def pin_tenant_embedders(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT ON (tenant_id) tenant_id, embedding_model FROM documents_chunk "
            "GROUP BY tenant_id, embedding_model ORDER BY tenant_id, count(*) DESC"
        )
        models_by_tenant = dict(cursor.fetchall())
    for tenant in Tenant.objects.filter(pk__in=list(models_by_tenant)):
        model = models_by_tenant[tenant.pk]
        provider = "hashing" if model.startswith("hashing") else "local" if model == LOCAL_MODEL else "openai"
        settings = dict(tenant.settings or {})
        if not settings.get("embedder"):
            settings["embedder"] = provider
            Tenant.objects.filter(pk=tenant.pk).update(settings=settings)


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0002_ingestion_state_on_the_task_row"),
        ("tenants", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="ChunkEmbedding",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("model", models.CharField(max_length=100)),
                ("dimensions", models.PositiveIntegerField()),
                ("embedding", pgvector.django.halfvec.HalfVectorField()),
                (
                    "chunk",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="embeddings",
                        to="documents.chunk",
                    ),
                ),
                (
                    "tenant",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tenants.tenant",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("chunk", "model", "dimensions"), name="documents_chunkembedding_unique_chunk_model"
                    )
                ],
            },
        ),
        # Vectors in the row rather than TOAST, as before: exact scans read them 3x faster.
        migrations.RunSQL(
            "ALTER TABLE documents_chunkembedding ALTER COLUMN embedding SET STORAGE PLAIN",
            reverse_sql=migrations.RunSQL.noop,
        ),
        # The padded vectors, cut back to their embedder's width.
        migrations.RunSQL(
            "INSERT INTO documents_chunkembedding (chunk_id, tenant_id, model, dimensions, embedding) "
            "SELECT id, tenant_id, embedding_model, embedding_dimensions, "
            "subvector(embedding, 1, embedding_dimensions)::halfvec FROM documents_chunk",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RunPython(pin_tenant_embedders, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="chunk", name="documents_chunk_embedding_hnsw"),
        migrations.RemoveField(model_name="chunk", name="embedding"),
        migrations.RemoveField(model_name="chunk", name="embedding_dimensions"),
        migrations.RemoveField(model_name="chunk", name="embedding_model"),
        migrations.AddField(
            model_name="chunk",
            name="page_breaks",
            field=models.JSONField(blank=True, default=list, null=True),
        ),
        # Chunks made before page breaks were kept: unknown, so they cite their whole page range.
        migrations.RunSQL(
            "UPDATE documents_chunk SET page_breaks = NULL WHERE page_start <> page_end",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
