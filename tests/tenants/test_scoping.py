"""The scoping helpers on their own: a queryset narrowed to a tenant (none without one), and the
request's tenant read from a Django or a DRF request, and a viewset's queryset narrowed to the tenant and,
for non-admins, to the owner."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.test import RequestFactory
from rest_framework.request import Request

from accounts.models import RevokedTokenFamily, User
from tasks.models import Task
from tasks.views import TaskViewSet
from tenants.scoping import TenantScopedReadOnlyViewSet, request_tenant, scope_to_tenant
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


def _visible_tasks(user: Any, tenant: Any) -> set[str]:
    """The titles ``TaskViewSet`` (a ``TenantScopedViewSet`` with ``owner_field = "owner"``) shows ``user``
    in ``tenant``, its queryset built as for a request."""
    django_request = RequestFactory().get("/api/v1/tasks/")
    django_request.tenant = tenant
    request = Request(django_request)
    request.user = user
    view = TaskViewSet(request=request, format_kwarg=None)
    return {task.title for task in view.get_queryset()}


def test_the_owner_field_narrows_members_and_viewers_but_not_admins(
    tenant: Any, other_tenant: Any, user: Any, viewer_user: Any, admin_user: Any, other_user: Any
) -> None:
    for owner, title in ((user, "mine"), (viewer_user, "viewers"), (admin_user, "admins"), (other_user, "globex")):
        Task.objects.create(tenant=owner.tenant, owner=owner, title=title)
    assert _visible_tasks(user, tenant) == {"mine"}
    assert _visible_tasks(viewer_user, tenant) == {"viewers"}
    assert _visible_tasks(admin_user, tenant) == {"mine", "viewers", "admins"}
    assert _visible_tasks(other_user, other_tenant) == {"globex"}
    assert _visible_tasks(admin_user, None) == set()  # no tenant, nothing


def test_an_anonymous_request_never_gets_the_tenants_rows(tenant: Any, user: Any) -> None:
    """Permissions stop anonymous requests first; should one reach an owner-scoped queryset, it fails closed."""
    Task.objects.create(tenant=tenant, owner=user, title="mine")
    try:
        seen = _visible_tasks(AnonymousUser(), tenant)
    except ValidationError as exc:  # the owner filter cannot take an AnonymousUser
        seen = {f"refused: {type(exc).__name__}"}
    assert "mine" not in seen, seen


class _RevokedFamilies(TenantScopedReadOnlyViewSet):
    """A viewset over rows that reach their tenant through a relation (``tenant_field``)."""

    queryset = RevokedTokenFamily.objects.all()
    tenant_field = "user__tenant"


def test_tenant_field_names_the_path_to_the_tenant(
    tenant: Any, other_tenant: Any, admin_user: Any, other_user: Any
) -> None:
    mine = RevokedTokenFamily.objects.create(pk=uuid.uuid4(), user=admin_user, reason="logout")
    RevokedTokenFamily.objects.create(pk=uuid.uuid4(), user=other_user, reason="logout")
    django_request = RequestFactory().get("/")
    django_request.tenant = tenant
    request = Request(django_request)
    request.user = admin_user
    assert list(_RevokedFamilies(request=request, format_kwarg=None).get_queryset()) == [mine]
