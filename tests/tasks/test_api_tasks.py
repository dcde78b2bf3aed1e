"""The task API: to-do CRUD, background tasks protected (409), transitions, scoping, cancel and retry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from tasks.models import Task
from tests.crosstenant import IsolatedResourceTests, assert_envelope, assert_isolated, assert_requires_auth
from tests.factories import UserFactory
from tests.tasks.factories import TaskFactory, background
from tests.tasks.worker_tasks import run_steps

URL = "/api/v1/tasks/"


def detail(task: Task, suffix: str = "") -> str:
    return f"{URL}{task.pk}/{suffix + '/' if suffix else ''}"


@pytest.fixture
def colleague(tenant: Any) -> User:
    return UserFactory(tenant=tenant, email="colleague@acme.test", role=User.Role.MEMBER)


# --- create ----------------------------------------------------------------------------------


def test_create_a_todo(api: APIClient, user: User) -> None:
    due = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    response = api.post(
        URL, {"title": "Read the contract", "description": "pages 1-10", "due_at": due.isoformat()}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "todo" and body["is_background"] is False
    assert (body["title"], body["description"], body["status"], body["progress"]) == (
        "Read the contract",
        "pages 1-10",
        "pending",
        0,
    )
    assert body["owner"] == str(user.pk)
    assert body["error"] is None and body["completed_at"] is None
    task = Task.objects.get(pk=body["id"])
    assert (task.tenant_id, task.owner_id, task.due_at) == (user.tenant_id, user.pk, due)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 256}, "title"),
        ({"title": "ok", "due_at": "next tuesday"}, "due_at"),
        ({"title": "ok", "kind": "document_ingestion"}, "kind"),
        ({"title": "ok", "kind": "nonsense"}, "kind"),
    ],
)
def test_create_rejects_bad_input(api: APIClient, body: dict[str, Any], field: str) -> None:
    error = assert_envelope(api.post(URL, body, format="json"), 400, "validation_error")
    assert field in error["details"]["fields"], error
    assert not Task.objects.exists()


def test_create_refuses_background_kinds_with_a_clear_message(api: APIClient) -> None:
    error = assert_envelope(api.post(URL, {"title": "x", "kind": "document_ingestion"}, format="json"), 400)
    assert "background tasks are started by the system" in error["message"]


def test_create_ignores_bookkeeping_fields(api: APIClient) -> None:
    body = api.post(URL, {"title": "x", "status": "completed", "progress": 90, "attempts": 7}, format="json").json()
    assert (body["status"], body["progress"], body["attempts"]) == ("pending", 0, 0)


def test_malformed_json_is_a_400(api: APIClient) -> None:
    assert_envelope(api.generic("POST", URL, "{not json", content_type="application/json"), 400)


# --- list, filters, ordering, pagination, scoping --------------------------------------------


def test_members_list_their_own_tasks_and_admins_all_of_the_tenants(
    api: APIClient, admin_api: APIClient, user: User, admin_user: User, colleague: User, other_user: User
) -> None:
    mine = TaskFactory(owner=user)
    theirs = TaskFactory(owner=colleague)
    admins = background(admin_user)
    TaskFactory(owner=other_user)  # another tenant

    assert {t["id"] for t in api.get(URL).json()["results"]} == {str(mine.pk)}
    assert {t["id"] for t in admin_api.get(URL).json()["results"]} == {str(mine.pk), str(theirs.pk), str(admins.pk)}


def test_filters_by_kind_and_status(api: APIClient, user: User) -> None:
    todo = TaskFactory(owner=user)
    done_todo = TaskFactory(owner=user, status=Task.Status.COMPLETED)
    running = background(user, Task.Status.PROCESSING)
    failed = background(user, Task.Status.FAILED)

    def ids(query: str) -> set[int]:  # task ids are strings in JSON (design.md)
        response = api.get(URL + query)
        assert response.status_code == 200, response.json()
        assert all(isinstance(t["id"], str) for t in response.json()["results"])
        return {int(t["id"]) for t in response.json()["results"]}

    assert ids("?kind=todo") == {todo.pk, done_todo.pk}
    assert ids("?kind=document_ingestion") == {running.pk, failed.pk}
    assert ids("?status=pending") == {todo.pk}
    assert ids("?status=processing&status=failed") == {running.pk, failed.pk}
    assert ids("?kind=todo&status=completed") == {done_todo.pk}
    assert ids("?search=" + running.title) == {running.pk}


@pytest.mark.parametrize("query", ["?status=nope", "?kind=nope", "?due_before=yesterday"])
def test_bad_filter_values_are_a_400(api: APIClient, query: str) -> None:
    assert_envelope(api.get(URL + query), 400, "validation_error")


def test_due_date_filters(api: APIClient, user: User) -> None:
    now = timezone.now()
    soon = TaskFactory(owner=user, due_at=now + timedelta(hours=1))
    later = TaskFactory(owner=user, due_at=now + timedelta(days=3))
    TaskFactory(owner=user)

    cutoff = (now + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert [t["id"] for t in api.get(URL, {"due_before": cutoff}).json()["results"]] == [str(soon.pk)]
    assert [t["id"] for t in api.get(URL, {"due_after": cutoff}).json()["results"]] == [str(later.pk)]


def test_ordering_and_pagination(api: APIClient, user: User) -> None:
    for title in ("b", "c", "a"):
        TaskFactory(owner=user, title=title)

    body = api.get(URL, {"ordering": "title", "page_size": 2}).json()
    assert body["count"] == 3 and body["next"]
    assert [t["title"] for t in body["results"]] == ["a", "b"]
    assert [t["title"] for t in api.get(URL, {"ordering": "-title"}).json()["results"]] == ["c", "b", "a"]
    # newest first by default
    assert [t["title"] for t in api.get(URL).json()["results"]] == ["a", "c", "b"]
    assert api.get(URL, {"ordering": "title", "page_size": 2, "page": 2}).json()["results"][0]["title"] == "c"
    assert_envelope(api.get(URL, {"page": 9}), 404, "not_found")


def test_list_query_count_does_not_grow_with_the_rows(api: APIClient, user: User) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api.get(URL, {"page_size": 100}).status_code == 200
        # the rate limiter's cache traffic varies with the cache's state; the rest must not grow
        return len(
            [q for q in ctx.captured_queries if "documind_cache" not in q["sql"] and "SAVEPOINT" not in q["sql"]]
        )

    TaskFactory(owner=user)
    first = queries_for_list()  # the tenant is looked up, then remembered for a few seconds (tenants.lookup)
    few = queries_for_list()
    assert few == first - 1
    for _ in range(15):
        TaskFactory(owner=user)
        background(user)
    assert queries_for_list() == few <= 3  # the token's user (with tenant), the count, the page


def test_anonymous_is_401(anon_api: APIClient, user: User) -> None:
    task = TaskFactory(owner=user)
    assert_requires_auth(URL, anon_api, verbs=("get", "post"))
    assert_requires_auth(detail(task), anon_api, verbs=("get", "patch", "delete"))
    assert_requires_auth(detail(task, "cancel"), anon_api, verbs=("post",))


# --- another tenant, another member ----------------------------------------------------------


class TestTasksAreIsolated(IsolatedResourceTests):
    """Anonymous 401, own 200, another tenant's 404, a bounded list (the shared mixin)."""

    list_url = URL
    foreign_body = {"title": "hijacked"}
    max_list_queries = 4

    def make_object(self, owner: User) -> Task:
        return TaskFactory(owner=owner)

    def check_unchanged(self, obj: Task) -> None:
        assert Task.objects.get(pk=obj.pk).title == obj.title


