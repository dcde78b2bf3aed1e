"""Input and output shapes of the chat API."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from chat.models import ChatSession, Message
from documents.models import Chunk


class ChatSessionSerializer(serializers.ModelSerializer):
    """A session as the API shows it."""

    project = serializers.UUIDField(source="project_id", allow_null=True, read_only=True)

    class Meta:
        model = ChatSession
        fields = ["id", "title", "project", "document_ids", "model", "created_at", "updated_at"]
        read_only_fields = fields


class ChatSessionInputSerializer(serializers.Serializer):
    """Create or change a session: title, filter (project, documents) and model."""

    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    project = serializers.UUIDField(required=False, allow_null=True)
    document_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, allow_empty=True, max_length=100
    )
    model = serializers.CharField(max_length=100, required=False, allow_blank=True)


class CitationSerializer(serializers.Serializer):
    n = serializers.IntegerField()
    chunk_id = serializers.CharField()
    document_id = serializers.CharField()
    document_title = serializers.CharField()
    page_start = serializers.IntegerField(allow_null=True)
    page_end = serializers.IntegerField(allow_null=True)
    snippet = serializers.CharField()
    source = serializers.ChoiceField(choices=Chunk.Source.choices, required=False)
    ocr_confidence = serializers.FloatField(allow_null=True, required=False)


class MessageSerializer(serializers.ModelSerializer):
    """A question or an answer."""

    session = serializers.UUIDField(source="session_id", read_only=True)
    citations = CitationSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "session",
            "role",
            "content",
            "citations",
            "status",
            "prompt_tokens",
            "completion_tokens",
            "model",
            "ttft_ms",
            "total_ms",
            "error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MessageCreateSerializer(serializers.Serializer):
    """A question for ``POST .../messages/``; ``project``/``document_ids`` narrow this question only."""

    content = serializers.CharField(trim_whitespace=True)
    model = serializers.CharField(max_length=100, required=False, allow_blank=True)
    project = serializers.UUIDField(required=False, allow_null=True)
    document_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, allow_empty=True, max_length=100
    )

    def validate_content(self, value: str) -> str:
        if len(value) > settings.CHAT_MAX_MESSAGE_CHARS:
            raise serializers.ValidationError(
                f"Ensure this field has no more than {settings.CHAT_MAX_MESSAGE_CHARS} characters."
            )
        return value


class AnswerSerializer(MessageSerializer):
    """The answer of ``POST .../messages/``, with the id of the question it answers."""

    question_id = serializers.SerializerMethodField()

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "question_id"]
        read_only_fields = fields

    def get_question_id(self, obj: Message) -> str | None:
        value = self.context.get("question_id")
        return str(value) if value else None
