"""Attack: guess an operator's password on the Django admin's login page.

django-axes, on the admin site only, counts failures per IP and per account in the shared cache;
past ``AXES_FAILURE_LIMIT`` even the right password is refused (429) and the lock is logged. The
API's sign-in is not affected by it (it keeps its JSON answers and its own limits).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from tests.accounts.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
OPERATOR_PASSWORD = "an-operator-password-42"


@pytest.fixture
def operator(db: Any) -> User:
    return User.objects.create_superuser("ops@documind.test", OPERATOR_PASSWORD)


def admin_login(password: str, *, ip: str = "203.0.113.7", username: str = "ops@documind.test") -> Any:
    return Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": password})


def test_the_right_password_works_before_any_failure(operator: User) -> None:
    response = admin_login(OPERATOR_PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"


def test_guessing_locks_the_account_even_for_the_right_password(
    operator: User, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert settings.AXES_ONLY_ADMIN_SITE and settings.AXES_CACHE == "default"
    limit = settings.AXES_FAILURE_LIMIT
    with caplog.at_level(logging.WARNING):
        # Each guess from another address: the per-account count still adds up; the last one locks.
        statuses = [admin_login(f"guess-{i}", ip=f"198.51.100.{i}").status_code for i in range(limit)]
    assert statuses == [200] * (limit - 1) + [429]
    assert admin_login(OPERATOR_PASSWORD, ip="192.0.2.1").status_code == 429
    assert any("Locking out" in record.getMessage() for record in caplog.records)
    # The counts live in the shared cache (Redis, or the database cache shared by every process).
    assert any(cache.get(key) for key in _axes_keys())


def test_one_address_guessing_many_accounts_is_locked(operator: User, settings: Any) -> None:
    limit = settings.AXES_FAILURE_LIMIT
    statuses = [admin_login("nope", username=f"someone-{i}@documind.test").status_code for i in range(limit)]
    assert statuses == [200] * (limit - 1) + [429]
    assert admin_login(OPERATOR_PASSWORD).status_code == 429  # the IP is locked, whoever it names
    assert admin_login(OPERATOR_PASSWORD, ip="192.0.2.99").status_code == 302  # another IP is not


def test_api_sign_in_failures_neither_lock_nor_count_for_the_admin(
    operator: User, user: Any, tenant: Any, settings: Any
) -> None:
    settings.RATELIMIT_ENABLED = False
    api = Client(REMOTE_ADDR="203.0.113.7", HTTP_X_TENANT_ID=tenant.slug)
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):
        response = api.post(
            "/api/v1/auth/login", {"email": user.email, "password": "wrong"}, content_type="application/json"
        )
        assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_failed"
    good = api.post("/api/v1/auth/login", {"email": user.email, "password": PASSWORD}, content_type="application/json")
    assert good.status_code == 200 and "access" in good.json()
    assert admin_login(OPERATOR_PASSWORD).status_code == 302  # same IP: the admin login is not locked


def _axes_keys() -> list[str]:
    from axes.helpers import get_client_cache_keys
    from axes.models import AccessAttempt

    return get_client_cache_keys(AccessAttempt(username="ops@documind.test", ip_address="192.0.2.1"))
