"""Chat REST API: the user's sessions, their history, and whole answers for plain REST clients."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from chat import generation as chat_generation
from chat.models import ChatSession, Message
from chat.selectors import message_list
from chat.serializers import (
    AnswerSerializer,
    ChatSessionInputSerializer,
    ChatSessionSerializer,
    MessageCreateSerializer,
    MessageSerializer,
)
from chat.services import UNSET, chat_session_create, chat_session_delete, chat_session_update
from chat.turns import prepare_turn
from tenants.scoping import TenantScopedViewSet, request_tenant


@extend_schema(tags=["chat"])
@extend_schema_view(
    list=extend_schema(summary="List your chat sessions"),
    create=extend_schema(summary="Start a chat session"),
    retrieve=extend_schema(summary="Get a chat session"),
    update=extend_schema(summary="Replace a chat session's title and scope"),
    partial_update=extend_schema(summary="Change a chat session's title or scope"),
    destroy=extend_schema(summary="Delete a chat session and its messages"),
)
class ChatSessionViewSet(TenantScopedViewSet):
    """``/api/v1/chat/sessions/``: the user's own chat sessions (private: admins do not see others').

    ``GET/POST {id}/messages/``: the history (paginated, oldest first), or ask a question and get the
    whole answer as JSON (the same pipeline as the WebSocket; 429 ``quota_exceeded`` with
    ``Retry-After``, 400 ``model_not_allowed``, 5xx ``upstream_*`` when the model fails).
    """

    queryset = ChatSession.objects.all()
    serializer_class = ChatSessionSerializer
    owner_field = "user"
    search_fields = ["title"]
    ordering_fields = ["updated_at", "created_at", "title"]
    ordering = ["-updated_at"]

    def get_queryset(self) -> QuerySet[ChatSession]:
        # Private to their user whatever the role: the mixin exempts admins from owner_field, we do not.
        return super().get_queryset().filter(user=self.request.user)

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action in ("create", "update", "partial_update"):
            return ChatSessionInputSerializer
        if self.action == "messages":
            return MessageCreateSerializer if self.request.method == "POST" else MessageSerializer
        return ChatSessionSerializer

    @extend_schema(responses={201: ChatSessionSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._input(request)
        session = chat_session_create(
            tenant=request_tenant(request),
            user=request.user,
            title=data.get("title", ""),
            project_id=data.get("project"),
            document_ids=data.get("document_ids"),
            model=data.get("model") or None,
        )
        return Response(ChatSessionSerializer(session).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: ChatSessionSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        session = self.get_object()
        data = self._input(request, partial=kwargs.get("partial", False))
        session = chat_session_update(
            session=session,
            title=data.get("title", UNSET),
            project_id=data.get("project", UNSET),
            document_ids=data.get("document_ids", UNSET),
            model=data.get("model", UNSET),
        )
        return Response(ChatSessionSerializer(session).data)

    def perform_destroy(self, instance: ChatSession) -> None:
        chat_generation.cancel_session_generations(instance.pk)
        chat_session_delete(session=instance)

    def _input(self, request: Request, partial: bool = False) -> dict[str, Any]:
        serializer = ChatSessionInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    @extend_schema(methods=["GET"], summary="A session's messages", responses={200: MessageSerializer(many=True)})
    @extend_schema(
        methods=["POST"],
        summary="Ask a question and get the whole answer (not streamed)",
        request=MessageCreateSerializer,
        responses={201: AnswerSerializer, 429: OpenApiResponse(description="quota_exceeded")},
    )
    @action(detail=True, methods=["get", "post"], url_path="messages")
    def messages(self, request: Request, pk: str | None = None) -> Response:
        session = self.get_object()
        if request.method == "GET":
            queryset = message_list(session=session)
            page = self.paginate_queryset(queryset)
            return self.get_paginated_response(MessageSerializer(page, many=True).data)
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        turn = prepare_turn(
            tenant=request_tenant(request),
            user=request.user,
            content=data["content"],
            session_id=session.pk,
            project_id=data.get("project", UNSET),
            document_ids=data.get("document_ids", UNSET),
            model=data.get("model") or None,
        )
        generation = async_to_sync(chat_generation.complete)(turn)
        error = generation.error
        if error is not None:
            error.details = {**error.details, "message_id": generation.message_id}
            raise error
        answer = Message.objects.get(pk=turn.answer.pk)
        return Response(
            AnswerSerializer(answer, context={"question_id": turn.question.pk}).data, status=status.HTTP_201_CREATED
        )
