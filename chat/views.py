"""Chat REST API: the user's sessions, their history, and whole answers for plain REST clients."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from chat import generation as chat_generation
from chat import sse
from chat.models import ChatSession, Message
from chat.selectors import assistant_message_get, message_list, streaming_answer_ids
from chat.serializers import (
    AnswerSerializer,
    ChatSessionInputSerializer,
    ChatSessionSerializer,
    MessageCreateSerializer,
    MessageSerializer,
)
from chat.services import (
    UNSET,
    chat_session_create,
    chat_session_delete,
    chat_session_update,
)
from chat.sse import EVENT_STREAM, EventStreamRenderer, wants_event_stream
from chat.turns import prepare_turn
from config.errors import NotFound
from tenants.scoping import TenantScopedViewSet, request_tenant

logger = logging.getLogger(__name__)


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
    renderer_classes = [JSONRenderer, EventStreamRenderer]
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
        """Cancel its answers still generating, in whichever web process, then delete it."""
        try:
            chat_generation.cancel_anywhere(streaming_answer_ids(session=instance))
        except Exception:  # the channel layer is down: an answer elsewhere runs on, its final save finds no row
            logger.warning("chat_session_delete_cancel_failed", extra={"session_id": str(instance.pk)}, exc_info=True)
        chat_session_delete(session=instance)

    def _input(self, request: Request, partial: bool = False) -> dict[str, Any]:
        serializer = ChatSessionInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        """JSON for every DRF answer, also when the client asked for an event stream (errors
        before a stream starts): only the streams themselves are ``text/event-stream``."""
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and wants_event_stream(request):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = "application/json"
        return response

    @extend_schema(methods=["GET"], summary="A session's messages", responses={200: MessageSerializer(many=True)})
    @extend_schema(
        methods=["POST"],
        summary="Ask a question: the whole answer as JSON, or streamed as Server-Sent Events",
        description=(
            "With `Accept: text/event-stream` the answer streams as Server-Sent Events (chat.start, "
            "chat.token, chat.end, error; ids count the characters delivered) and keeps generating if "
            "the connection drops; without it, the whole answer as JSON."
        ),
        request=MessageCreateSerializer,
        responses={
            201: AnswerSerializer,
            (200, EVENT_STREAM): OpenApiResponse(description="Server-Sent Events"),
            429: OpenApiResponse(description="quota_exceeded"),
        },
    )
    @action(detail=True, methods=["get", "post"], url_path="messages")
    def messages(self, request: Request, pk: str | None = None) -> Any:
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
        if wants_event_stream(request):
            return sse.event_stream_response(sse.stream_new(sse.start_on_server_loop(turn), turn))
        generation = async_to_sync(chat_generation.complete)(turn)
        error = generation.error
        if error is not None:
            error.details = {**error.details, "message_id": generation.message_id}
            raise error
        answer = Message.objects.get(pk=turn.answer.pk)
        return Response(
            AnswerSerializer(answer, context={"question_id": turn.question.pk}).data, status=status.HTTP_201_CREATED
        )

    def _answer(self, request: Request, message_id: str | None) -> Message:
        session = self.get_object()  # the session is the user's (404 otherwise)
        message = assistant_message_get(tenant=request_tenant(request), user=request.user, message_id=message_id)
        if message.session_id != session.pk:
            raise NotFound("No answer with this id.", details={"message_id": str(message_id)})
        return message

    @extend_schema(
        summary="Resume an answer's event stream after Last-Event-ID",
        parameters=[
            OpenApiParameter("message_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, required=False),
        ],
        responses={(200, EVENT_STREAM): OpenApiResponse(description="Server-Sent Events")},
    )
    def message_stream(self, request: Request, pk: str | None = None, message_id: str | None = None) -> Any:
        """``chat.start`` (resumed), then the answer after ``Last-Event-ID`` characters, live to ``chat.end``."""
        message = self._answer(request, message_id)
        offset = sse.parse_last_event_id(request.headers.get("Last-Event-ID"))
        return sse.event_stream_response(sse.stream_resumed(message, offset))

    @extend_schema(
        summary="Stop an answer being generated (saved as cancelled)",
        description=(
            "Whichever server process generates the answer: 202 while it is still streaming (it ends "
            "`cancelled` with the text said so far), 409 `answer_finished` once it has ended."
        ),
        parameters=[OpenApiParameter("message_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        request=None,
        responses={202: OpenApiResponse(description="Cancelling"), 409: OpenApiResponse(description="Already ended")},
    )
    def message_cancel(self, request: Request, pk: str | None = None, message_id: str | None = None) -> Response:
        """Here, or through the channel layer to the process generating it (:mod:`chat.cancellation`)."""
        message = self._answer(request, message_id)
        chat_generation.answer_cancel(message)
        return Response({"message_id": str(message.pk), "status": "cancelling"}, status=status.HTTP_202_ACCEPTED)
