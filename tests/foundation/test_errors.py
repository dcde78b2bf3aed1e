"""One error envelope for every error: DRF, Django, unknown URLs, 405, malformed JSON, 500, middleware."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from tests.crosstenant import assert_envelope

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.foundation.urls")]

SECRET = "secret-internal-detail"


def no_internals(response) -> None:  # type: ignore[no-untyped-def]
    body = response.content.decode()
    assert SECRET not in body and "Traceback" not in body and "hunter2" not in body, body


def test_validation_error_lists_fields(anon_api: APIClient) -> None:
    error = assert_envelope(
        anon_api.post("/api/v1/_t/echo", {"name": "x" * 50}, format="json"), 400, "validation_error"
    )
    assert "name" in error["details"]["fields"]
    assert error["message"].startswith("name:")


def test_malformed_json_is_a_400_envelope(anon_api: APIClient) -> None:
    response = anon_api.post("/api/v1/_t/echo", data='{"name": ', content_type="application/json")
    error = assert_envelope(response, 400, "validation_error")
    assert "JSON" in error["message"]


def test_unsupported_content_type(anon_api: APIClient) -> None:
    response = anon_api.post("/api/v1/_t/echo", data="<name/>", content_type="application/xml")
    assert_envelope(response, 415, "unsupported_media_type")


def test_method_not_allowed(anon_api: APIClient, client: Client) -> None:
    assert_envelope(anon_api.delete("/api/v1/_t/echo"), 405, "method_not_allowed")
    assert_envelope(client.post("/api/v1/health/live"), 405, "method_not_allowed")


@pytest.mark.parametrize("url", ["/nope", "/api/v1/nope", "/api/v2/health", "/docs/extra", "/static-ish"])
def test_unknown_urls(anon_api: APIClient, url: str) -> None:
    error = assert_envelope(anon_api.get(url), 404, "not_found")
    assert url in error["message"]


def test_unknown_api_url_without_a_tenant_fails_closed_first(client: Client) -> None:
    assert_envelope(client.get("/api/v1/nope"), 400, "tenant_required")


def test_unknown_url_is_an_envelope_with_debug_on_too(client: Client) -> None:
    with override_settings(DEBUG=True):
        assert_envelope(client.get("/nope/deeper"), 404, "not_found")


def test_missing_static_file_is_an_envelope(client: Client) -> None:
    assert_envelope(client.get("/static/nope.js"), 404, "not_found")


def test_unauthenticated_and_bad_token(anon_api: APIClient, client_for, tenant) -> None:  # type: ignore[no-untyped-def]
    assert_envelope(anon_api.get("/api/v1/_t/private"), 401, "not_authenticated")
    bad = client_for(None, tenant)
    bad.credentials(HTTP_X_TENANT_ID=tenant.slug, HTTP_AUTHORIZATION="Bearer not-a-jwt")
    assert_envelope(bad.get("/api/v1/_t/private"), 401, "authentication_failed")


def test_unhandled_error_in_a_drf_view_is_a_500_without_internals(anon_api: APIClient) -> None:
    response = anon_api.get("/api/v1/_t/boom")
    error = assert_envelope(response, 500, "internal_error")
    assert error["message"] == "An internal error occurred."
    no_internals(response)


def test_unhandled_error_in_a_django_view_is_a_500_without_internals(tenant) -> None:  # type: ignore[no-untyped-def]
    client = Client(raise_request_exception=False, HTTP_X_TENANT_ID=tenant.slug)
    response = client.get("/api/v1/_t/django-boom")
    assert_envelope(response, 500, "internal_error")
    no_internals(response)


def test_error_raised_in_a_middleware_is_an_envelope(settings, tenant) -> None:  # type: ignore[no-untyped-def]
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.foundation.views.ExplodingMiddleware"]
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/health/explode-in-middleware")
    assert_envelope(response, 500, "internal_error")
    no_internals(response)
    assert response["X-Request-ID"] == response.json()["error"]["request_id"]


def test_disallowed_host_is_a_400_envelope(client: Client) -> None:
    response = client.get("/api/v1/health", HTTP_HOST="evil.example.com")
    assert_envelope(response, 400, "bad_request")


def test_oversized_json_body_is_a_413_envelope(anon_api: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = anon_api.post("/api/v1/_t/echo", {"name": "x" * 4096}, format="json")
    assert_envelope(response, 413, "payload_too_large")


def test_too_many_fields_or_files_are_a_400_envelope(anon_api: APIClient) -> None:
    """Django refuses them with a SuspiciousOperation while DRF parses: a client error, never a 500."""
    from urllib.parse import urlencode

    from django.core.files.uploadedfile import SimpleUploadedFile

    fields = urlencode({f"f{i}": "x" for i in range(1100)})  # DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
    responses = [
        anon_api.post("/api/v1/_t/echo", fields, content_type="application/x-www-form-urlencoded"),
        anon_api.get("/api/v1/_t/echo?" + fields),
        anon_api.post(  # DATA_UPLOAD_MAX_NUMBER_FILES = 100
            "/api/v1/_t/echo", {f"f{i}": SimpleUploadedFile(f"{i}.txt", b"x") for i in range(120)}, format="multipart"
        ),
    ]
    for response in responses:
        assert_envelope(response, 400, "bad_request")
        no_internals(response)


def test_tenant_errors_come_from_the_middleware_in_the_envelope(client: Client) -> None:
    assert_envelope(client.get("/api/v1/_t/echo"), 400, "tenant_required")
    assert_envelope(client.get("/api/v1/_t/echo", HTTP_X_TENANT_ID="no-such-tenant"), 404, "tenant_not_found")


def test_debug_on_names_the_exception_but_never_shows_a_traceback(anon_api: APIClient, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = True
    error = assert_envelope(anon_api.get("/api/v1/_t/boom"), 500, "internal_error")
    assert error["message"].startswith("RuntimeError")
    assert "Traceback" not in str(error)


def test_middleware_and_drf_errors_are_serialised_alike(client: Client, anon_api: APIClient) -> None:
    """Errors of the middleware and Django's handlers and DRF's: one JSON rendering (compact separators,
    UTF-8 rather than \\u escapes), so clients and log scrapers see one format whichever layer answered."""
    responses = {
        "middleware": client.get("/api/v1/_t/echo"),  # tenant_required, from the tenant middleware
        "django": client.get("/nöpe/ünknown"),  # Django's 404 view
        "drf": anon_api.post("/api/v1/_t/echo", {"name": "ö" * 50}, format="json"),
    }
    for layer, response in responses.items():
        assert response["Content-Type"] == "application/json", layer
        body = response.content.decode()
        assert body.startswith('{"error":{"type":"'), (layer, body)
        assert '", "' not in body and '": ' not in body, (layer, body)
        assert "\\u00" not in body, (layer, body)
    assert "/nöpe/ünknown" in responses["django"].content.decode()


def test_no_stray_detail_prefix_on_token_errors(client_for, tenant) -> None:  # type: ignore[no-untyped-def]
    bad = client_for(None, tenant)
    bad.credentials(HTTP_X_TENANT_ID=tenant.slug, HTTP_AUTHORIZATION="Bearer not-a-jwt")
    error = assert_envelope(bad.get("/api/v1/_t/private"), 401, "authentication_failed")
    assert not error["message"].startswith("detail"), error
