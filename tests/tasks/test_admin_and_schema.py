"""The Task admin and the task endpoints in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from tasks.models import Task
from tests.factories import UserFactory
from tests.tasks.factories import TaskFactory, background


@pytest.fixture
def staff_client(tenant: Any) -> Client:
    staff = UserFactory(tenant=tenant, email="ops@acme.test", role=User.Role.ADMIN)
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    return client


def test_admin_lists_filters_and_searches(staff_client: Client, user: User) -> None:
    TaskFactory(owner=user, title="Buy milk")
    background(user, Task.Status.FAILED, title="Ingest annual-report.pdf")

    page = staff_client.get("/admin/tasks/task/", {"status__exact": "failed"})
    assert page.status_code == 200
    assert b"Ingest annual-report.pdf" in page.content and b"Buy milk" not in page.content
    page = staff_client.get("/admin/tasks/task/", {"q": "milk", "kind__exact": "todo"})
    assert b"Buy milk" in page.content and b"annual-report" not in page.content


def test_admin_change_form_keeps_bookkeeping_read_only(staff_client: Client, user: User) -> None:
    job = background(user, Task.Status.PROCESSING, title="Ingest x.pdf")
    page = staff_client.get(f"/admin/tasks/task/{job.pk}/change/")
    assert page.status_code == 200
    assert b'name="celery_task_id"' not in page.content and b'name="attempts"' not in page.content
    assert b'name="title"' in page.content
    # the Celery task that runs the row and its stage timings are shown, not editable
    assert b"documents.ingest" in page.content and b'name="celery_task_name"' not in page.content
    assert b'name="timings"' not in page.content


def test_admin_cancel_action(staff_client: Client, user: User) -> None:
    running = background(user, Task.Status.PROCESSING)
    done = background(user, Task.Status.COMPLETED)

    response = staff_client.post(
        "/admin/tasks/task/", {"action": "cancel_tasks", "_selected_action": [running.pk, done.pk]}, follow=True
    )

    assert response.status_code == 200
    assert Task.objects.get(pk=running.pk).status == Task.Status.CANCELLED
    assert Task.objects.get(pk=done.pk).status == Task.Status.COMPLETED
    assert b"already completed" in response.content


def test_schema_documents_the_task_endpoints_without_warnings() -> None:
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    messages = [*GENERATOR_STATS._warn_cache, *GENERATOR_STATS._error_cache]
    assert [m for m in messages if "tasks/" in m or "Task" in m] == []

    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/tasks/"])
    assert {"get", "put", "patch", "delete"} <= set(paths["/api/v1/tasks/{id}/"])
    assert set(paths["/api/v1/tasks/{id}/complete/"]) == {"patch"}
    assert set(paths["/api/v1/tasks/{id}/cancel/"]) == {"post"}
    assert "202" in paths["/api/v1/tasks/{id}/retry/"]["post"]["responses"]
    assert "409" in paths["/api/v1/tasks/{id}/"]["patch"]["responses"]
    create = paths["/api/v1/tasks/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("TodoCreateRequest")
    assert {p["name"] for p in paths["/api/v1/tasks/"]["get"]["parameters"] if "name" in p} >= {
        "kind", "status", "ordering", "page", "page_size", "search",
    }  # fmt: skip
