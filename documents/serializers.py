"""API shapes of projects, documents, chunks and search (separate input and output where they differ)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from documents.ingestion_progress import ingestion_error
from documents.models import Chunk, Document, Project
from documents.search import MAX_QUERY_CHARS, MAX_TOP_K, MODES, SearchHit
from tenants.scoping import request_tenant


@extend_schema_field(OpenApiTypes.UUID)
class TenantProjectField(serializers.PrimaryKeyRelatedField):
    """A project of the request's tenant (another tenant's id is simply "does not exist")."""

    def get_queryset(self) -> Any:
        request = self.context.get("request")
        return Project.objects.for_tenant(request_tenant(request) if request else None)


def _has_nul(value: Any) -> bool:
    """Whether a JSON value holds U+0000 in any string or key."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class ProjectSerializer(serializers.ModelSerializer):
    document_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "settings", "document_count", "created_at", "updated_at"]
        read_only_fields = ["id", "document_count", "created_at", "updated_at"]

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        return value

    def validate_settings(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if _has_nul(value):  # PostgreSQL's jsonb cannot store U+0000: a DataError (500) otherwise
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


class DocumentTaskSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    stage = serializers.CharField()
    attempts = serializers.IntegerField()


class DocumentErrorSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="e.g. `pdf_no_text`, `embedding_failed`, `cancelled`.")
    message = serializers.CharField()


class DocumentSerializer(serializers.ModelSerializer):
    """A document as the API shows it (read-only).

    ``progress``, ``stage``, ``error`` and ``timings`` are those of its current ingestion task (the
    one record of the run); ``status`` is the document's own lifecycle.
    """

    owner = serializers.UUIDField(source="owner_id", read_only=True)
    project = serializers.UUIDField(source="project_id", read_only=True, allow_null=True)
    progress = serializers.SerializerMethodField()
    stage = serializers.SerializerMethodField()
    timings = serializers.SerializerMethodField()
    task = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    ocr_pages = serializers.DictField(
        child=serializers.FloatField(allow_null=True),
        read_only=True,
        help_text="Pages read by OCR (no text layer) → the OCR confidence, 0–1 (null: OCR found no text).",
    )

    class Meta:
        model = Document
        fields = [
            "id",
            "title",
            "project",
            "owner",
            "original_filename",
            "content_type",
            "size",
            "sha256",
            "status",
            "progress",
            "stage",
            "page_count",
            "chunk_count",
            "ocr_pages",
            "error",
            "timings",
            "task",
            "embedding_model",
            "embedding_dimensions",
            "created_at",
            "updated_at",
            "processed_at",
        ]
        read_only_fields = fields

    @extend_schema_field(DocumentTaskSerializer(allow_null=True))
    def get_task(self, document: Document) -> dict[str, Any] | None:
        task = document.task
        if task is None:
            return None
        return {
            "id": str(task.pk),  # task ids are strings in every payload (design.md, "Ids in JSON")
            "status": task.status,
            "progress": task.progress,
            "stage": task.stage,
            "attempts": task.attempts,
        }

    # A ready document's ingestion is done, even in the moment between the commit that made it ready
    # (with its chunks) and the task row's completion right after it.
    def get_progress(self, document: Document) -> int:
        if document.status == Document.Status.READY or document.task is None:
            return 100 if document.status == Document.Status.READY else 0
        return document.task.progress

    def get_stage(self, document: Document) -> str:
        if document.status == Document.Status.READY or document.task is None:
            return "done" if document.status == Document.Status.READY else ""
        return document.task.stage

    @extend_schema_field(serializers.DictField(child=serializers.FloatField()))
    def get_timings(self, document: Document) -> dict[str, float]:
        """Seconds spent in each stage of the current ingestion (extract, ocr, chunk, embed, store, index)."""
        return dict(document.task.timings or {}) if document.task is not None else {}

    @extend_schema_field(DocumentErrorSerializer(allow_null=True))
    def get_error(self, document: Document) -> dict[str, Any] | None:
        return ingestion_error(document.task)

    def to_representation(self, document: Document) -> dict[str, Any]:
        """The fields above, built directly: what DRF's field-by-field representation gives (a test holds the
        two equal), without building the fields for every request and walking them for every row (about
        half of a 20-row list's serialisation cost). A subclass with fields of its own gets DRF's."""
        if type(self) is not DocumentSerializer:
            return super().to_representation(document)
        return {
            "id": str(document.pk),
            "title": document.title,
            "project": _str_or_none(document.project_id),
            "owner": _str_or_none(document.owner_id),
            "original_filename": document.original_filename,
            "content_type": document.content_type,
            "size": document.size,
            "sha256": document.sha256,
            "status": str(document.status),
            "progress": self.get_progress(document),
            "stage": self.get_stage(document),
            "page_count": document.page_count,
            "chunk_count": document.chunk_count,
            "ocr_pages": {str(page): _float_or_none(v) for page, v in (document.ocr_pages or {}).items()},
            "error": self.get_error(document),
            "timings": self.get_timings(document),
            "task": self.get_task(document),
            "embedding_model": document.embedding_model,
            "embedding_dimensions": document.embedding_dimensions,
            "created_at": _datetime(document.created_at),
            "updated_at": _datetime(document.updated_at),
            "processed_at": _datetime(document.processed_at),
        }