def test_another_tenants_task_is_a_404_on_every_route(
    api: APIClient, user: User, other_user: User, client_for: Callable[..., APIClient]
) -> None:
    foreign = client_for(other_user)
    todo = TaskFactory(owner=user, title="secret")
    job = background(user, Task.Status.FAILED)

    assert_isolated(detail(todo), api, foreign, body={"title": "hijacked"})
    assert_isolated(detail(job), api, foreign, body={"title": "hijacked"})
    for task in (todo, job):
        assert_envelope(foreign.patch(detail(task, "complete")), 404, "not_found")
        assert_envelope(foreign.post(detail(task, "cancel")), 404, "not_found")
        assert_envelope(foreign.post(detail(task, "retry")), 404, "not_found")
    # and a tenant admin of the other tenant cannot see them either
    other_admin = UserFactory(tenant=other_user.tenant, email="admin@globex.test", role=User.Role.ADMIN)
    assert_envelope(client_for(other_admin).get(detail(todo)), 404, "not_found")
    assert {t["id"] for t in foreign.get(URL).json()["results"]} == set()
    assert Task.objects.get(pk=todo.pk).title == "secret"
    assert Task.objects.get(pk=job.pk).status == Task.Status.FAILED


def test_another_members_task_is_a_404_but_a_tenant_admin_can_act_on_it(
    api: APIClient, admin_api: APIClient, colleague: User
) -> None:
    todo = TaskFactory(owner=colleague)
    job = background(colleague, Task.Status.PENDING)

    for verb, path in [
        ("get", detail(todo)),
        ("patch", detail(todo)),
        ("delete", detail(todo)),
        ("patch", detail(todo, "complete")),
        ("post", detail(job, "cancel")),
    ]:
        assert_envelope(getattr(api, verb)(path, {"title": "x"}, format="json"), 404, "not_found")

    assert admin_api.get(detail(todo)).status_code == 200
    assert admin_api.patch(detail(todo, "complete")).json()["status"] == "completed"
    assert admin_api.post(detail(job, "cancel")).json()["status"] == "cancelled"


