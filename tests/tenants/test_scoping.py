"""The scoping helpers on their own: a queryset narrowed to a tenant (none without one), and the
request's tenant read from a Django or a DRF request."""

from __future__ import annotations

from typing import Any

from django.test import RequestFactory
from rest_framework.request import Request

from accounts.models import User
from tenants.scoping import request_tenant, scope_to_tenant
from tests.factories import UserFactory


def test_scope_to_tenant_keeps_the_tenants_rows_and_nothing_without_a_tenant(tenant: Any, other_tenant: Any) -> None:
    mine = UserFactory(tenant=tenant, email="mine@acme.test")
    UserFactory(tenant=other_tenant, email="theirs@globex.test")
    assert list(scope_to_tenant(User.objects.all(), tenant)) == [mine]  # the default field is "tenant"
    assert list(scope_to_tenant(User.objects.all(), None)) == []


def test_request_tenant_reads_a_django_or_a_drf_request(tenant: Any) -> None:
    django_request = RequestFactory().get("/api/v1/documents/")
    assert request_tenant(django_request) is None
    assert request_tenant(Request(django_request)) is None
    django_request.tenant = tenant
    assert request_tenant(django_request) is tenant
    assert request_tenant(Request(django_request)) is tenant
