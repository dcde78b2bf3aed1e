"""The tenant middleware's per-process memory of active tenants (tenants.lookup, TENANT_CACHE_SECONDS)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants import lookup
from tenants.models import Tenant
from tenants.services import tenant_set_active
from tests.conftest import make_client
from tests.tenants.test_middleware import error_of, run_middleware

pytestmark = pytest.mark.django_db
DOCUMENTS = "/api/v1/documents/"


def tenant_queries(path: str, header: str) -> tuple[Any, int]:
    """The middleware's answer for ``header`` and how many of its statements read the tenants table."""
    with CaptureQueriesContext(connection) as queries:
        response, seen = run_middleware(path, header)
    return (response, seen), sum('FROM "tenants_tenant"' in q["sql"] for q in queries.captured_queries)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(lookup.time, "monotonic", clock)
    return clock


def test_an_active_tenant_is_looked_up_once_per_process_by_slug_and_by_id(tenant: Tenant) -> None:
    (_, seen), reads = tenant_queries(DOCUMENTS, tenant.slug)
    assert reads == 1 and seen["tenant"] == tenant
    (_, seen), reads = tenant_queries(DOCUMENTS, tenant.slug.upper())
    assert reads == 0 and seen["tenant"] == tenant and seen["tenant"].name == tenant.name
    assert tenant_queries(DOCUMENTS, str(tenant.pk))[1] == 1
    assert tenant_queries(DOCUMENTS, str(tenant.pk))[1] == 0


def test_each_request_gets_a_tenant_of_its_own(tenant: Tenant) -> None:
    tenant.settings = {"daily_token_quota": 5}
    tenant.save()
    first = run_middleware(DOCUMENTS, tenant.slug)[1]["tenant"]
    first.settings["daily_token_quota"] = 0
    first.name = "changed by a request"
    second = run_middleware(DOCUMENTS, tenant.slug)[1]["tenant"]
    assert second is not first
    assert second.settings == {"daily_token_quota": 5} and second.name == tenant.name


def test_unknown_and_inactive_tenants_are_never_remembered(tenant: Tenant) -> None:
    error_of(run_middleware(DOCUMENTS, "later")[0], 404, "tenant_not_found")
    Tenant.objects.create(slug="later", name="Later")  # no signal needed: a miss was not remembered
    assert run_middleware(DOCUMENTS, "later")[1]["tenant"].slug == "later"
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)  # no signal
    error_of(run_middleware(DOCUMENTS, tenant.slug)[0], 403, "tenant_inactive")
    Tenant.objects.filter(pk=tenant.pk).update(is_active=True)
    assert tenant_queries(DOCUMENTS, tenant.slug)[1] == 1  # the inactive one was looked up again


def test_a_deactivation_in_this_process_is_seen_at_once(tenant: Tenant) -> None:
    assert run_middleware(DOCUMENTS, tenant.slug)[1]["tenant"] == tenant
    tenant_set_active(tenant=tenant, active=False)  # an UPDATE in SQL, which forgets explicitly
    error_of(run_middleware(DOCUMENTS, tenant.slug)[0], 403, "tenant_inactive")
    tenant_set_active(tenant=tenant, active=True)
    assert run_middleware(DOCUMENTS, tenant.slug)[1]["tenant"] == tenant
    tenant.is_active = False
    tenant.save()  # post_save
    error_of(run_middleware(DOCUMENTS, tenant.slug)[0], 403, "tenant_inactive")


def test_a_deleted_tenant_is_forgotten(tenant: Tenant) -> None:
    assert run_middleware(DOCUMENTS, tenant.slug)[1]["tenant"] == tenant
    Tenant.objects.filter(pk=tenant.pk).delete()
    error_of(run_middleware(DOCUMENTS, tenant.slug)[0], 404, "tenant_not_found")


def test_a_change_made_elsewhere_is_seen_within_the_setting(tenant: Tenant, clock: Clock, settings: Any) -> None:
    """Another process's change sends no signal here: the memory lasts TENANT_CACHE_SECONDS."""
    settings.TENANT_CACHE_SECONDS = 5
    assert run_middleware(DOCUMENTS, tenant.slug)[1]["tenant"] == tenant
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)  # as another process would
    clock.now += 4.9
    assert run_middleware(DOCUMENTS, tenant.slug)[1]["tenant"] == tenant
    clock.now += 0.2
    error_of(run_middleware(DOCUMENTS, tenant.slug)[0], 403, "tenant_inactive")


def test_signed_in_requests_of_a_tenant_deactivated_elsewhere_are_refused_at_once(user: Any, tenant: Tenant) -> None:
    client = make_client(user, tenant)
    assert client.get(DOCUMENTS).status_code == 200  # the tenant is now remembered
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)  # as another process would: no signal here
    response = client.get(DOCUMENTS)
    error = response.json()["error"]
    assert response.status_code == 401 and error["message"] == "The tenant is inactive.", error


def test_zero_seconds_turns_the_memory_off(tenant: Tenant, settings: Any) -> None:
    settings.TENANT_CACHE_SECONDS = 0
    assert tenant_queries(DOCUMENTS, tenant.slug)[1] == 1
    assert tenant_queries(DOCUMENTS, tenant.slug)[1] == 1