def test_viewers_read_their_tasks_but_cannot_write(client_for: Callable[..., APIClient], viewer_user: User) -> None:
    viewer = client_for(viewer_user)
    todo = TaskFactory(owner=viewer_user)

    assert viewer.get(URL).json()["count"] == 1
    assert viewer.get(detail(todo)).status_code == 200
    assert_envelope(viewer.post(URL, {"title": "x"}, format="json"), 403, "permission_denied")
    assert_envelope(viewer.patch(detail(todo), {"title": "x"}, format="json"), 403, "permission_denied")
    assert_envelope(viewer.delete(detail(todo)), 403, "permission_denied")
    assert_envelope(viewer.patch(detail(todo, "complete")), 403, "permission_denied")
    assert_envelope(viewer.post(detail(todo, "cancel")), 403, "permission_denied")
    assert Task.objects.get(pk=todo.pk).status == Task.Status.PENDING


# --- change and delete to-dos; background tasks are protected --------------------------------


def test_put_and_patch_change_a_todo(api: APIClient, user: User) -> None:
    todo = TaskFactory(owner=user, description="old")

    body = api.patch(detail(todo), {"description": "new"}, format="json").json()
    assert (body["title"], body["description"]) == (todo.title, "new")

    response = api.put(detail(todo), {"title": "renamed", "due_at": None}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["title"] == "renamed"

    assert_envelope(api.put(detail(todo), {"description": "no title"}, format="json"), 400, "validation_error")
    assert_envelope(api.patch(detail(todo), {"title": ""}, format="json"), 400, "validation_error")


def test_todo_status_moves_through_the_state_machine(api: APIClient, user: User) -> None:
    todo = TaskFactory(owner=user)

    def set_status(status: str) -> Any:
        return api.patch(detail(todo), {"status": status}, format="json")

    assert set_status("processing").json()["status"] == "processing"
    done = set_status("completed").json()
    assert (done["status"], done["progress"]) == ("completed", 100) and done["completed_at"]
    error = assert_envelope(set_status("processing"), 409, "conflict")
    assert error["details"] == {"status": "completed", "requested": "processing", "allowed": ["pending"]}
    reopened = set_status("pending").json()
    assert (reopened["status"], reopened["completed_at"], reopened["progress"]) == ("pending", None, 0)
    assert set_status("cancelled").json()["status"] == "cancelled"
    assert_envelope(set_status("completed"), 409, "conflict")
    assert_envelope(set_status("failed"), 400, "validation_error")  # failing is for background work
    assert_envelope(set_status("bogus"), 400, "validation_error")
    assert Task.objects.get(pk=todo.pk).status == Task.Status.CANCELLED


def test_a_rejected_transition_changes_nothing(api: APIClient, user: User) -> None:
    todo = TaskFactory(owner=user, status=Task.Status.COMPLETED, title="keep")
    assert_envelope(api.patch(detail(todo), {"title": "changed", "status": "processing"}, format="json"), 409)
    assert Task.objects.get(pk=todo.pk).title == "keep"


def test_delete_a_todo(api: APIClient, user: User) -> None:
    todo = TaskFactory(owner=user)
    assert api.delete(detail(todo)).status_code == 204
    assert_envelope(api.get(detail(todo)), 404, "not_found")


@pytest.mark.parametrize(
    "status", [Task.Status.PENDING, Task.Status.PROCESSING, Task.Status.COMPLETED, Task.Status.FAILED]
)
def test_changing_or_deleting_a_background_task_is_a_409(api: APIClient, user: User, status: str) -> None:
    job = background(user, status, title="Ingest report.pdf")

    for response in (
        api.put(detail(job), {"title": "x"}, format="json"),
        api.patch(detail(job), {"title": "x"}, format="json"),
        api.patch(detail(job), {"status": "completed"}, format="json"),
        api.delete(detail(job)),
        api.patch(detail(job, "complete")),
    ):
        error = assert_envelope(response, 409, "conflict")
        assert "background task" in error["message"]
        assert error["details"]["kind"] == "document_ingestion"
    job.refresh_from_db()
    assert (job.title, job.status) == ("Ingest report.pdf", status)


# --- complete, cancel, retry -----------------------------------------------------------------


def test_complete_a_todo(api: APIClient, user: User) -> None:
    todo = TaskFactory(owner=user)

    first = api.patch(detail(todo, "complete"))
    assert first.status_code == 200
    assert first.json()["status"] == "completed" and first.json()["completed_at"]
    again = api.patch(detail(todo, "complete"))  # idempotent
    assert again.status_code == 200 and again.json()["completed_at"] == first.json()["completed_at"]
    assert api.post(detail(todo, "complete")).status_code == 405


def test_a_cancelled_todo_cannot_be_completed(api: APIClient, user: User) -> None:
    todo = TaskFactory(owner=user, status=Task.Status.CANCELLED)
    error = assert_envelope(api.patch(detail(todo, "complete")), 409, "conflict")
    assert error["details"]["status"] == "cancelled"


@pytest.mark.parametrize("kind", ["todo", "document_ingestion"])
def test_cancel_pending_and_processing_tasks(
    api: APIClient, user: User, kind: str, django_capture_on_commit_callbacks: Any
) -> None:
    for status in (Task.Status.PENDING, Task.Status.PROCESSING):
        task = TaskFactory(owner=user, kind=kind, status=status)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            body = api.post(detail(task, "cancel")).json()
        assert body["status"] == "cancelled" and body["finished_at"]
        # background work: the revoke and the event go out after the commit; to-dos only publish
        assert len(callbacks) == (2 if kind != "todo" else 1)
        assert api.post(detail(task, "cancel")).json()["status"] == "cancelled"  # idempotent


@pytest.mark.parametrize("status", [Task.Status.COMPLETED, Task.Status.FAILED])
def test_finished_tasks_cannot_be_cancelled(api: APIClient, user: User, status: str) -> None:
    job = background(user, status)
    error = assert_envelope(api.post(detail(job, "cancel")), 409, "conflict")
    assert f"already {status}" in error["message"]
    assert Task.objects.get(pk=job.pk).status == status


@pytest.fixture
def steps_kind() -> Any:
    """Rows of this kind name the test-only ``run_steps`` Celery task (``celery_task_name``)."""
    return "test_api_steps"


@pytest.mark.parametrize("status", [Task.Status.FAILED, Task.Status.CANCELLED])
def test_retry_a_failed_or_cancelled_background_task(
    api: APIClient, user: User, steps_kind: str, status: str, django_capture_on_commit_callbacks: Any
) -> None:
    job = TaskFactory(
        owner=user, kind=steps_kind, celery_task_name=run_steps.name, status=status, progress=40, stage="embedding",
        attempts=1,
        celery_task_id="old-run", error={"type": "boom", "message": "it broke"}, payload={"steps": 2},
        started_at=timezone.now(), finished_at=timezone.now(), heartbeat_at=timezone.now(),
    )  # fmt: skip

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(detail(job, "retry"))

    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["status"], body["progress"], body["stage"], body["error"]) == ("pending", 0, "queued", None)
    assert body["started_at"] is None and body["finished_at"] is None
    job.refresh_from_db()
    assert job.celery_task_id and job.celery_task_id != "old-run"
    assert job.attempts == 1  # counted when the worker starts the new attempt
    assert len(callbacks) == 2  # the enqueue and the event


