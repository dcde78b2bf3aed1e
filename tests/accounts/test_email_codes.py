"""E-mail code sign-in: POST /auth/request-code and /auth/verify-code, with every bad input."""

from __future__ import annotations

import threading
import time

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connections
from rest_framework.test import APIClient

from accounts.codes import CodePurpose, _cache_key, _subject, code_consume, code_issue
from accounts.models import User
from accounts.services import auth_verify_code
from config.errors import ValidationFailed
from tests.accounts.conftest import bearer, request_code
from tests.conftest import make_client
from tests.crosstenant import assert_envelope
from tests.factories import UserFactory

REQUEST = "/api/v1/auth/request-code"
VERIFY = "/api/v1/auth/verify-code"


def verify(client: APIClient, email: str, code: str):
    return client.post(VERIFY, {"email": email, "code": code}, format="json")


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_known_user_gets_a_code_and_signs_in(anon_api, user):
    user.email_verified = False
    user.save()
    code = request_code(anon_api, user.email)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [user.email]
    assert "sign-in code" in mail.outbox[0].subject and "acme" in mail.outbox[0].body

    response = verify(anon_api, user.email, code)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"access", "refresh", "user", "created"}
    assert body["created"] is False
    assert body["user"]["id"] == str(user.pk) and body["user"]["email_verified"] is True
    user.refresh_from_db()
    assert user.email_verified and user.last_login is not None
    me = bearer(user.tenant, body["access"]).get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["email"] == user.email


def test_email_is_matched_case_insensitively(anon_api, user):
    code = request_code(anon_api, "  Member@ACME.test ")
    assert mail.outbox[-1].to == ["member@acme.test"]
    assert verify(anon_api, "MEMBER@acme.test", code).json()["user"]["id"] == str(user.pk)


def test_first_sign_in_creates_a_member_where_signup_is_open(anon_api, tenant):
    code = request_code(anon_api, "new@acme.test")
    response = verify(anon_api, "new@acme.test", code)
    assert response.status_code == 200, response.content
    assert response.json()["created"] is True
    created = User.objects.get(tenant=tenant, email="new@acme.test")
    assert created.role == User.Role.MEMBER and created.email_verified and not created.has_usable_password()
    # signing in again finds the same user
    again = verify(anon_api, "new@acme.test", request_code(anon_api, "new@acme.test")).json()
    assert again["created"] is False and again["user"]["id"] == str(created.pk)


def test_same_answer_for_known_and_unknown_addresses(anon_api, closed_tenant, user):
    known = anon_api.post(REQUEST, {"email": user.email}, format="json")
    unknown = anon_api.post(REQUEST, {"email": "nobody@acme.test"}, format="json")
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert known["Content-Type"] == unknown["Content-Type"]
    # only the real account got mail: sign-up is closed, so the unknown address gets nothing
    assert [m.to for m in mail.outbox] == [[user.email]]
    assert User.objects.filter(email="nobody@acme.test").count() == 0


def test_unknown_address_cannot_sign_in_where_signup_is_closed(anon_api, closed_tenant):
    anon_api.post(REQUEST, {"email": "nobody@acme.test"}, format="json")
    for guess in ("000000", "123456"):
        assert_envelope(verify(anon_api, "nobody@acme.test", guess), 400, "validation_error")
    assert not User.objects.filter(email="nobody@acme.test").exists()


def test_signup_closed_after_the_code_was_sent(anon_api, tenant):
    code = request_code(anon_api, "late@acme.test")
    tenant.settings = {"signup_allowed": False}
    tenant.save()
    assert_envelope(verify(anon_api, "late@acme.test", code), 400, "validation_error")
    assert not User.objects.filter(email="late@acme.test").exists()


def test_inactive_user_gets_no_code_and_cannot_use_an_old_one(anon_api, user):
    code = request_code(anon_api, user.email)
    user.is_active = False
    user.save()
    assert_envelope(verify(anon_api, user.email, code), 400, "validation_error")
    mail.outbox.clear()
    response = anon_api.post(REQUEST, {"email": user.email}, format="json")
    assert response.status_code == 202 and mail.outbox == []


def test_wrong_code_is_400_and_the_right_one_still_works(anon_api, user):
    code = request_code(anon_api, user.email)
    error = assert_envelope(verify(anon_api, user.email, wrong(code)), 400, "validation_error")
    assert error["message"] == "The code is invalid or has expired."
    assert error["details"] == {"fields": {"code": ["The code is invalid or has expired."]}}
    assert verify(anon_api, user.email, code).status_code == 200


def test_fifth_attempt_may_succeed(anon_api, user):
    code = request_code(anon_api, user.email)
    for _ in range(4):
        assert_envelope(verify(anon_api, user.email, wrong(code)), 400, "validation_error")
    assert verify(anon_api, user.email, code).status_code == 200


