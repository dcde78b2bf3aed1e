"""The documents API: projects, documents (upload, status, chunks, file, reprocess) and search."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import FileResponse, HttpRequest
from django.http.response import HttpResponseBase
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts.permissions import IsMemberOrReadOnly
from config.errors import DomainError, NotFound, error_response
from documents import selectors, services
from documents.filters import DocumentFilter, ProjectFilter
from documents.links import document_link_make, document_link_resolve
from documents.models import Document, Project
from documents.search import search_chunks
from documents.serializers import (
    ChunkSerializer,
    DocumentSerializer,
    DocumentUpdateSerializer,
    DocumentUploadResponseSerializer,
    DocumentUploadSchemaSerializer,
    DocumentUploadSerializer,
    ProjectSerializer,
    SearchRequestSerializer,
    SearchResponseSerializer,
    search_response,
)
from documents.uploads import install_upload_limit
from tenants.scoping import TenantScopedViewSet


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response={"$ref": "#/components/schemas/ErrorEnvelope"}, description=description)


class IsOwnerOrTenantAdminForWrites(BasePermission):
    """Anyone in the tenant reads a document; only its owner or a tenant admin changes it."""

    message = "Only the document's owner or a tenant admin can change it."

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        user = request.user
        return bool(getattr(user, "is_tenant_admin", False) or getattr(obj, "owner_id", None) == user.pk)


@extend_schema_view(
    list=extend_schema(summary="List projects"),
    retrieve=extend_schema(summary="Get a project"),
    create=extend_schema(
        summary="Create a project", responses={201: ProjectSerializer, 409: _error("`conflict`: name in use")}
    ),
    update=extend_schema(
        summary="Replace a project", responses={200: ProjectSerializer, 409: _error("`conflict`: name in use")}
    ),
    partial_update=extend_schema(
        summary="Change a project", responses={200: ProjectSerializer, 409: _error("`conflict`")}
    ),
    destroy=extend_schema(summary="Delete a project (its documents stay, without a project)"),
)
class ProjectViewSet(TenantScopedViewSet):
    """Workspaces of the request's tenant; viewers only read."""

    queryset = Project.objects.annotate(document_count=Count("documents"))
    serializer_class = ProjectSerializer
    permission_classes = [IsMemberOrReadOnly]
    filterset_class = ProjectFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    ordering = ["name"]
    search_fields = ["name", "description"]

    def perform_create(self, serializer: BaseSerializer) -> None:
        project = services.project_create(tenant=self.request.tenant, **serializer.validated_data)  # type: ignore[attr-defined]
        serializer.instance = self.get_queryset().get(pk=project.pk)  # with its document count

    def perform_update(self, serializer: BaseSerializer) -> None:
        project = services.project_update(project=serializer.instance, **serializer.validated_data)
        serializer.instance = self.get_queryset().get(pk=project.pk)

    def perform_destroy(self, instance: Project) -> None:
        services.project_delete(project=instance)


