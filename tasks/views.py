"""The task API: people's to-dos (CRUD) and the background work done for them (cancel, retry)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from accounts.permissions import IsMemberOrReadOnly
from tasks import services
from tasks.filters import TaskFilter
from tasks.models import Task
from tasks.serializers import TaskSerializer, TodoCreateSerializer, TodoUpdateSerializer
from tenants.scoping import TenantScopedViewSet

CONFLICT = OpenApiResponse(
    response={"$ref": "#/components/schemas/ErrorEnvelope"},
    description="`conflict`: a background task cannot be changed this way, or the status change is not allowed.",
)


@extend_schema_view(
    list=extend_schema(summary="List tasks", description="Your tasks (all of the tenant's for tenant admins)."),
    retrieve=extend_schema(summary="Get a task"),
    create=extend_schema(summary="Create a to-do", request=TodoCreateSerializer, responses={201: TaskSerializer}),
    update=extend_schema(
        summary="Replace a to-do", request=TodoUpdateSerializer, responses={200: TaskSerializer, 409: CONFLICT}
    ),
    partial_update=extend_schema(
        summary="Change a to-do", request=TodoUpdateSerializer, responses={200: TaskSerializer, 409: CONFLICT}
    ),
    destroy=extend_schema(summary="Delete a to-do", responses={204: None, 409: CONFLICT}),
)
class TaskViewSet(TenantScopedViewSet):
    """Tasks of the request's tenant: members and viewers see their own, tenant admins all; viewers only read."""

    queryset = Task.objects.all()
    serializer_class = TaskSerializer
    owner_field = "owner"
    permission_classes = [IsMemberOrReadOnly]
    filterset_class = TaskFilter
    ordering_fields = ["created_at", "updated_at", "due_at", "status", "progress", "title", "kind"]
    ordering = ["-created_at", "-id"]
    search_fields = ["title", "description"]

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "create":
            return TodoCreateSerializer
        if self.action in ("update", "partial_update"):
            return TodoUpdateSerializer
        return TaskSerializer

    def _output(self, task: Task, status_code: int = status.HTTP_200_OK) -> Response:
        return Response(TaskSerializer(task, context=self.get_serializer_context()).data, status=status_code)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        task = services.task_create_todo(
            tenant=request.tenant,  # type: ignore[attr-defined]
            owner=request.user,  # type: ignore[arg-type]
            title=data["title"],
            description=data.get("description", ""),
            due_at=data.get("due_at"),
        )
        return self._output(task, status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        task = self.get_object()
        serializer = self.get_serializer(data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        task = services.task_update_todo(task=task, data=dict(serializer.validated_data))
        return self._output(task)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.task_delete(task=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Complete a to-do",
        request=None,
        responses={200: TaskSerializer, 409: CONFLICT},
        description="A completed to-do is returned unchanged; a cancelled one or a background task is a 409.",
    )
    @action(detail=True, methods=["patch"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        return self._output(services.task_complete(task=self.get_object()))

    @extend_schema(
        summary="Cancel a task",
        request=None,
        responses={200: TaskSerializer, 409: CONFLICT},
        description=(
            "Pending or processing tasks become cancelled. Background work is revoked in Celery and its worker "
            "stops at its next checkpoint. A cancelled task is returned unchanged; a finished one is a 409."
        ),
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        return self._output(services.task_cancel(task=self.get_object()))

    @extend_schema(
        summary="Retry a background task",
        request=None,
        responses={202: TaskSerializer, 409: CONFLICT},
        description="A failed or cancelled background task is queued again as a new attempt.",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        return self._output(services.task_retry(task=self.get_object()), status.HTTP_202_ACCEPTED)
