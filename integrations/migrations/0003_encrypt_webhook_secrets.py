"""Webhook endpoint secrets encrypted at rest (:mod:`integrations.encryption`).

The column becomes text (a Fernet token of a ``whsec_`` secret is about 160 characters), then every
existing row's plain secret is encrypted under the first of ``WEBHOOK_SECRET_KEYS``; backwards, each
is decrypted again before the column narrows. Raw SQL on purpose: the field itself would try to
decrypt the plain values.
"""

from django.db import migrations

import integrations.encryption


def _rewrite(schema_editor, change) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, secret FROM integrations_webhookendpoint")
        for pk, value in cursor.fetchall():
            cursor.execute("UPDATE integrations_webhookendpoint SET secret = %s WHERE id = %s", [change(value), pk])


def encrypt_plain_secrets(apps, schema_editor) -> None:
    _rewrite(schema_editor, integrations.encryption.encrypt)


def decrypt_secrets(apps, schema_editor) -> None:
    _rewrite(schema_editor, integrations.encryption.decrypt)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0002_webhookendpoint_webhookdelivery")]

    operations = [
        migrations.AlterField(
            model_name="webhookendpoint",
            name="secret",
            field=integrations.encryption.EncryptedSecretField(),
        ),
        migrations.RunPython(encrypt_plain_secrets, decrypt_secrets),
    ]