@extend_schema_view(
    list=extend_schema(
        summary="List documents",
        description="Filters: `status` (repeatable), `project`, `title`; `search` in titles and file names.",
    ),
    retrieve=extend_schema(summary="Get a document (status, progress, counts, error, task)"),
    partial_update=extend_schema(summary="Rename a document or move it to a project", request=DocumentUpdateSerializer),
    destroy=extend_schema(summary="Delete a document, its chunks and its file; cancels its ingestion"),
)
class DocumentViewSet(TenantScopedViewSet):
    """PDFs of the request's tenant. Members upload; the owner or a tenant admin changes or deletes."""

    queryset = Document.objects.all()
    serializer_class = DocumentSerializer
    permission_classes = [IsMemberOrReadOnly, IsOwnerOrTenantAdminForWrites]
    filterset_class = DocumentFilter
    ordering_fields = ["created_at", "updated_at", "title", "size", "status", "page_count"]
    ordering = ["-created_at", "-id"]
    search_fields = ["title", "original_filename"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> Any:
        return super().get_queryset().select_related("task")

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "create":
            return DocumentUploadSerializer
        if self.action == "partial_update":
            return DocumentUpdateSerializer
        if self.action == "chunks":
            return ChunkSerializer
        return DocumentSerializer

    def _output(self, document: Document, status_code: int = status.HTTP_200_OK) -> Response:
        return Response(DocumentSerializer(document, context=self.get_serializer_context()).data, status=status_code)

    @extend_schema(
        summary="Upload a PDF",
        request={"multipart/form-data": DocumentUploadSchemaSerializer},
        responses={
            202: DocumentUploadResponseSerializer,
            200: OpenApiResponse(
                DocumentUploadResponseSerializer,
                description="The same bytes were uploaded before: that document, `duplicate: true`.",
            ),
            400: _error("`validation_error`: no file, or an empty one"),
            413: _error("`payload_too_large`: over MAX_UPLOAD_MB"),
            415: _error("`unsupported_media_type`: not a PDF"),
            422: _error("`pdf_invalid`, `pdf_encrypted` or `pdf_too_many_pages`"),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        install_upload_limit(request)  # before request.data reads the body
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        document, duplicate = services.document_upload(
            tenant=request.tenant,  # type: ignore[attr-defined]
            owner=request.user,  # type: ignore[arg-type]
            upload=data.get("file"),
            title=data.get("title"),
            project=data.get("project"),
        )
        body = DocumentUploadResponseSerializer(document, context=self.get_serializer_context()).data
        body["duplicate"] = duplicate
        return Response(body, status=status.HTTP_200_OK if duplicate else status.HTTP_202_ACCEPTED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        document = self.get_object()
        serializer = self.get_serializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return self._output(services.document_update(document=document, **serializer.validated_data))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.document_delete(document=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Ingest the document again",
        request=None,
        responses={202: DocumentSerializer, 409: _error("`conflict`: already being processed")},
    )
    @action(detail=True, methods=["post"])
    def reprocess(self, request: Request, pk: str | None = None) -> Response:
        document = services.document_reprocess(document=self.get_object(), user=request.user)  # type: ignore[arg-type]
        fresh = self.get_queryset().filter(pk=document.pk).first()
        if fresh is None:  # deleted by a concurrent request since the reprocess committed
            raise NotFound("The document was deleted.")
        return self._output(fresh, status.HTTP_202_ACCEPTED)

    @extend_schema(summary="The document's chunks, in order", responses={200: ChunkSerializer(many=True)})
    # No filter backends: the document list's ordering/search/filters would otherwise be applied to
    # the document lookup (``?ordering=index`` was a FieldError, a 500); chunks come in index order.
    @action(detail=True, methods=["get"], filter_backends=[])
    def chunks(self, request: Request, pk: str | None = None) -> Response:
        document = self.get_object()
        page = self.paginate_queryset(selectors.chunk_list(document=document))
        return self.get_paginated_response(ChunkSerializer(page, many=True).data)

    @extend_schema(
        summary="Download the PDF", responses={(200, "application/pdf"): OpenApiResponse(description="The file.")}
    )
    @action(detail=True, methods=["get"], url_path="file")
    def file(self, request: Request, pk: str | None = None) -> FileResponse:
        return _file_response(self.get_object(), as_attachment=True)

    @extend_schema(
        summary="A short-lived signed download link of the PDF",
        description="`url` works without a bearer token for `DOCUMENT_LINK_SECONDS`; add `#page=N` to open a page.",
        responses={200: OpenApiResponse(description="`{url, expires_in}`")},
    )
    @action(detail=True, methods=["get"], url_path="file-link", filter_backends=[])
    def file_link(self, request: Request, pk: str | None = None) -> Response:
        document = self.get_object()
        url = document_link_make(document=document, user=request.user)  # type: ignore[arg-type]
        return Response({"url": url, "expires_in": settings.DOCUMENT_LINK_SECONDS})


def _file_response(document: Document, *, as_attachment: bool) -> FileResponse:
    try:
        handle = document.file.open("rb")
    except (FileNotFoundError, ValueError) as exc:
        raise NotFound("The document's file is missing.") from exc
    return FileResponse(
        handle,
        as_attachment=as_attachment,
        filename=document.original_filename or f"{document.pk}.pdf",
        content_type="application/pdf",
    )


def signed_file(request: HttpRequest, token: str) -> HttpResponseBase:
    """``GET /files/<token>``: the PDF of a signed link (:mod:`documents.links`), shown inline."""
    if request.method not in ("GET", "HEAD"):
        return error_response(405, "method_not_allowed", "Only GET.")
    try:
        response: HttpResponseBase = _file_response(document_link_resolve(token=token), as_attachment=False)
    except DomainError as exc:
        return error_response(exc.status_code, exc.code, exc.message)
    response["Cache-Control"] = "private, no-store"
    return response


class SearchViewSet(viewsets.GenericViewSet, mixins.CreateModelMixin):
    """``POST /search/``: ranked chunks of the tenant's ready documents."""

    permission_classes = [IsAuthenticated]
    serializer_class = SearchRequestSerializer
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self) -> Any:
        return Document.objects.none()

    @extend_schema(
        summary="Search the documents", request=SearchRequestSerializer, responses={200: SearchResponseSerializer}
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = data.get("project")
        hits = search_chunks(
            tenant=request.tenant,  # type: ignore[attr-defined]
            query=data["query"],
            top_k=data["top_k"],
            mode=data["mode"],
            project_id=project.pk if project else None,
            document_ids=data.get("document_ids"),
            user=request.user,
        )
        return Response(search_response(query=data["query"], mode=data["mode"], top_k=data["top_k"], hits=hits))
