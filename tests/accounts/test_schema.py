"""The auth, tenant and user endpoints are documented: public sign-in operations, bearer elsewhere."""

from __future__ import annotations

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

PUBLIC = ["request-code", "verify-code", "register", "login", "refresh", "password/reset", "password/reset/confirm"]
BEARER = [("logout", "post"), ("me", "patch"), ("password/change", "post")]  # people only: API keys are refused
BEARER_OR_KEY = [("me", "get")]


@pytest.fixture(scope="module")
def schema() -> dict:
    GENERATOR_STATS.reset()
    generated = SchemaGenerator().get_schema(request=None, public=True)
    warnings = [w for w in GENERATOR_STATS._warn_cache if "accounts/" in w or "tenants/" in w]
    generated["_our_warnings"] = warnings
    return generated


def operation(schema: dict, path: str, method: str = "post") -> dict:
    return schema["paths"][f"/api/v1/{path}/"][method]


def test_public_auth_operations_need_no_bearer_but_a_tenant(schema):
    for path in PUBLIC:
        op = operation(schema, f"auth/{path}")
        assert op.get("security") == [{"tenantHeader": []}], path  # X-Tenant-ID, no bearer


def test_other_operations_need_a_bearer(schema):
    for path, method in BEARER:
        assert operation(schema, f"auth/{path}", method)["security"] == [{"bearerAuth": [], "tenantHeader": []}], path
    for path, method in BEARER_OR_KEY:
        assert operation(schema, f"auth/{path}", method)["security"] == [
            {"bearerAuth": [], "tenantHeader": []},
            {"apiKeyAuth": []},  # the key implies the tenant
        ], path
    for path, method in (
        ("tenant", "get"),
        ("tenant", "patch"),
        ("users", "get"),
        ("users", "post"),
        ("users/{id}", "patch"),
        ("users/{id}", "delete"),
    ):
        # a person's bearer token, or an API key with the ``admin`` scope (which implies the tenant)
        assert operation(schema, path, method)["security"] == [
            {"bearerAuth": [], "tenantHeader": []},
            {"apiKeyAuth": []},
        ], (path, method)


def test_shapes(schema):
    components = schema["components"]["schemas"]
    assert set(components["AuthResponse"]["properties"]) == {"access", "refresh", "user"}
    assert set(components["TenantSettings"]["properties"]) == {
        "allowed_models",
        "default_model",
        "system_prompt",
        "answer_language",
        "signup_allowed",
        "daily_token_quota",
        "user_daily_token_quota",
    }
    assert components["UserRoleEnum"]["enum"] == ["admin", "member", "viewer"]
    assert "401" in operation(schema, "auth/login")["responses"]


def test_no_schema_warnings_from_accounts_or_tenants(schema):
    assert schema["_our_warnings"] == []
