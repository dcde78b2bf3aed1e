"""drf-spectacular: ``Authorization: Api-Key <key>`` as the ``apiKeyAuth`` scheme (registered on import)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class APIKeyScheme(OpenApiAuthenticationExtension):
    target_class = "integrations.authentication.APIKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[Any]] | None:
        """Only on the operations a key may use (integrations.scopes), so the schema tells the truth."""
        from integrations.scopes import required_scope

        if required_scope(auto_schema.view, auto_schema.method) is None:
            return None
        return {self.name: []}

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` (created at /api/v1/api-keys/; the key implies its tenant, "
            "so X-Tenant-ID may be left out). Each endpoint needs a scope: see integrations/scopes.py.",
        }
