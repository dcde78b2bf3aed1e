"""Projects: CRUD, names unique per tenant, read-only for viewers, isolated between tenants."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from accounts.models import User
from documents.models import Document, Project
from tests.crosstenant import IsolatedResourceTests, assert_envelope, assert_isolated, assert_requires_auth
from tests.documents.conftest import PROJECTS_URL
from tests.factories import ProjectFactory, UserFactory


def test_project_crud(api: APIClient, tenant: Any) -> None:
    response = api.post(
        PROJECTS_URL, {"name": " Finance ", "description": "Money", "settings": {"top_k": 5}}, format="json"
    )
    assert response.status_code == 201, response.content
    project = response.json()
    assert (project["name"], project["description"], project["settings"], project["document_count"]) == (
        "Finance",
        "Money",
        {"top_k": 5},
        0,
    )
    url = f"{PROJECTS_URL}{project['id']}/"

    assert api.get(url).json()["name"] == "Finance"
    assert [p["id"] for p in api.get(PROJECTS_URL).json()["results"]] == [project["id"]]
    assert api.patch(url, {"description": "Budgets"}, format="json").json()["description"] == "Budgets"
    assert api.put(url, {"name": "Fin", "description": "", "settings": {}}, format="json").json()["name"] == "Fin"
    assert api.delete(url).status_code == 204
    assert not Project.objects.filter(tenant=tenant).exists()


def test_names_are_unique_per_tenant(api: APIClient, client_for: Any, other_user: User) -> None:
    assert api.post(PROJECTS_URL, {"name": "Legal"}, format="json").status_code == 201
    assert_envelope(api.post(PROJECTS_URL, {"name": "Legal"}, format="json"), 409, "conflict")
    other = api.post(PROJECTS_URL, {"name": "Other"}, format="json").json()
    assert_envelope(api.patch(f"{PROJECTS_URL}{other['id']}/", {"name": "Legal"}, format="json"), 409, "conflict")
    assert client_for(other_user).post(PROJECTS_URL, {"name": "Legal"}, format="json").status_code == 201


def test_invalid_projects_are_400(api: APIClient) -> None:
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": "ok", "settings": [1, 2]}):
        assert_envelope(api.post(PROJECTS_URL, body, format="json"), 400, "validation_error")


def test_nul_characters_in_settings_are_400_not_500(api: APIClient, tenant: Any) -> None:
    """PostgreSQL's jsonb cannot store U+0000: it must be refused as input, not crash the INSERT."""
    for settings in ({"a": "x\u0000y"}, {"a\u0000": 1}, {"nested": [{"deep": "\u0000"}]}):
        error = assert_envelope(api.post(PROJECTS_URL, {"name": "p", "settings": settings}, format="json"), 400)
        assert error["type"] == "validation_error" and "settings" in error["details"]["fields"], error
    assert not Project.objects.filter(tenant=tenant).exists()
    project = api.post(PROJECTS_URL, {"name": "ok"}, format="json").json()
    response = api.patch(f"{PROJECTS_URL}{project['id']}/", {"settings": {"a": "\u0000"}}, format="json")
    assert_envelope(response, 400, "validation_error")


def test_deleting_a_project_keeps_its_documents(api: APIClient, uploaded: Any) -> None:
    project = api.post(PROJECTS_URL, {"name": "Temp"}, format="json").json()
    document = uploaded(project=project["id"])
    assert api.get(f"{PROJECTS_URL}{project['id']}/").json()["document_count"] == 1
    assert api.delete(f"{PROJECTS_URL}{project['id']}/").status_code == 204
    document.refresh_from_db()
    assert document.project_id is None and Document.objects.filter(pk=document.pk).exists()


def test_viewers_only_read_projects(api: APIClient, client_for: Any, tenant: Any) -> None:
    project = api.post(PROJECTS_URL, {"name": "Shared"}, format="json").json()
    viewer = client_for(UserFactory(tenant=tenant, role=User.Role.VIEWER))
    assert viewer.get(f"{PROJECTS_URL}{project['id']}/").status_code == 200
    assert_envelope(viewer.post(PROJECTS_URL, {"name": "Nope"}, format="json"), 403, "permission_denied")
    assert_envelope(viewer.delete(f"{PROJECTS_URL}{project['id']}/"), 403, "permission_denied")


class TestProjectsAreIsolated(IsolatedResourceTests):
    """Anonymous 401, own 200, another tenant's 404, a bounded list (the shared mixin)."""

    list_url = PROJECTS_URL
    foreign_body = {"name": "Stolen"}

    def make_object(self, owner: User) -> Project:
        return ProjectFactory(tenant=owner.tenant)

    def check_unchanged(self, obj: Project) -> None:
        assert Project.objects.get(pk=obj.pk).name == obj.name


def test_projects_are_isolated_between_tenants(api: APIClient, client_for: Any, other_user: User) -> None:
    project = api.post(PROJECTS_URL, {"name": "Mine"}, format="json").json()
    foreign = client_for(other_user)
    assert_isolated(f"{PROJECTS_URL}{project['id']}/", api, foreign, body={"name": "Stolen"})
    assert foreign.get(PROJECTS_URL).json()["count"] == 0
    assert Project.objects.get(pk=project["id"]).name == "Mine"


def test_projects_require_authentication(anon_api: APIClient) -> None:
    assert_requires_auth(PROJECTS_URL, anon_api, verbs=("get", "post"))
