"""List filters of the documents API."""

from __future__ import annotations

import django_filters

from documents.models import Document, Project


class DocumentFilter(django_filters.FilterSet):
    """``?status=ready&status=failed`` (repeat for any of), ``?project=<id>``, ``?title=<part of it>``."""

    status = django_filters.MultipleChoiceFilter(choices=Document.Status.choices)
    project = django_filters.UUIDFilter(field_name="project_id")
    title = django_filters.CharFilter(field_name="title", lookup_expr="icontains")

    class Meta:
        model = Document
        fields = ["status", "project", "title"]


class ProjectFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ["name"]
