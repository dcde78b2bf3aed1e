"""The project's URLs plus the test-only views of ``tests.foundation.views`` under /api/v1/_t/."""

from __future__ import annotations

from django.urls import path

from config import urls as project_urls
from tests.foundation import views

urlpatterns = [
    path("api/v1/_t/echo", views.EchoView.as_view()),
    path("api/v1/_t/strict", views.StrictView.as_view()),
    path("api/v1/_t/private", views.PrivateView.as_view()),
    path("api/v1/_t/boom", views.BoomView.as_view()),
    path("api/v1/_t/django-boom", views.django_boom),
    *project_urls.urlpatterns,
]

handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500
