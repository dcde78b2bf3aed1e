"""Public liveness, readiness and health endpoints, and the service root."""

from __future__ import annotations

import os
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from drf_spectacular.utils import extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import error_response, handler404
from health import checks
from health.metrics import TaskLedgerCollector

STARTED_AT = time.monotonic()


class PublicView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []


class RootView(PublicView):
    @extend_schema(
        summary="Service information",
        responses=inline_serializer(
            "Root",
            {
                "name": serializers.CharField(),
                "version": serializers.CharField(),
                "status": serializers.CharField(),
                "docs_url": serializers.CharField(),
                "api_prefix": serializers.CharField(),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "name": settings.APP_NAME,
                "version": settings.APP_VERSION,
                "status": "ok",
                "docs_url": "/docs",
                "api_prefix": settings.API_PREFIX,
            }
        )


class HealthView(PublicView):
    @extend_schema(
        summary="Health",
        responses=inline_serializer("Health", {"status": serializers.CharField(), "version": serializers.CharField()}),
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "version": settings.APP_VERSION})


class LiveView(PublicView):
    @extend_schema(
        summary="Liveness",
        responses=inline_serializer(
            "Live", {"status": serializers.CharField(), "uptime_seconds": serializers.FloatField()}
        ),
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok", "uptime_seconds": round(time.monotonic() - STARTED_AT, 3)})


class ReadyView(PublicView):
    @extend_schema(
        summary="Readiness: every dependency checked (503 when one fails)",
        responses={
            200: inline_serializer("Ready", {"status": serializers.CharField(), "checks": serializers.DictField()}),
            503: inline_serializer("NotReady", {"status": serializers.CharField(), "checks": serializers.DictField()}),
        },
    )
    def get(self, request: Request) -> Response:
        ok, results = checks.run_checks()
        return Response({"status": "ok" if ok else "unavailable", "checks": results}, status=200 if ok else 503)


LOOPBACK = {"127.0.0.1", "::1"}


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics (``GET /metrics``): the operator's, never a tenant's.

    With ``METRICS_TOKEN`` set, only ``Authorization: Bearer <METRICS_TOKEN>`` is served (401 for a
    missing or wrong token). Without it only a loopback client is (``REMOTE_ADDR``, which is the
    forwarded client's address behind a trusted proxy, see ``config.client_ip``); anyone else gets the
    ordinary 404, as if the route did not exist. Not in the OpenAPI schema: it is not the API.
    """
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not constant_time_compare(given.strip(), token):
            return error_response(
                401, "not_authenticated", "The metrics need a bearer token.", headers={"WWW-Authenticate": "Bearer"}
            )
    elif request.META.get("REMOTE_ADDR") not in LOOPBACK:
        return handler404(request)
    if request.method not in ("GET", "HEAD"):
        return error_response(405, "method_not_allowed", f"Method {request.method} is not allowed.")
    body = generate_latest(metrics_registry()) + generate_latest(LEDGER_REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def metrics_registry() -> CollectorRegistry:
    """This process's registry, or every process's samples in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


LEDGER_REGISTRY = CollectorRegistry(auto_describe=False)
LEDGER_REGISTRY.register(TaskLedgerCollector())
