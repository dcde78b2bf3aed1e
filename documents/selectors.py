"""Reads of the documents app, always scoped to a tenant."""

from __future__ import annotations

from django.db.models import QuerySet

from documents.models import Chunk, Document
from tenants.models import Tenant


def document_list(*, tenant: Tenant | None) -> QuerySet[Document]:
    """The tenant's documents, with their current ingestion task (one query for a page)."""
    return Document.objects.for_tenant(tenant).select_related("task")


def chunk_list(*, document: Document) -> QuerySet[Chunk]:
    """A document's chunks in order (the search vector is not loaded; vectors live in another table)."""
    return (
        Chunk.objects.filter(document=document, tenant_id=document.tenant_id).defer("search_vector").order_by("index")
    )