@pytest.mark.parametrize("status", [Task.Status.PENDING, Task.Status.PROCESSING, Task.Status.COMPLETED])
def test_unfinished_or_completed_tasks_cannot_be_retried(
    api: APIClient, user: User, steps_kind: str, status: str
) -> None:
    job = TaskFactory(owner=user, kind=steps_kind, celery_task_name=run_steps.name, status=status)
    error = assert_envelope(api.post(detail(job, "retry")), 409, "conflict")
    assert "Only failed or cancelled tasks can be retried" in error["message"]


def test_todos_cannot_be_retried(api: APIClient, user: User) -> None:
    todo = TaskFactory(owner=user, status=Task.Status.CANCELLED)
    error = assert_envelope(api.post(detail(todo, "retry")), 409, "conflict")
    assert "To-dos are not retried" in error["message"]


@pytest.mark.parametrize("celery_task_name", ["tests.no_such_task", "", "health.ping"])
def test_a_row_whose_celery_task_is_unknown_or_untracked_cannot_be_retried(
    api: APIClient, user: User, celery_task_name: str
) -> None:
    """Unknown to Celery's registry, not named at all, or not a TrackedTask (it would not keep the row)."""
    job = TaskFactory(owner=user, kind="unknown_kind", celery_task_name=celery_task_name, status=Task.Status.FAILED)
    error = assert_envelope(api.post(detail(job, "retry")), 409, "conflict")
    assert "No worker task named" in error["message"]
    assert error["details"]["celery_task"] == celery_task_name
    assert Task.objects.get(pk=job.pk).status == Task.Status.FAILED


def test_unknown_ids_are_404(api: APIClient) -> None:
    assert_envelope(api.get(URL + "999999/"), 404, "not_found")
    assert_envelope(api.post(URL + "999999/cancel/"), 404, "not_found")
    assert_envelope(api.get(URL + "not-a-number/"), 404, "not_found")
