"""API key fixtures for the whole suite: keys made through the real service, clients that send them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from integrations.models import APIKey
from integrations.services import api_key_create
from tenants.models import Tenant


def key_client(raw: str, tenant_header: str | None = None) -> APIClient:
    """An APIClient sending ``Authorization: Api-Key <raw>`` (and ``X-Tenant-ID`` when given)."""
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Api-Key {raw}"}
    if tenant_header is not None:
        headers["HTTP_X_TENANT_ID"] = tenant_header
    client.credentials(**headers)
    return client


@pytest.fixture
def make_key(admin_user: User) -> Callable[..., tuple[APIKey, str]]:
    """``make_key(scopes, tenant=..., **options)`` → (key, raw secret)."""

    def make(scopes: list[str], *, tenant: Tenant | None = None, name: str | None = None, **options: Any):
        tenant = tenant or admin_user.tenant
        make.count += 1  # type: ignore[attr-defined]
        return api_key_create(
            tenant=tenant,
            created_by=admin_user if tenant == admin_user.tenant else None,
            name=name or f"key-{make.count}",  # type: ignore[attr-defined]
            scopes=scopes,
            **options,
        )

    make.count = 0  # type: ignore[attr-defined]
    return make
