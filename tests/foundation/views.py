"""Views that exist only in the tests of the cross-cutting behaviour (mounted by ``tests.foundation.urls``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class EchoInput(serializers.Serializer):
    name = serializers.CharField(max_length=20)


class EchoView(APIView):
    """GET answers who is asking; POST validates ``{"name"}``. Default rate limit."""

    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response({"user": str(request.user.pk) if request.user.is_authenticated else None})

    def post(self, request: Request) -> Response:
        data = EchoInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(data.validated_data, status=201)


class StrictView(APIView):
    """A stricter per-view limit."""

    permission_classes = [AllowAny]
    ratelimit_rate = "2/m"

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class PrivateView(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class BoomView(APIView):
    """An unexpected error inside DRF."""

    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise RuntimeError("secret-internal-detail DATABASE_PASSWORD=hunter2")


def django_boom(request: HttpRequest) -> HttpResponse:
    """An unexpected error in a plain Django view."""
    raise RuntimeError("secret-internal-detail in a Django view")


class ExplodingMiddleware:
    """Raises for one path, to prove that middleware errors get the envelope too."""

    def __init__(self, get_response):  # type: ignore[no-untyped-def]
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.endswith("/explode-in-middleware"):
            raise ValueError("secret-internal-detail from a middleware")
        return self.get_response(request)
