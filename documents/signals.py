"""Storage bookkeeping on deletion: a deleted document's PDF leaves the storage once the deletion commits.

A receiver rather than a service step because documents are also deleted by cascade (an operator
deleting a user or a tenant in the admin), which no service sees.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from documents.models import Document

logger = logging.getLogger(__name__)


@receiver(post_delete, sender=Document, dispatch_uid="documents_remove_file_on_delete")
def remove_file_on_commit(sender: type[Document], instance: Document, using: str, **kwargs: Any) -> None:
    """Delete the document's file when the transaction that deleted its row commits (never before)."""
    storage, name = instance.file.storage, instance.file.name
    if not name:
        return

    def remove_file() -> None:
        try:
            storage.delete(name)
        except OSError:
            logger.warning("document_file_delete_failed", exc_info=True, extra={"file": name})

    transaction.on_commit(remove_file, using=using)
