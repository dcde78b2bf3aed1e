"""Project-wide wiring that needs the app registry: request-log metadata and OpenAPI extensions."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """Not an app with models: the place where ``config`` connects its signal receivers."""

    name = "config"
    label = "project"
    verbose_name = "DocuMind project"

    def ready(self) -> None:
        from django_structlog import signals as structlog_signals

        from config import logging as project_logging
        from config import openapi  # noqa: F401  (registers the bearer scheme extension)

        list_valid_choices()

        structlog_signals.bind_extra_request_metadata.connect(
            project_logging.request_started_metadata, dispatch_uid="documind.request_started"
        )
        structlog_signals.bind_extra_request_finished_metadata.connect(
            project_logging.request_finished_metadata, dispatch_uid="documind.request_finished"
        )
        structlog_signals.bind_extra_request_failed_metadata.connect(
            project_logging.request_failed_metadata, dispatch_uid="documind.request_failed"
        )


def list_valid_choices() -> None:
    """Make an invalid choice name the valid ones, in DRF fields and in Django form fields (filters).

    DRF says ``"x" is not a valid choice.`` and Django ``Select a valid choice. x is not one of the
    available choices.``: neither says which are. The field knows its choices only when it fails,
    so the check is wrapped here, once, rather than in every serializer and filter set.
    """
    from django import forms
    from django.core.exceptions import ValidationError as DjangoValidationError
    from rest_framework import serializers

    if getattr(serializers.ChoiceField, "_lists_valid_choices", False):
        return
    drf_to_internal_value = serializers.ChoiceField.to_internal_value

    def custom_message(field: Any) -> bool:
        """Whether the field was given its own ``invalid_choice`` message (then it stays)."""
        defaults = {
            str(klass.__dict__["default_error_messages"].get("invalid_choice"))
            for klass in type(field).__mro__
            if "default_error_messages" in klass.__dict__
        }
        return str(field.error_messages.get("invalid_choice")) not in defaults

    def to_internal_value(self: serializers.ChoiceField, data: Any) -> Any:
        try:
            return drf_to_internal_value(self, data)
        except serializers.ValidationError as exc:
            code = getattr(exc.detail[0] if isinstance(exc.detail, list) else None, "code", None)
            if code != "invalid_choice" or custom_message(self):
                raise
            valid = ", ".join(str(choice) for choice in self.choices)
            raise serializers.ValidationError(
                f'"{data}" is not a valid choice; valid choices: {valid}.', code="invalid_choice"
            ) from None

    def form_validator(original: Any) -> Any:
        """Wrap a form field's ``validate`` (single or multiple choice) to name the valid choices."""

        def validate(self: forms.ChoiceField, value: Any) -> None:
            try:
                original(self, value)
            except DjangoValidationError as exc:
                if getattr(exc, "code", None) != "invalid_choice" or custom_message(self):
                    raise
                values = value if isinstance(value, list | tuple) else [value]
                bad = next((item for item in values if not self.valid_value(item)), value)
                valid = ", ".join(str(key) for key, _ in self.choices if key != "")
                raise DjangoValidationError(
                    f'"{bad}" is not a valid choice; valid choices: {valid}.', code="invalid_choice"
                ) from None

        return validate

    serializers.ChoiceField.to_internal_value = to_internal_value  # type: ignore[method-assign]
    forms.ChoiceField.validate = form_validator(forms.ChoiceField.validate)  # type: ignore[method-assign]
    forms.MultipleChoiceField.validate = form_validator(forms.MultipleChoiceField.validate)  # type: ignore[method-assign]
    serializers.ChoiceField._lists_valid_choices = True  # type: ignore[attr-defined]
