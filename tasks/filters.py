"""List filters of the task API."""

from __future__ import annotations

import django_filters

from tasks.models import Task


class TaskFilter(django_filters.FilterSet):
    """``?kind=todo&status=pending&status=processing`` (repeat a filter to match any of its values)."""

    kind = django_filters.MultipleChoiceFilter(choices=Task.Kind.choices)
    status = django_filters.MultipleChoiceFilter(choices=Task.Status.choices)
    due_before = django_filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="lt")
    due_after = django_filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="gte")

    class Meta:
        model = Task
        fields = ["kind", "status", "due_before", "due_after"]
