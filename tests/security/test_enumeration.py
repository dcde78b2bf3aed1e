"""Attack: find out which e-mail addresses have accounts, or which tenants exist.

``request-code`` and ``password/reset`` do the same work for any address (compared by the medians of
30 + 30 calls, with the sign-in limits lifted and e-mail in the background as in production);
``register`` answers the same 202 for a new and a taken address (the owner of a taken one gets an
e-mail); unknown, inactive and malformed ``X-Tenant-ID`` values are rate limited per IP.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts.models import User
from tests.accounts.conftest import login
from tests.crosstenant import assert_envelope
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
STRONG = "a-long-and-unusual-passphrase-77"


@pytest.fixture
def open_tenant(tenant: Any) -> Any:
    tenant.settings = {**tenant.settings, "signup_allowed": True}
    tenant.save()
    return tenant


@pytest.fixture
def anon(tenant: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_TENANT_ID=tenant.slug)
    return client


def test_register_answers_the_same_for_a_new_and_a_taken_address(
    anon: APIClient, open_tenant: Any, user: User, settings: Any
) -> None:
    settings.RATELIMIT_ENABLED = False
    new = anon.post(REGISTER, {"email": "fresh@acme.test", "password": STRONG}, format="json")
    taken = anon.post(REGISTER, {"email": user.email, "password": STRONG}, format="json")
    assert new.status_code == taken.status_code == 202
    assert new.json() == taken.json() and set(new.json()) == {"detail"}  # no tokens: sign in for those
    assert User.objects.filter(email="fresh@acme.test", tenant=open_tenant).exists()
    user.refresh_from_db()
    assert not user.check_password(STRONG)  # the taken account is untouched
    # Only the mailboxes learn the difference.
    by_address = {message.to[0]: message for message in mail.outbox}
    assert "tried to register" in by_address[user.email].subject
    assert "Welcome" in by_address["fresh@acme.test"].subject
    assert login(anon, "fresh@acme.test", STRONG)["user"]["email"] == "fresh@acme.test"


def test_register_refuses_bad_input_before_looking_at_the_address(
    anon: APIClient, open_tenant: Any, user: User
) -> None:
    for email in (user.email, "fresh@acme.test"):
        error = assert_envelope(anon.post(REGISTER, {"email": email, "password": "123"}, format="json"), 400)
        assert error["type"] == "validation_error" and "password" in error["details"]["fields"]
    assert mail.outbox == []


def timed_post(client: APIClient, url: str, email: str) -> float:
    started = time.perf_counter()
    response = client.post(url, {"email": email}, format="json")
    elapsed = time.perf_counter() - started
    assert response.status_code == 202
    return elapsed


@pytest.mark.parametrize("url", ["/api/v1/auth/request-code", "/api/v1/auth/password/reset"])
def test_code_requests_take_as_long_for_unknown_addresses(anon: APIClient, user: User, settings: Any, url: str) -> None:
    from accounts.emails import wait_for_background_mail

    settings.RATELIMIT_ENABLED = False
    settings.AUTH_EMAIL_IN_BACKGROUND = True
    for _ in range(5):  # warm up both paths
        timed_post(anon, url, user.email)
        timed_post(anon, url, "nobody-here@acme.test")
    known, unknown = [], []
    for _ in range(30):  # alternating, so a slow moment of the machine hits both sides alike
        known.append(timed_post(anon, url, user.email))
        unknown.append(timed_post(anon, url, "nobody-here@acme.test"))
    wait_for_background_mail()
    known_median, unknown_median = statistics.median(known), statistics.median(unknown)
    # Generous: before, a known address cost ~60% more (a stored code, a mail hand-off).
    assert abs(known_median - unknown_median) < max(0.001, 0.3 * unknown_median), (known_median, unknown_median)


def test_unknown_tenants_are_rate_limited_per_ip(settings: Any, tenant: Any) -> None:
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_TENANT_MISSES_PER_MINUTE = 5
    TenantFactory(slug="sleeping", is_active=False)
    attacker = APIClient(REMOTE_ADDR="203.0.113.66")
    guesses = ["nope-1", "sleeping", "../../etc", "x" * 200, "' OR 1=1 --"]
    statuses = [attacker.get("/api/v1/tasks/", HTTP_X_TENANT_ID=guess).status_code for guess in guesses]
    assert statuses == [404, 403, 404, 404, 404]
    # Over the limit: every X-Tenant-ID from that address is refused before it is looked up,
    # so a real tenant's name cannot be told apart from a wrong one.
    for guess in ("nope-2", tenant.slug):
        response = attacker.get("/api/v1/tasks/", HTTP_X_TENANT_ID=guess)
        assert_envelope(response, 429, "rate_limited")
        assert int(response["Retry-After"]) >= 1
    # Another address is not affected; public endpoints need no tenant and stay open.
    assert APIClient(REMOTE_ADDR="203.0.113.67").get("/api/v1/tasks/", HTTP_X_TENANT_ID=tenant.slug).status_code == 401
    assert attacker.get("/api/v1/health").status_code == 200
