"""The current tenant in a context variable, for logs and services outside the request object."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenants.models import Tenant

current_tenant: ContextVar[Tenant | None] = ContextVar("current_tenant", default=None)
