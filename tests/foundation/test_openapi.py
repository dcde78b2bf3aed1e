"""The OpenAPI schema, Swagger UI and ReDoc: valid, documented, and served without any CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client: Client) -> dict[str, Any]:
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def test_schema_generates_without_warnings_and_validates(tmp_path: Path) -> None:
    """``spectacular --validate --fail-on-warn``: every view of every app, as the schema endpoint sees them."""
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.read_text().startswith("openapi: 3")


def test_schema_documents_the_bearer_scheme_tenant_header_and_error_envelope(schema: dict[str, Any]) -> None:
    components = schema["components"]
    assert components["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    # X-Tenant-ID is a security scheme, so that "Authorize" in Swagger UI sets it once for every call.
    tenant = components["securitySchemes"]["tenantHeader"]
    assert (tenant["type"], tenant["in"], tenant["name"]) == ("apiKey", "header", "X-Tenant-ID")
    error = components["schemas"]["ErrorEnvelope"]["properties"]["error"]
    assert set(error["required"]) == {"type", "message", "details", "request_id"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorEnvelope"
            }, (method, path)


def test_public_operations_need_neither_token_nor_tenant(schema: dict[str, Any]) -> None:
    for path in ("/", "/healthz", "/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready"):
        operation = schema["paths"][path]["get"]
        assert operation.get("security") == [], path
    assert "503" in schema["paths"]["/api/v1/health/ready"]["get"]["responses"]


@pytest.mark.urls("tests.foundation.urls")
def test_tenant_scoped_operations_get_the_header_the_bearer_scheme_and_their_errors(schema: dict[str, Any]) -> None:
    private = schema["paths"]["/api/v1/_t/private"]["get"]
    assert private["security"] == [{"bearerAuth": [], "tenantHeader": []}]
    assert {"400", "401", "403", "404", "429"} <= set(private["responses"])
    echo = schema["paths"]["/api/v1/_t/echo"]["get"]  # AllowAny: the token is optional, the tenant is not
    assert echo["security"] == [{"bearerAuth": [], "tenantHeader": []}, {"tenantHeader": []}]


def test_every_operation_has_a_summary_and_no_rest_markup(schema: dict[str, Any]) -> None:
    import json

    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), (method, path)
    text = json.dumps(schema)
    for markup in ("``", ":func:`", ":class:`", ":meth:`", ":attr:`", ":mod:`"):
        assert markup not in text, markup


def test_reST_becomes_markdown() -> None:
    from config.openapi import to_markdown

    assert to_markdown("``POST /x/`` calls :func:`documents.uploads.check` and :class:`~a.b.C`") == (
        "`POST /x/` calls `documents.uploads.check` and `C`"
    )


def test_upload_requires_the_file(schema: dict[str, Any]) -> None:
    body = schema["paths"]["/api/v1/documents/"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    upload = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert upload["required"] == ["file"]
    assert upload["properties"]["file"] == {**upload["properties"]["file"], "type": "string", "format": "binary"}


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"src", "href"} and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_only_local_assets_that_are_served(client: Client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    parser = _Assets()
    parser.feed(html)
    assets = [url for url in parser.urls if not url.startswith("data:")]
    assert assets, html[:500]
    # no absolute URL anywhere in the page: nothing can come from a CDN (this must work offline)
    assert not re.search(r"""["'(]\s*(https?:)?//""", html), re.findall(r"""["'(]\s*(?:https?:)?//[^"')]+""", html)
    scripts = ""
    for url in assets:
        if url.startswith(f"{page}?script"):  # Swagger UI's start-up script, served as a file (CSP: no inline)
            asset = client.get(url)
            assert asset.status_code == 200 and "javascript" in asset["Content-Type"], url
            scripts += asset.content.decode()
            continue
        assert url.startswith("/static/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        on_disk = finders.find(url.removeprefix("/static/"))
        assert on_disk and int(asset["Content-Length"]) == Path(on_disk).stat().st_size > 100, url
    # the page (or its start-up script) points at the schema endpoint
    assert "/api/v1/schema/" in html + scripts


def test_swagger_ui_bundle_is_served_with_a_javascript_type(client: Client) -> None:
    response = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