_DATETIME = serializers.DateTimeField()


def _datetime(value: Any) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


class DocumentUploadResponseSerializer(DocumentSerializer):
    duplicate = serializers.BooleanField(read_only=True, help_text="True when these bytes were uploaded before.")

    class Meta(DocumentSerializer.Meta):
        fields = [*DocumentSerializer.Meta.fields, "duplicate"]
        read_only_fields = fields

    # ``duplicate`` is the upload's outcome, not the document's: the view adds it to this representation.


class DocumentUploadSerializer(serializers.Serializer):
    """multipart/form-data: ``file`` (a PDF), optional ``title`` and ``project``.

    The file itself is checked by :func:`documents.uploads.check_pdf_upload` (so that every refusal
    has its own status code); here it is only required.
    """

    file = serializers.FileField(
        required=False,
        allow_empty_file=True,
        use_url=False,
        help_text=f"A PDF of at most {settings.MAX_UPLOAD_MB} MB and {settings.MAX_PDF_PAGES} pages.",
    )
    title = serializers.CharField(required=False, allow_blank=True, max_length=255)
    project = TenantProjectField(required=False, allow_null=True)


@extend_schema_serializer(component_name="DocumentUpload")
class DocumentUploadSchemaSerializer(DocumentUploadSerializer):
    """multipart/form-data: ``file`` (a PDF, required), optional ``title`` and ``project``."""

    # The schema's shape of the upload. DocumentUploadSerializer leaves ``file`` optional because the
    # view's own checks (documents.uploads) refuse a missing file with a message of their own.

    file = serializers.FileField(
        required=True,
        use_url=False,
        help_text=f"A PDF of at most {settings.MAX_UPLOAD_MB} MB and {settings.MAX_PDF_PAGES} pages.",
    )


class DocumentUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(required=False, max_length=255)
    project = TenantProjectField(required=False, allow_null=True)

    def validate_title(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("This field may not be blank.")
        return value


class ChunkSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True, help_text="The chunk's id (a string, as `chunk_id` in citations).")

    class Meta:
        model = Chunk
        fields = [
            "id",
            "index",
            "text",
            "page_start",
            "page_end",
            "token_count",
            "char_start",
            "char_end",
            "page_breaks",
            "source",
            "ocr_confidence",
        ]
        read_only_fields = fields


class SearchRequestSerializer(serializers.Serializer):
    query = serializers.CharField(min_length=1, max_length=MAX_QUERY_CHARS, trim_whitespace=True)
    top_k = serializers.IntegerField(min_value=1, max_value=MAX_TOP_K, default=8)
    mode = serializers.ChoiceField(choices=MODES, default="hybrid")
    project = TenantProjectField(required=False, allow_null=True)
    document_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, allow_null=True, max_length=1000
    )


class SearchHitSerializer(serializers.Serializer):
    chunk_id = serializers.CharField(help_text="The chunk's id (a string, as in citations and events).")
    document_id = serializers.UUIDField()
    document_title = serializers.CharField()
    page_start = serializers.IntegerField()
    page_end = serializers.IntegerField()
    text = serializers.CharField()
    source = serializers.ChoiceField(
        choices=Chunk.Source.choices, help_text="Where the text came from: text layer or OCR."
    )
    ocr_confidence = serializers.FloatField(
        allow_null=True,
        help_text="OCR text: the lowest recognition confidence (0-1) of the chunk's scanned pages; null for the text layer.",
    )
    score = serializers.FloatField()
    retrievers = serializers.ListField(child=serializers.ChoiceField(choices=["semantic", "keyword"]))


class SearchResponseSerializer(serializers.Serializer):
    """The search answer's schema. The view builds the answer with :func:`search_response` (a search is a
    hot path: DRF's nested serializer cost ~1 ms for ten hits); a test holds the two equal."""

    query = serializers.CharField()
    mode = serializers.CharField()
    top_k = serializers.IntegerField()
    results = SearchHitSerializer(many=True)


def search_response(*, query: str, mode: str, top_k: int, hits: list[SearchHit]) -> dict[str, Any]:
    """What :class:`SearchResponseSerializer` would give for ``hits``, built directly."""
    return {
        "query": query,
        "mode": mode,
        "top_k": top_k,
        "results": [
            {
                "chunk_id": str(hit.chunk_id),
                "document_id": str(hit.document_id),
                "document_title": hit.document_title,
                "page_start": hit.page_start,
                "page_end": hit.page_end,
                "text": hit.text,
                "source": hit.source,
                "ocr_confidence": hit.ocr_confidence,
                "score": float(hit.score),
                "retrievers": list(hit.retrievers),
            }
            for hit in hits
        ],
    }
