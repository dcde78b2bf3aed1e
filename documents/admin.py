"""Operators' admin: projects, documents (status filter, reprocess and delete actions), chunks (read-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest

from config.errors import Conflict
from documents import services
from documents.ingestion_progress import ingestion_error
from documents.models import Chunk, ChunkEmbedding, Document, Project


class TenantFixedAdmin(admin.ModelAdmin):
    """The tenant is chosen when a row is added and fixed afterwards: what hangs off the row (chunks,
    files, documents in a project) carries that tenant too and would not move with it."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        return (*readonly, "tenant") if obj is not None else readonly


@admin.register(Project)
class ProjectAdmin(TenantFixedAdmin):
    list_display = ("name", "tenant", "created_at", "updated_at")
    list_filter = ("tenant",)
    search_fields = ("name", "description", "tenant__slug")
    list_select_related = ("tenant",)
    ordering = ("tenant__slug", "name")


class DocumentAdminForm(forms.ModelForm):
    """Refuses an owner or a project of another tenant than the document's."""

    class Meta:
        model = Document
        fields = ["title", "owner", "project"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        tenant_id = self.instance.tenant_id
        for field in ("owner", "project"):
            value = cleaned.get(field)
            if value is not None and value.tenant_id != tenant_id:
                self.add_error(field, f"This {field} belongs to another tenant than the document.")
        return cleaned


@admin.register(Document)
class DocumentAdmin(TenantFixedAdmin):
    form = DocumentAdminForm
    list_display = (
        "title",
        "tenant",
        "owner",
        "project",
        "status",
        "progress",
        "stage",
        "page_count",
        "chunk_count",
        "size",
        "created_at",
    )
    list_filter = ("status", "tenant", "embedding_model")
    search_fields = ("title", "original_filename", "sha256", "owner__email", "tenant__slug")
    list_select_related = ("tenant", "owner", "project", "task")
    raw_id_fields = ("owner", "project", "task")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = (
        "id",
        "file",
        "original_filename",
        "content_type",
        "size",
        "sha256",
        "status",
        "progress",
        "stage",
        "page_count",
        "chunk_count",
        "error",
        "task",
        "embedding_model",
        "embedding_dimensions",
        "created_at",
        "updated_at",
        "processed_at",
    )
    actions = ("reprocess_documents", "delete_documents")

    @admin.display(description="progress")
    def progress(self, obj: Document) -> int:
        return obj.task.progress if obj.task else 0

    @admin.display(description="stage")
    def stage(self, obj: Document) -> str:
        return obj.task.stage if obj.task else ""

    @admin.display(description="error")
    def error(self, obj: Document) -> str:
        error = ingestion_error(obj.task)
        return f"{error['type']}: {error['message']}" if error else ""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # the bulk delete would skip cancelling ingestion and removing files
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # documents come in through the API or `manage.py ingest`

    @admin.action(description="Reprocess (ingest again)")
    def reprocess_documents(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        queued, skipped = 0, 0
        for document in queryset.select_related("owner"):
            try:
                services.document_reprocess(document=document, user=document.owner)
                queued += 1
            except Conflict:
                skipped += 1
        self.message_user(
            request,
            f"{queued} document(s) queued for reprocessing; {skipped} already in progress.",
            messages.SUCCESS if queued else messages.WARNING,
        )

    @admin.action(description="Delete with chunks and files (cancels ingestion)")
    def delete_documents(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        count = 0
        for document in queryset:
            services.document_delete(document=document)
            count += 1
        self.message_user(request, f"{count} document(s) deleted.", messages.SUCCESS)

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        services.document_delete(document=obj)


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ("document", "index", "page_start", "page_end", "token_count", "embedders", "tenant")
    list_filter = ("tenant",)
    search_fields = ("text", "document__title")
    list_select_related = ("document", "tenant")
    ordering = ("document", "index")
    readonly_fields = (
        "tenant",
        "document",
        "index",
        "text",
        "page_start",
        "page_end",
        "page_breaks",
        "token_count",
        "char_start",
        "char_end",
        "embedders",
    )
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Chunk]:
        return (
            super()
            .get_queryset(request)
            .defer("search_vector")
            .prefetch_related(
                Prefetch("embeddings", queryset=ChunkEmbedding.objects.only("chunk_id", "model", "dimensions"))
            )
        )

    @admin.display(description="embedders")
    def embedders(self, obj: Chunk) -> str:
        return ", ".join(f"{e.model}/{e.dimensions}" for e in obj.embeddings.all())
