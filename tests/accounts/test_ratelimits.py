"""Sign-in limits: per client IP (every auth view) and per e-mail address (codes and password guesses)."""

from __future__ import annotations

import pytest
from django.core import mail

from tests.accounts.conftest import PASSWORD
from tests.crosstenant import assert_envelope

REQUEST = "/api/v1/auth/request-code"
LOGIN = "/api/v1/auth/login"


@pytest.fixture(autouse=True)
def _frozen_windows(ratelimit_clock):
    """One window per test: a burst never straddles the end of a minute (or of ten)."""
    return ratelimit_clock


def assert_429(response) -> None:
    error = assert_envelope(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert error["message"]


def test_per_ip_limit_on_request_code(anon_api, settings):
    settings.RATELIMIT_AUTH_PER_MINUTE = 3
    for i in range(3):
        assert anon_api.post(REQUEST, {"email": f"u{i}@acme.test"}, format="json").status_code == 202
    assert_429(anon_api.post(REQUEST, {"email": "u9@acme.test"}, format="json"))
    # another client is not affected
    response = anon_api.post(REQUEST, {"email": "u9@acme.test"}, format="json", REMOTE_ADDR="10.1.1.1")
    assert response.status_code == 202


def test_per_ip_limit_on_login(anon_api, user, settings):
    settings.RATELIMIT_AUTH_PER_MINUTE = 2
    for _ in range(2):
        assert (
            anon_api.post(LOGIN, {"email": user.email, "password": "wrong-one-123"}, format="json").status_code == 401
        )
    assert_429(anon_api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json"))


def test_per_email_limit_on_codes_across_ips(anon_api, user, settings):
    settings.AUTH_CODE_EMAIL_RATE = "2/10m"
    for i in range(2):
        response = anon_api.post(REQUEST, {"email": user.email}, format="json", REMOTE_ADDR=f"10.0.0.{i}")
        assert response.status_code == 202
    assert_429(anon_api.post(REQUEST, {"email": user.email}, format="json", REMOTE_ADDR="10.0.0.9"))
    # case and spaces do not dodge it, and password reset codes count against the same address
    assert_429(anon_api.post(REQUEST, {"email": " MEMBER@acme.test"}, format="json", REMOTE_ADDR="10.0.0.10"))
    assert_429(
        anon_api.post("/api/v1/auth/password/reset", {"email": user.email}, format="json", REMOTE_ADDR="10.0.0.11")
    )
    assert len(mail.outbox) == 2
    # other addresses are unaffected
    assert (
        anon_api.post(REQUEST, {"email": "other@acme.test"}, format="json", REMOTE_ADDR="10.0.0.12").status_code == 202
    )


def test_per_email_limit_is_the_same_for_unknown_addresses(anon_api, closed_tenant, user, settings):
    settings.AUTH_CODE_EMAIL_RATE = "1/10m"
    for email in (user.email, "nobody@acme.test"):
        assert anon_api.post(REQUEST, {"email": email}, format="json", REMOTE_ADDR="10.0.1.1").status_code == 202
        limited = anon_api.post(REQUEST, {"email": email}, format="json", REMOTE_ADDR="10.0.1.2")
        assert_429(limited)


def test_per_email_limit_on_password_guesses(anon_api, user, settings):
    settings.AUTH_LOGIN_EMAIL_RATE = "3/10m"
    for i in range(3):
        response = anon_api.post(
            LOGIN, {"email": user.email, "password": f"guess-{i}-abcdef"}, format="json", REMOTE_ADDR=f"10.0.2.{i}"
        )
        assert response.status_code == 401
    # even the right password waits now
    assert_429(anon_api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json", REMOTE_ADDR="10.0.2.9"))


def test_per_email_limit_is_per_tenant(tenant, other_tenant, user, settings):
    from tests.conftest import make_client

    settings.AUTH_CODE_EMAIL_RATE = "1/10m"
    assert make_client(None, tenant).post(REQUEST, {"email": user.email}, format="json").status_code == 202
    response = make_client(None, other_tenant).post(
        REQUEST, {"email": user.email}, format="json", REMOTE_ADDR="10.0.3.1"
    )
    assert response.status_code == 202


def test_limits_can_be_switched_off(anon_api, user, settings):
    settings.RATELIMIT_ENABLED = False
    settings.RATELIMIT_AUTH_PER_MINUTE = 1
    settings.AUTH_CODE_EMAIL_RATE = "1/10m"
    for _ in range(3):
        assert anon_api.post(REQUEST, {"email": user.email}, format="json").status_code == 202
