"""drf-spectacular additions: the bearer scheme, the X-Tenant-ID header and the error envelope.

* :class:`TenantJWTScheme` documents :class:`accounts.authentication.TenantJWTAuthentication` as the
  ``bearerAuth`` HTTP bearer scheme (registered on import, from :class:`config.apps.ProjectConfig`).
* :func:`add_error_envelope_and_tenant_header` (a post-processing hook) adds the ``ErrorEnvelope``
  schema as every operation's ``default`` response, the usual error statuses of tenant-scoped
  operations, and the ``tenantHeader`` security scheme (``X-Tenant-ID``, an ``apiKey`` in the header,
  so Swagger UI's "Authorize" sets it once) wherever ``tenants.middleware`` demands it.
* :func:`markdown_descriptions` (a post-processing hook) turns the reST of docstrings (double
  backquotes, ``:func:`` roles) into the Markdown that Swagger UI and ReDoc render.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error, whatever raised it: DRF, Django, middleware or the WebSocket.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "details", "request_id"],
            "properties": {
                "type": {"type": "string", "description": "A snake_case code", "example": "validation_error"},
                "message": {"type": "string", "description": "Human-readable text"},
                "details": {"type": "object", "additionalProperties": True},
                "request_id": {"type": "string", "nullable": True, "description": "Echoed in X-Request-ID"},
            },
        }
    },
}

TENANT_SCHEME: dict[str, Any] = {
    "type": "apiKey",
    "in": "header",
    "name": "X-Tenant-ID",
    "description": "The tenant's slug or id, on every tenant-scoped call. The bearer token's tenant must match it.",
}

# What a tenant-scoped operation can answer besides its own responses.
TENANT_SCOPED_ERRORS = {
    "400": "Invalid input, or X-Tenant-ID missing (`validation_error`, `tenant_required`)",
    "401": "Missing, invalid or expired bearer token (`not_authenticated`, `authentication_failed`)",
    "403": "The role does not allow this (`permission_denied`)",
    "404": "Unknown tenant or object, including another tenant's (`tenant_not_found`, `not_found`)",
    "429": "Rate limit or token quota exceeded (`rate_limited`, `quota_exceeded`), with Retry-After",
}

METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}


class TenantJWTScheme(SimpleJWTScheme):
    """``Authorization: Bearer <access token>`` (simplejwt, bound to the tenant)."""

    target_class = "accounts.authentication.TenantJWTAuthentication"
    name = "bearerAuth"
    match_subclasses = True


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }


def add_error_envelope_and_tenant_header(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Post-processing hook (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``).

    A tenant-scoped operation's security is ``bearerAuth`` AND ``tenantHeader`` (or ``tenantHeader``
    alone where the token is optional, as on the sign-in endpoints), or ``apiKeyAuth`` alone where
    API keys are allowed.
    """
    from tenants.middleware import needs_tenant

    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorEnvelope"] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {})["tenantHeader"] = TENANT_SCHEME
    for path, item in result.get("paths", {}).items():
        tenant_scoped = needs_tenant(path)
        for method, operation in item.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("default", _error_response("Error (the envelope)"))
            if operation.get("security") == [{}]:
                operation["security"] = []  # public: no authentication at all
            if not tenant_scoped:
                continue
            for code, description in TENANT_SCOPED_ERRORS.items():
                if code == "401" and not operation.get("security", True):
                    continue
                responses.setdefault(code, _error_response(description))
            requirements = operation.get("security") or [{}]
            # An API key implies its tenant (integrations.authentication): X-Tenant-ID is optional with it.
            operation["security"] = [
                requirement if "apiKeyAuth" in requirement else {**requirement, "tenantHeader": []}
                for requirement in requirements
            ]
    return result


_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|ref|setting):`~?([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def to_markdown(text: str) -> str:
    """reST inline markup of a docstring as Markdown: ``x`` and :func:`x` become `x`."""
    text = _ROLE.sub(
        lambda match: f"`{match.group(1).rsplit('.', 1)[-1] if '~' in match.group(0) else match.group(1)}`", text
    )
    return _LITERAL.sub(r"`\1`", text)


def markdown_descriptions(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Post-processing hook: every ``description`` and ``summary`` of the schema through :func:`to_markdown`."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"description", "summary"} and isinstance(value, str):
                    node[key] = to_markdown(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(result)
    return result
