"""Input and output shapes of the API key and webhook endpoints. Secrets appear only on creation."""

from __future__ import annotations

from rest_framework import serializers

from integrations.models import APIKey, Scope, WebhookDelivery, WebhookEndpoint, WebhookEvent


class APIKeySerializer(serializers.ModelSerializer):
    """A key as listed: never its secret (only the prefix that identifies it)."""

    status = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices))

    class Meta:
        model = APIKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "status",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "rate_limit_per_minute",
            "daily_token_quota",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_status(self, obj: APIKey) -> str:
        return "revoked" if obj.is_revoked else "expired" if obj.is_expired else "active"

    def get_created_by(self, obj: APIKey) -> str | None:
        return obj.created_by.email if obj.created_by_id and obj.created_by else None


class APIKeyCreatedSerializer(APIKeySerializer):
    """The answer to a creation: the key with its secret, shown this once."""

    key = serializers.SerializerMethodField()

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, obj: APIKey) -> str:
        return self.context["raw_key"]


class APIKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), min_length=1, max_length=10)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    rate_limit_per_minute = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=100_000)
    daily_token_quota = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10**12)


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """An endpoint as listed: never its secret."""

    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices))

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "events",
            "is_active",
            "disabled_reason",
            "disabled_at",
            "consecutive_failures",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    """At creation and rotation only: the signing secret (``whsec_...``)."""

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointInputSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices), min_length=1, max_length=20
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "message_id",
            "event_type",
            "status",
            "attempts",
            "response_code",
            "response_excerpt",
            "latency_ms",
            "error",
            "redelivery_of",
            "created_at",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
            "payload",
        ]
        read_only_fields = fields
