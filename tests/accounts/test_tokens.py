"""JWT: claims, tenant binding, malformed/expired/blacklisted tokens, refresh rotation, logout."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.exceptions import AuthenticationFailed
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.authentication import tokens_for_user, user_from_access_token
from accounts.models import User
from accounts.tokens import REFRESH_GRACE_SECONDS
from tests.accounts.conftest import bearer, login
from tests.conftest import make_client
from tests.crosstenant import assert_envelope

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"


def expired_access(user: User) -> str:
    token = AccessToken.for_user(user)
    token["tenant"], token["role"] = str(user.tenant_id), user.role
    token.set_exp(lifetime=-timedelta(seconds=5))
    return str(token)


def test_access_token_claims(user):
    tokens = tokens_for_user(user)
    access, refresh = AccessToken(tokens["access"]), RefreshToken(tokens["refresh"])
    for token in (access, refresh):
        assert token["user_id"] == str(user.pk)
        assert token["tenant"] == str(user.tenant_id)
        assert token["role"] == "member"
    assert access["exp"] - access["iat"] == settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() == 15 * 60
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600


def test_jwt_access_minutes_and_refresh_days_set_the_lifetimes(tmp_path):
    """The environment variables the README documents reach the tokens (settings read in a child process)."""
    env = {
        **os.environ,
        "JWT_ACCESS_MINUTES": "7",
        "JWT_REFRESH_DAYS": "2",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",  # settings only: never connected
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DOCUMIND_TEST_SUBPROCESS": "1",
    }
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SIMPLE_JWT['ACCESS_TOKEN_LIFETIME'].total_seconds(), s.SIMPLE_JWT['REFRESH_TOKEN_LIFETIME'].days)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["420.0", "2"], result.stderr


def test_token_of_tenant_a_with_header_b_is_401(user, other_tenant):
    client = make_client(user, other_tenant)  # acme's token, globex's header
    error = assert_envelope(client.get(ME), 401, "authentication_failed")
    assert "another tenant" in error["message"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-jwt",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiMSJ9.c2lnbmF0dXJl",  # well-formed, bad signature
        "Bearer",
        "Bearer a b",
        "Token abc",
    ],
)
def test_malformed_tokens_are_401(tenant, user, header):
    client = APIClient()
    client.credentials(HTTP_X_TENANT_ID=tenant.slug, HTTP_AUTHORIZATION=header)
    assert_envelope(client.get(ME), 401, "authentication_failed")


def test_expired_access_token_is_401(user):
    assert_envelope(bearer(user.tenant, expired_access(user)).get(ME), 401, "authentication_failed")


def test_refresh_token_is_not_an_access_token(user):
    assert_envelope(bearer(user.tenant, tokens_for_user(user)["refresh"]).get(ME), 401, "authentication_failed")


def test_token_signed_with_another_key_is_401(user):
    import jwt

    payload = dict(AccessToken(tokens_for_user(user)["access"]).payload)
    forged = jwt.encode(payload, "not-the-signing-key-but-just-as-long-0123456789", algorithm="HS256")
    assert_envelope(bearer(user.tenant, forged).get(ME), 401, "authentication_failed")


def test_no_token_is_not_authenticated(anon_api):
    error = assert_envelope(anon_api.get(ME), 401, "not_authenticated")
    assert error["message"]


def test_inactive_user_token_is_401(user):
    client = make_client(user)
    user.is_active = False
    user.save()
    assert_envelope(client.get(ME), 401, "authentication_failed")


def test_deleted_user_token_is_401(user):
    client = make_client(user)
    user.delete()
    assert_envelope(client.get(ME), 401, "authentication_failed")


def test_inactive_tenant_is_403_for_its_tokens(user, tenant):
    client = make_client(user)
    tenant.is_active = False
    tenant.save()
    assert_envelope(client.get(ME), 403, "tenant_inactive")


def test_websocket_token_check_rejects_inactive_tenant_and_operators(user, tenant):
    raw = tokens_for_user(user)["access"]
    assert user_from_access_token(raw) == user
    tenant.is_active = False
    tenant.save()
    with pytest.raises(AuthenticationFailed):
        user_from_access_token(raw)
    operator = User.objects.create_superuser("op@example.test", "a-long-operator-password-1")
    with pytest.raises(AuthenticationFailed):
        user_from_access_token(tokens_for_user(operator)["access"])
    with pytest.raises(AuthenticationFailed):
        user_from_access_token("garbage")


# --- refresh ---------------------------------------------------------------------------------


def test_refresh_rotates_and_blacklists_the_old_token(anon_api, user):
    first = login(anon_api, user.email)
    response = anon_api.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert response.status_code == 200, response.content
    second = response.json()
    assert set(second) == {"access", "refresh"} and second["refresh"] != first["refresh"]
    assert bearer(user.tenant, second["access"]).get(ME).status_code == 200
    # a retry within the grace window (a lost answer, a second tab) gets the same successor ...
    assert anon_api.post(REFRESH, {"refresh": first["refresh"]}, format="json").json() == second
    # ... after it the old refresh token is spent: using it is reuse, which ends that sign-in
    BlacklistedToken.objects.update(blacklisted_at=timezone.now() - timedelta(seconds=REFRESH_GRACE_SECONDS + 1))
    error = assert_envelope(
        anon_api.post(REFRESH, {"refresh": first["refresh"]}, format="json"), 401, "authentication_failed"
    )
    assert response["Content-Type"] == "application/json"
    assert error["message"]
    assert anon_api.post(REFRESH, {"refresh": second["refresh"]}, format="json").status_code == 401


def test_refresh_picks_up_a_new_role(anon_api, user):
    first = login(anon_api, user.email)
    User.objects.filter(pk=user.pk).update(role=User.Role.VIEWER)
    second = anon_api.post(REFRESH, {"refresh": first["refresh"]}, format="json").json()
    assert AccessToken(second["access"])["role"] == "viewer"


def test_refresh_with_another_tenants_header_is_401(user, other_tenant):
    refresh = tokens_for_user(user)["refresh"]
    response = make_client(None, other_tenant).post(REFRESH, {"refresh": refresh}, format="json")
    assert_envelope(response, 401, "authentication_failed")
    # not consumed by the failed attempt
    assert make_client(None, user.tenant).post(REFRESH, {"refresh": refresh}, format="json").status_code == 200


@pytest.mark.parametrize("kind", ["garbage", "access", "expired", "inactive"])
def test_bad_refresh_tokens_are_401(anon_api, user, kind):
    tokens = tokens_for_user(user)
    if kind == "garbage":
        raw = "abc.def.ghi"
    elif kind == "access":
        raw = tokens["access"]
    elif kind == "expired":
        token = RefreshToken.for_user(user)
        token["tenant"] = str(user.tenant_id)
        token.set_exp(lifetime=-timedelta(seconds=5))
        raw = str(token)
    else:
        raw = tokens["refresh"]
        user.is_active = False
        user.save()
    assert_envelope(anon_api.post(REFRESH, {"refresh": raw}, format="json"), 401, "authentication_failed")


def test_refresh_needs_a_token_field(anon_api):
    error = assert_envelope(anon_api.post(REFRESH, {}, format="json"), 400, "validation_error")
    assert "refresh" in error["details"]["fields"]


# --- logout ----------------------------------------------------------------------------------


def test_logout_blacklists_the_refresh_token(anon_api, user):
    tokens = login(anon_api, user.email)
    client = bearer(user.tenant, tokens["access"])
    response = client.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 204 and response.content == b""
    assert_envelope(anon_api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json"), 401, "authentication_failed")


def test_logout_needs_a_bearer(anon_api, user):
    refresh = tokens_for_user(user)["refresh"]
    assert_envelope(anon_api.post(LOGOUT, {"refresh": refresh}, format="json"), 401, "not_authenticated")
    # and the token still works
    assert anon_api.post(REFRESH, {"refresh": refresh}, format="json").status_code == 200


def test_logout_cannot_revoke_someone_elses_token(api, admin_user, anon_api):
    theirs = tokens_for_user(admin_user)["refresh"]
    assert_envelope(api.post(LOGOUT, {"refresh": theirs}, format="json"), 401, "authentication_failed")
    assert anon_api.post(REFRESH, {"refresh": theirs}, format="json").status_code == 200


def test_logout_with_bad_tokens(api, user):
    assert_envelope(api.post(LOGOUT, {"refresh": "garbage"}, format="json"), 401, "authentication_failed")
    assert_envelope(api.post(LOGOUT, {}, format="json"), 400, "validation_error")
    refresh = tokens_for_user(user)["refresh"]
    assert api.post(LOGOUT, {"refresh": refresh}, format="json").status_code == 204
    assert_envelope(api.post(LOGOUT, {"refresh": refresh}, format="json"), 401, "authentication_failed")
