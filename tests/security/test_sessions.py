"""Attack: keep using a token after the session should have ended, or replay a stolen refresh token.

Every access token issued before a password change or reset, a deactivation, a role change or
``logout-all`` is refused at once (the user's token version), on HTTP and on open sockets (4401).
Reusing a rotated refresh token after the grace window revokes its whole family; within it, a
concurrent refresh of the same token gets the same successor.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from accounts.models import RevokedTokenFamily, User
from accounts.tokens import REFRESH_GRACE_SECONDS
from tests.accounts.conftest import PASSWORD, bearer, last_code, login
from tests.crosstenant import assert_envelope

pytestmark = pytest.mark.django_db

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"
NEW_PASSWORD = "a-much-better-passphrase-42"


def refused(tenant: Any, access: str) -> bool:
    response = bearer(tenant, access).get(ME)
    if response.status_code == 401:
        assert response.json()["error"]["type"] == "authentication_failed"
        return True
    assert response.status_code == 200, response.content
    return False


def refresh(client: APIClient, token: str) -> Any:
    return client.post(REFRESH, {"refresh": token}, format="json")


@pytest.fixture
def anon(tenant: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_TENANT_ID=tenant.slug)
    return client


@pytest.fixture(autouse=True)
def _no_limits(settings: Any) -> None:
    settings.RATELIMIT_ENABLED = False


def test_password_change_refuses_every_earlier_token_at_once(tenant: Any, user: User, anon: APIClient) -> None:
    first, second = login(anon, user.email), login(anon, user.email)
    response = bearer(tenant, first["access"]).post(
        "/api/v1/auth/password/change",
        {"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
    )
    assert response.status_code == 200
    assert refused(tenant, first["access"]) and refused(tenant, second["access"])
    assert refresh(anon, second["refresh"]).status_code == 401
    assert not refused(tenant, response.json()["access"])  # the pair it returned carries on


def test_password_reset_refuses_every_earlier_token(tenant: Any, user: User, anon: APIClient) -> None:
    session = login(anon, user.email)
    assert anon.post("/api/v1/auth/password/reset", {"email": user.email}, format="json").status_code == 202
    code = last_code(user.email)
    response = anon.post(
        "/api/v1/auth/password/reset/confirm",
        {"email": user.email, "code": code, "new_password": NEW_PASSWORD},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert refused(tenant, session["access"])


def test_role_change_and_deactivation_refuse_earlier_tokens(
    tenant: Any, user: User, admin_user: User, anon: APIClient
) -> None:
    session = login(anon, user.email)
    admin = login(anon, admin_user.email)
    admin_client = bearer(tenant, admin["access"])
    assert admin_client.patch(f"/api/v1/users/{user.pk}/", {"role": "admin"}, format="json").status_code == 200
    assert refused(tenant, session["access"])  # the token said "member"

    session = login(anon, user.email)
    assert admin_client.patch(f"/api/v1/users/{user.pk}/", {"full_name": "Renamed"}, format="json").status_code == 200
    assert not refused(tenant, session["access"])  # a new name ends nothing
    assert admin_client.delete(f"/api/v1/users/{user.pk}/").status_code == 204
    assert refused(tenant, session["access"])
    User.objects.filter(pk=user.pk).update(is_active=True)
    assert refused(tenant, session["access"])  # reactivation does not bring old tokens back


def test_logout_all_ends_every_session(tenant: Any, user: User, anon: APIClient) -> None:
    sessions = [login(anon, user.email) for _ in range(3)]
    client = bearer(tenant, sessions[0]["access"])
    assert client.post("/api/v1/auth/logout-all").status_code == 204
    for session in sessions:
        assert refused(tenant, session["access"])
        assert refresh(anon, session["refresh"]).status_code == 401
    assert_envelope(bearer(tenant, "x").post("/api/v1/auth/logout-all"), 401, "authentication_failed")


def test_logout_ends_that_session_only(tenant: Any, user: User, anon: APIClient) -> None:
    mine, other = login(anon, user.email), login(anon, user.email)
    response = bearer(tenant, mine["access"]).post("/api/v1/auth/logout", {"refresh": mine["refresh"]}, format="json")
    assert response.status_code == 204
    assert refused(tenant, mine["access"])
    assert refresh(anon, mine["refresh"]).status_code == 401
    assert not refused(tenant, other["access"])
    assert refresh(anon, other["refresh"]).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_its_family(tenant: Any, user: User, anon: APIClient) -> None:
    stolen = login(anon, user.email)
    other_device = login(anon, user.email)
    successor = refresh(anon, stolen["refresh"]).json()
    grandchild = refresh(anon, successor["refresh"]).json()
    assert not refused(tenant, grandchild["access"])
    # The thief replays the original after the grace window.
    BlacklistedToken.objects.update(blacklisted_at=timezone.now() - timedelta(seconds=REFRESH_GRACE_SECONDS + 1))
    assert_envelope(refresh(anon, stolen["refresh"]), 401, "authentication_failed")
    assert RevokedTokenFamily.objects.filter(user=user, reason="reuse").count() == 1
    # Every token of that sign-in is dead, the legitimate holder's newest included ...
    assert refused(tenant, grandchild["access"])
    assert refresh(anon, grandchild["refresh"]).status_code == 401
    # ... and another sign-in is not touched.
    assert not refused(tenant, other_device["access"])


def test_a_retry_within_the_grace_window_gets_the_same_successor(tenant: Any, user: User, anon: APIClient) -> None:
    session = login(anon, user.email)
    first = refresh(anon, session["refresh"]).json()
    again = refresh(anon, session["refresh"]).json()
    assert again == first
    assert not refused(tenant, first["access"])
    assert refresh(anon, first["refresh"]).status_code == 200
    assert not RevokedTokenFamily.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_token_get_one_successor(tenant: Any, user: User) -> None:
    anon = APIClient()
    anon.credentials(HTTP_X_TENANT_ID=tenant.slug)
    token = login(anon, user.email)["refresh"]
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def tab() -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_X_TENANT_ID=tenant.slug)
            barrier.wait()
            response = refresh(client, token)
            results.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=tab) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in results] == [200] * 4, results
    assert len({body["refresh"] for _, body in results}) == 1
    assert not RevokedTokenFamily.objects.exists()


@pytest.fixture
def operator_client(db: Any) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ops@documind.test", "an-operator-password-42"))
    return client


def test_admin_site_changes_end_sessions(tenant: Any, user: User, anon: APIClient, operator_client: Client) -> None:
    session = login(anon, user.email)
    response = operator_client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:2000]
    assert refused(tenant, session["access"])

    session = login(anon, user.email, NEW_PASSWORD)
    response = operator_client.post(
        f"/admin/accounts/user/{user.pk}/change/",
        {"email": user.email, "role": "viewer", "full_name": user.full_name, "is_active": "on"},
    )
    assert response.status_code == 302, response.content[:3000]
    assert refused(tenant, session["access"])


def test_operators_see_revoked_sign_ins(tenant: Any, user: User, anon: APIClient, operator_client: Client) -> None:
    session = login(anon, user.email)
    bearer(tenant, session["access"]).post("/api/v1/auth/logout", {"refresh": session["refresh"]}, format="json")
    response = operator_client.get("/admin/accounts/revokedtokenfamily/")
    assert response.status_code == 200 and b"logout" in response.content
