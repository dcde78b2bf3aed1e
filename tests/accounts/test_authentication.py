"""TenantJWTAuthentication and the access-token check on their own: which header it leaves to the API-key
class, each refusal's code and message, the tenant binding, and the user id it adds to the logs' context."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from accounts.authentication import TenantJWTAuthentication, session_from_access_token
from accounts.models import User
from accounts.tokens import tokens_for_user
from tests.crosstenant import assert_envelope


def drf_request(authorization: str | None = None, tenant: Any = None) -> Request:
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    django_request = APIRequestFactory().get("/api/v1/auth/me", **headers)
    if tenant is not None:
        django_request.tenant = tenant  # as tenants.middleware sets it
    return Request(django_request)


def message_and_code(error: AuthenticationFailed) -> tuple[str, str]:
    return str(error.detail["detail"]), str(error.detail["code"])


def refusal(raw: str) -> tuple[str, str]:
    with pytest.raises(AuthenticationFailed) as caught:
        session_from_access_token(raw)
    return message_and_code(caught.value)


def test_each_refusal_has_its_code_and_message(user: User) -> None:
    assert refusal("garbage") == ("The token is invalid or expired.", "token_not_valid")
    raw = tokens_for_user(user)["access"]
    User.objects.filter(pk=user.pk).update(token_version=user.token_version + 1)
    assert refusal(raw) == ("The token has been revoked; sign in again.", "token_revoked")
    raw = tokens_for_user(User.objects.get(pk=user.pk))["access"]
    user.tenant.is_active = False
    user.tenant.save()
    assert refusal(raw) == ("The tenant is inactive.", "tenant_inactive")
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert refusal(raw) == ("The user is inactive or does not exist.", "user_inactive")


def test_a_valid_token_authenticates_its_user_and_names_it_in_the_logs(user: User) -> None:
    raw = tokens_for_user(user)["access"]
    structlog.contextvars.clear_contextvars()
    try:
        result = TenantJWTAuthentication().authenticate(drf_request(f"Bearer {raw}", user.tenant))
        assert result is not None
        assert result[0] == user and result[1] == raw.encode()
        assert structlog.contextvars.get_contextvars()["user_id"] == str(user.pk)
    finally:
        structlog.contextvars.clear_contextvars()


def test_no_header_and_api_keys_are_left_to_the_other_classes(user: User) -> None:
    authentication = TenantJWTAuthentication()
    assert authentication.authenticate(drf_request(None, user.tenant)) is None
    assert authentication.authenticate(drf_request("Api-Key dm_abc", user.tenant)) is None
    # whatever follows the scheme: the API-key class judges it (JWT would call three parts malformed)
    assert authentication.authenticate(drf_request("Api-Key dm_abc extra", user.tenant)) is None


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Api-Key\tdm_abc"])
def test_another_scheme_is_a_malformed_header(user: User, header: str) -> None:
    """Only ``Api-Key `` (as ``integrations.keys`` reads it) is left to the API-key class; a header neither
    class reads is refused as malformed, not passed on as anonymous."""
    with pytest.raises(AuthenticationFailed) as caught:
        TenantJWTAuthentication().authenticate(drf_request(header, user.tenant))
    assert message_and_code(caught.value) == ("The Authorization header is malformed.", "bad_authorization_header")


@pytest.mark.parametrize("where", ["other tenant", "no tenant"])
def test_a_token_is_refused_outside_its_tenant(user: User, other_tenant: Any, where: str) -> None:
    raw = tokens_for_user(user)["access"]
    request = drf_request(f"Bearer {raw}", other_tenant if where == "other tenant" else None)
    with pytest.raises(AuthenticationFailed) as caught:
        TenantJWTAuthentication().authenticate(request)
    assert message_and_code(caught.value) == ("The token belongs to another tenant.", "tenant_mismatch")


def test_a_bad_token_is_refused_with_the_reason(user: User) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        TenantJWTAuthentication().authenticate(drf_request("Bearer not.a.token", user.tenant))
    assert message_and_code(caught.value) == ("The token is invalid or expired.", "token_not_valid")


def test_a_token_with_bytes_outside_ascii_is_refused_not_a_server_error(user: User, anon_api: Any) -> None:
    """DRF hands the header over encoded as latin-1; a token with such a byte (no JWT has one) was decoded
    as UTF-8, and the ``UnicodeDecodeError`` made a 500."""
    with pytest.raises(AuthenticationFailed) as caught:
        TenantJWTAuthentication().authenticate(drf_request("Bearer caf\xe9", user.tenant))
    assert message_and_code(caught.value) == ("The token is invalid or expired.", "token_not_valid")
    assert_envelope(anon_api.get("/api/v1/auth/me", HTTP_AUTHORIZATION="Bearer caf\xe9"), 401, "authentication_failed")