def test_sixth_attempt_fails_even_with_the_right_code(anon_api, user):
    code = request_code(anon_api, user.email)
    for _ in range(5):
        assert_envelope(verify(anon_api, user.email, wrong(code)), 400, "validation_error")
    assert_envelope(verify(anon_api, user.email, code), 400, "validation_error")
    # a new code starts a fresh count
    assert verify(anon_api, user.email, request_code(anon_api, user.email)).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_parallel_burst_of_guesses_cannot_exceed_the_attempt_limit(tenant, user, settings):
    """20 wrong guesses at once: every one is counted (none lost to a race), so the code is spent.

    The limit equals the burst: no guess of the burst finds the code already discarded (a guess
    arriving after the discard is refused without taking an attempt), so a correct counter ends at
    exactly 20, and the next guess, even the right code, is over the limit.
    """
    guesses = 20
    settings.AUTH_CODE_MAX_ATTEMPTS = guesses
    code = code_issue(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN)
    key = _cache_key(_subject(tenant, user.email, CodePurpose.SIGN_IN))
    attempts_key = f"{key}:attempts:{cache.get(key)['nonce']}"
    barrier = threading.Barrier(guesses)
    outcomes: list[object] = []

    def guess(i: int) -> None:
        try:
            barrier.wait()
            auth_verify_code(tenant=tenant, email=user.email, code=wrong(f"{(int(code) + i) % 1_000_000:06d}"))
            outcomes.append("signed in")
        except ValidationFailed:
            outcomes.append("refused")
        except BaseException as exc:
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["refused"] * guesses
    assert cache.get(attempts_key) == guesses  # each guess took its own attempt
    with pytest.raises(ValidationFailed):  # the limit is used up: even the right code fails
        auth_verify_code(tenant=tenant, email=user.email, code=code)
    assert cache.get(key) is None  # past the limit: the code is gone


def test_code_is_single_use(anon_api, user):
    code = request_code(anon_api, user.email)
    assert verify(anon_api, user.email, code).status_code == 200
    assert_envelope(verify(anon_api, user.email, code), 400, "validation_error")


def test_new_code_replaces_the_old_one(anon_api, user):
    first = request_code(anon_api, user.email)
    second = request_code(anon_api, user.email)
    while second == first:  # one chance in a million
        second = request_code(anon_api, user.email)
    assert_envelope(verify(anon_api, user.email, first), 400, "validation_error")
    assert verify(anon_api, user.email, second).status_code == 200


def test_expired_code_fails(anon_api, user, settings):
    settings.AUTH_CODE_TTL_SECONDS = 1
    code = request_code(anon_api, user.email)
    time.sleep(1.2)
    assert_envelope(verify(anon_api, user.email, code), 400, "validation_error")


def test_code_of_another_tenant_fails(tenant, other_tenant, user):
    UserFactory(tenant=other_tenant, email=user.email)  # the same address is a user in both tenants
    code = request_code(make_client(None, tenant), user.email)
    assert_envelope(verify(make_client(None, other_tenant), user.email, code), 400, "validation_error")
    # and it is still good where it was issued (the foreign attempt did not consume it)
    assert verify(make_client(None, tenant), user.email, code).json()["user"]["id"] == str(user.pk)


def test_sign_in_code_does_not_reset_a_password(anon_api, user):
    code = request_code(anon_api, user.email)
    response = anon_api.post(
        "/api/v1/auth/password/reset/confirm",
        {"email": user.email, "code": code, "new_password": "a-much-better-passphrase-42"},
        format="json",
    )
    assert_envelope(response, 400, "validation_error")


def test_code_is_stored_only_as_an_hmac(tenant, user):
    code = code_issue(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN)
    key = _cache_key(_subject(tenant, user.email, CodePurpose.SIGN_IN))
    assert user.email not in key
    entry = cache.get(key)
    assert code not in repr(entry) and user.email not in repr(entry)
    assert len(entry["digest"]) == 64
    assert code.isdigit() and len(code) == 6
    assert code_consume(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN, code=code)
    assert cache.get(key) is None


def test_codes_are_random(tenant):
    codes = {code_issue(tenant=tenant, email=f"u{i}@acme.test", purpose=CodePurpose.SIGN_IN) for i in range(30)}
    assert len(codes) >= 29


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": ""}, "email"),
        ({"email": ["a@b.test"]}, "email"),
    ],
)
def test_request_code_bad_input(anon_api, payload, field):
    error = assert_envelope(anon_api.post(REQUEST, payload, format="json"), 400, "validation_error")
    assert field in error["details"]["fields"]
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "member@acme.test"}, "code"),
        ({"email": "member@acme.test", "code": "12345"}, "code"),
        ({"email": "member@acme.test", "code": "1234567"}, "code"),
        ({"email": "member@acme.test", "code": "12a456"}, "code"),
        ({"code": "123456"}, "email"),
    ],
)
def test_verify_code_bad_input(anon_api, user, payload, field):
    error = assert_envelope(anon_api.post(VERIFY, payload, format="json"), 400, "validation_error")
    assert field in error["details"]["fields"]


