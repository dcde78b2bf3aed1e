"""drf-spectacular post-processing: the error envelope and the X-Tenant-ID header on every operation."""

from __future__ import annotations

from typing import Any

PUBLIC_PREFIXES = ("/api/v1/health", "/api/v1/schema")
PUBLIC_OPERATIONS = {"/api/v1/auth/request-code", "/api/v1/auth/verify-code", "/api/v1/auth/register",
                     "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/password/reset",
                     "/api/v1/auth/password/reset/confirm"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "details", "request_id"],
            "properties": {
                "type": {"type": "string", "example": "validation_error"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
                "request_id": {"type": "string", "nullable": True},
            },
        }
    },
}


def add_error_envelope_and_tenant_header(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorEnvelope"] = ERROR_SCHEMA
    components.setdefault("parameters", {})["XTenantID"] = {
        "name": "X-Tenant-ID",
        "in": "header",
        "required": True,
        "description": "The tenant's slug or id. The bearer token's tenant must match it.",
        "schema": {"type": "string"},
    }
    ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for code in ("400", "401", "403", "404", "429"):
                responses.setdefault(code, {"description": "Error", "content": {"application/json": {"schema": ref}}})
            if path.startswith(PUBLIC_PREFIXES):
                operation["security"] = []
                continue
            params = operation.setdefault("parameters", [])
            if not any(p.get("$ref") == "#/components/parameters/XTenantID" for p in params):
                params.append({"$ref": "#/components/parameters/XTenantID"})
            if path.rstrip("/") in PUBLIC_OPERATIONS:
                operation["security"] = []
    return result
