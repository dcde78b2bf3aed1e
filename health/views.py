"""Public liveness, readiness and health endpoints, and the service root."""

from __future__ import annotations

import time

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from health import checks

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