def test_malformed_json_is_400(anon_api):
    response = anon_api.post(REQUEST, data="{not json", content_type="application/json")
    assert_envelope(response, 400)


def test_auth_endpoints_need_a_tenant(db, client, tenant):
    assert_envelope(
        client.post(REQUEST, {"email": "a@b.test"}, content_type="application/json"), 400, "tenant_required"
    )
    assert_envelope(
        client.post(REQUEST, {"email": "a@b.test"}, content_type="application/json", HTTP_X_TENANT_ID="nope"),
        404,
        "tenant_not_found",
    )
    tenant.is_active = False
    tenant.save()
    assert_envelope(
        client.post(
            VERIFY, {"email": "a@b.test", "code": "123456"}, content_type="application/json", HTTP_X_TENANT_ID="acme"
        ),
        403,
        "tenant_inactive",
    )


def test_public_auth_views_ignore_a_bad_bearer(anon_api, user):
    anon_api.credentials(HTTP_X_TENANT_ID="acme", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert anon_api.post(REQUEST, {"email": user.email}, format="json").status_code == 202


def test_trailing_slash_is_optional(anon_api, user):
    assert anon_api.post(REQUEST + "/", {"email": user.email}, format="json").status_code == 202


def test_delivery_failure_answers_the_same(anon_api, user, settings, caplog):
    settings.EMAIL_BACKEND = "tests.accounts.failing_email.FailingEmailBackend"
    failed = anon_api.post(REQUEST, {"email": user.email}, format="json")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    delivered = anon_api.post(REQUEST, {"email": "someone-else@acme.test"}, format="json")
    assert failed.status_code == delivered.status_code == 202
    assert failed.json() == delivered.json()
    assert any("email_delivery_failed" in str(r.msg) for r in caplog.records)


@pytest.mark.parametrize("endpoint", [REQUEST, "/api/v1/auth/password/reset"])
def test_the_answer_does_not_wait_for_the_mail_server(anon_api, closed_tenant, user, settings, endpoint):
    """Sending takes a mail server's time only for addresses that get a code: answering after it would
    tell known addresses from unknown ones by the clock. Mail goes out in the background instead."""
    from accounts.emails import wait_for_background_mail
    from tests.accounts.failing_email import SlowEmailBackend

    settings.AUTH_EMAIL_IN_BACKGROUND = True
    settings.EMAIL_BACKEND = "tests.accounts.failing_email.SlowEmailBackend"
    SlowEmailBackend.RELEASE.clear()
    try:
        started = time.monotonic()
        known = anon_api.post(endpoint, {"email": user.email}, format="json")
        elapsed = time.monotonic() - started
        assert known.status_code == 202 and elapsed < 5, elapsed
        assert anon_api.post(endpoint, {"email": "nobody@acme.test"}, format="json").json() == known.json()
        assert mail.outbox == []  # still at the "server"
    finally:
        SlowEmailBackend.RELEASE.set()
    wait_for_background_mail()
    assert [m.to for m in mail.outbox] == [[user.email]]


def test_a_code_past_its_expiry_fails_even_while_the_cache_still_holds_it(tenant, user, monkeypatch):
    """The code's own deadline counts, not only the cache's (Redis may keep a key a little longer):
    up to the deadline the right code works; from it on it fails and is thrown away."""
    import types

    from accounts import codes

    def consume_at(moment: float, code: str) -> bool:
        monkeypatch.setattr(codes, "time", types.SimpleNamespace(time=lambda: moment))
        try:
            return code_consume(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN, code=code)
        finally:
            monkeypatch.undo()

    key = _cache_key(_subject(tenant, user.email, CodePurpose.SIGN_IN))
    code = code_issue(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN)
    deadline = cache.get(key)["expires_at"]
    assert consume_at(deadline - 0.5, code)  # half a second left: still good
    code = code_issue(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN)
    deadline = cache.get(key)["expires_at"]
    assert not consume_at(deadline, code)
    assert cache.get(key) is None  # discarded: the right code fails from now on, whatever the clock
    assert not code_consume(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN, code=code)


def test_the_attempt_count_lasts_as_long_as_the_code(tenant, user):
    """Were the count of wrong guesses to expire before the code, guessing could start over."""
    from django.db import connection

    code = code_issue(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN)
    key = _cache_key(_subject(tenant, user.email, CodePurpose.SIGN_IN))
    entry = cache.get(key)
    assert not code_consume(tenant=tenant, email=user.email, purpose=CodePurpose.SIGN_IN, code=wrong(code))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT expires FROM documind_cache WHERE cache_key = %s",
            [cache.make_and_validate_key(f"{key}:attempts:{entry['nonce']}")],
        )
        (expires,) = cursor.fetchone()
    assert expires.timestamp() >= entry["expires_at"] - 1  # the database cache keeps whole seconds
