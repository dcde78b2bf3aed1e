"""Attack (on ourselves): a signed-in client without ``X-Tenant-ID`` is refused the schema and docs.

Public endpoints ignore credentials they do not need: a valid bearer (or a bad one) sent to them
changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.authentication import tokens_for_user

pytestmark = pytest.mark.django_db

PUBLIC = ["/", "/healthz", "/api/v1/health", "/api/v1/health/live", "/api/v1/schema/", "/docs", "/redoc"]


@pytest.mark.parametrize("path", PUBLIC)
@pytest.mark.parametrize("bearer", ["valid", "garbage"])
def test_public_endpoints_ignore_a_bearer(user: Any, path: str, bearer: str) -> None:
    client = APIClient()
    token = tokens_for_user(user)["access"] if bearer == "valid" else "not-a-token"
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")  # and no X-Tenant-ID
    response = client.get(path)
    assert response.status_code == 200, (path, response.content[:300])


def test_the_docs_script_is_public_too(user: Any) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_for_user(user)['access']}")
    response = client.get("/docs?script=")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/javascript")
