"""Chat REST API: sessions (private to their user), history, whole answers through the same pipeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from chat.models import ChatSession, Message
from documents.models import Project
from tenants.models import UsageRecord
from tests.chat.conftest import make_ready_document
from tests.crosstenant import IsolatedResourceTests, assert_envelope
from tests.factories import ChatMessageFactory, ChatSessionFactory, UserFactory

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/chat/sessions/"


def test_session_crud(api: Any, user: Any, tenant: Any, handbook: Any) -> None:
    project = Project.objects.create(tenant=tenant, name="HR")
    response = api.post(
        SESSIONS,
        {"title": "HR questions", "project": str(project.pk), "document_ids": [str(handbook.pk)], "model": "gpt-4o"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["title"] == "HR questions" and body["project"] == str(project.pk)
    assert body["document_ids"] == [str(handbook.pk)] and body["model"] == "gpt-4o"
    url = f"{SESSIONS}{body['id']}/"
    assert api.get(url).json()["id"] == body["id"]
    listing = api.get(SESSIONS).json()
    assert [s["id"] for s in listing["results"]] == [body["id"]]

    response = api.patch(url, {"title": "Renamed", "project": None, "document_ids": []}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["title"] == "Renamed" and response.json()["project"] is None
    assert response.json()["document_ids"] == [] and response.json()["model"] == "gpt-4o"
    response = api.put(url, {"title": "Put", "model": ""}, format="json")
    assert response.status_code == 200 and response.json()["model"] == ""

    assert api.delete(url).status_code == 204
    assert not ChatSession.objects.filter(pk=body["id"]).exists()


def test_session_input_is_checked(api: Any, other_user: Any) -> None:
    foreign_project = Project.objects.create(tenant=other_user.tenant, name="Theirs")
    foreign_doc = make_ready_document(tenant=other_user.tenant, owner=other_user, pages=["secret"])
    assert_envelope(api.post(SESSIONS, {"model": "gpt-9"}, format="json"), 400, "model_not_allowed")
    assert_envelope(api.post(SESSIONS, {"project": str(foreign_project.pk)}, format="json"), 404, "not_found")
    error = assert_envelope(
        api.post(SESSIONS, {"document_ids": [str(foreign_doc.pk)]}, format="json"), 404, "not_found"
    )
    assert error["details"]["document_ids"] == [str(foreign_doc.pk)]
    assert_envelope(api.post(SESSIONS, {"document_ids": ["nope"]}, format="json"), 400, "validation_error")
    assert_envelope(api.post(SESSIONS, {"title": "x" * 201}, format="json"), 400, "validation_error")
    assert ChatSession.objects.count() == 0


def test_tenant_allow_list_and_default_model(api: Any, tenant: Any) -> None:
    tenant.settings = {**tenant.settings, "allowed_models": ["llama-3-8b"], "default_model": "llama-3-8b"}
    tenant.save()
    assert api.post(SESSIONS, {"model": "llama-3-8b"}, format="json").status_code == 201
    error = assert_envelope(api.post(SESSIONS, {"model": "gpt-4o"}, format="json"), 400, "model_not_allowed")
    assert error["details"]["allowed"] == ["llama-3-8b"]


def test_sessions_are_private_even_from_admins(api: Any, admin_api: Any, user: Any, admin_user: Any) -> None:
    mine = ChatSession.objects.create(tenant=user.tenant, user=user, title="mine")
    assert admin_api.get(SESSIONS).json()["results"] == []
    assert_envelope(admin_api.get(f"{SESSIONS}{mine.pk}/"), 404, "not_found")
    assert_envelope(admin_api.delete(f"{SESSIONS}{mine.pk}/"), 404, "not_found")
    assert_envelope(admin_api.get(f"{SESSIONS}{mine.pk}/messages/"), 404, "not_found")
    assert_envelope(admin_api.post(f"{SESSIONS}{mine.pk}/messages/", {"content": "hi"}, format="json"), 404)
    assert ChatSession.objects.filter(pk=mine.pk).exists()


class TestChatSessionsAreIsolated(IsolatedResourceTests):
    """Anonymous 401, own 200, another tenant's 404, a bounded list (the shared mixin)."""

    list_url = SESSIONS
    foreign_body = {"title": "stolen"}
    max_list_queries = 12

    def make_object(self, owner: Any) -> ChatSession:
        session = ChatSessionFactory(user=owner, title="mine")
        ChatMessageFactory(session=session)
        return session

    def check_unchanged(self, obj: ChatSession) -> None:
        assert ChatSession.objects.get(pk=obj.pk).title == "mine"


def test_every_messages_endpoint_is_isolated_between_tenants(
    api: Any, anon_api: Any, client_for: Any, user: Any, other_user: Any
) -> None:
    session = ChatSessionFactory(user=user, title="mine")
    ChatMessageFactory(session=session)
    messages = f"{SESSIONS}{session.pk}/messages/"
    foreign = client_for(other_user)
    assert api.get(messages).status_code == 200
    assert_envelope(foreign.get(messages), 404, "not_found")
    assert_envelope(foreign.post(messages, {"content": "hi"}, format="json"), 404, "not_found")
    assert_envelope(anon_api.get(messages), 401, "not_authenticated")
    assert_envelope(anon_api.post(messages, {"content": "hi"}, format="json"), 401, "not_authenticated")
    # a token of one tenant with the other tenant's header is refused
    assert client_for(user, tenant=other_user.tenant).get(SESSIONS).status_code == 401
    assert ChatSession.objects.get(pk=session.pk).title == "mine"


def test_history_is_paginated_oldest_first(api: Any, user: Any) -> None:
    session = ChatSession.objects.create(tenant=user.tenant, user=user)
    for i in range(25):
        Message.objects.create(
            tenant=user.tenant, session=session, role="user" if i % 2 == 0 else "assistant", content=f"m{i}"
        )
    first = api.get(f"{SESSIONS}{session.pk}/messages/").json()
    assert first["count"] == 25 and [m["content"] for m in first["results"]][:3] == ["m0", "m1", "m2"]
    second = api.get(f"{SESSIONS}{session.pk}/messages/?page=2").json()
    assert [m["content"] for m in second["results"]] == [f"m{i}" for i in range(20, 25)]
    assert set(first["results"][0]) >= {
        "id",
        "role",
        "content",
        "citations",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "model",
        "ttft_ms",
        "total_ms",
        "created_at",
    }


def test_post_message_answers_as_json_extractive(api: Any, user: Any, handbook: Any) -> None:
    session = ChatSession.objects.create(tenant=user.tenant, user=user)
    response = api.post(f"{SESSIONS}{session.pk}/messages/", {"content": "How many vacation days?"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["role"] == "assistant" and body["status"] == "completed" and body["model"] == "extractive"
    assert "twenty-five days" in body["content"]
    assert body["citations"][0]["document_id"] == str(handbook.pk) and body["citations"][0]["page_start"] == 2
    question = Message.objects.get(pk=body["question_id"])
    assert question.role == "user" and question.content == "How many vacation days?"
    session.refresh_from_db()
    assert session.title == "How many vacation days?"
    history = api.get(f"{SESSIONS}{session.pk}/messages/").json()["results"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    # a chat answer is a request in the ledger (the extractive provider spends no tokens)
    record = UsageRecord.objects.get(kind="chat", user=user)
    assert record.model == "extractive" and record.total_tokens == 0


def test_post_message_with_openai(api: Any, user: Any, handbook: Any, openai_chat: Any) -> None:
    openai_chat.reply = "Twenty-five days [1]."
    session = ChatSession.objects.create(tenant=user.tenant, user=user, model="gpt-4o")
    response = api.post(f"{SESSIONS}{session.pk}/messages/", {"content": "Vacation days?"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["content"] == "Twenty-five days [1]." and body["model"] == "gpt-4o"
    assert body["completion_tokens"] == openai_chat.usage_sent[-1]["completion_tokens"] == 8
    assert body["ttft_ms"] is not None and body["total_ms"] >= body["ttft_ms"]
    assert openai_chat.requests_to("chat")[0].body["model"] == "gpt-4o"
    # document_ids narrow this question only: the prompt holds the parking chunk and not the handbook
    other = make_ready_document(
        tenant=user.tenant, owner=user, pages=["Parking is behind the building."], title="Parking"
    )
    response = api.post(
        f"{SESSIONS}{session.pk}/messages/",
        {"content": "Where do I park?", "document_ids": [str(other.pk)]},
        format="json",
    )
    assert response.status_code == 201
    system = openai_chat.requests_to("chat")[-1].body["messages"][0]["content"]
    assert "[1] Parking (page 1)" in system and "twenty-five" not in system
    session.refresh_from_db()
    assert session.document_ids == []


def test_post_message_errors(api: Any, user: Any, tenant: Any, handbook: Any, openai_chat: Any, settings: Any) -> None:
    session = ChatSession.objects.create(tenant=user.tenant, user=user)
    url = f"{SESSIONS}{session.pk}/messages/"
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    assert_envelope(api.post(url, {"content": ""}, format="json"), 400, "validation_error")
    assert_envelope(api.post(url, {"content": "x" * 51}, format="json"), 400, "validation_error")
    assert_envelope(api.post(url, {"content": "hi", "model": "gpt-9"}, format="json"), 400, "model_not_allowed")
    assert_envelope(api.post(url, {"content": "hi", "document_ids": "x"}, format="json"), 400, "validation_error")
    assert Message.objects.count() == 0

    openai_chat.set_fault("rate_limit", endpoint="chat", retry_after="9")
    response = api.post(url, {"content": "vacation"}, format="json")
    error = assert_envelope(response, 503, "upstream_rate_limited")
    assert response["Retry-After"] == "9" and error["details"]["retry_after"] == 9
    failed = Message.objects.get(pk=error["details"]["message_id"])
    assert failed.status == "failed" and failed.error["type"] == "upstream_rate_limited"

    openai_chat.reset()
    openai_chat.set_fault("stream_cut", endpoint="chat", after=1)
    error = assert_envelope(api.post(url, {"content": "vacation"}, format="json"), 502, "upstream_stream_interrupted")
    assert Message.objects.get(pk=error["details"]["message_id"]).content


def test_post_message_over_quota_is_429_with_retry_after(
    api: Any, user: Any, tenant: Any, handbook: Any, openai_chat: Any
) -> None:
    tenant.settings = {**tenant.settings, "daily_token_quota": 3000}
    tenant.save()
    UsageRecord.objects.create(tenant=tenant, user=None, kind="embedding", model="m", embedding_tokens=2500)
    session = ChatSession.objects.create(tenant=user.tenant, user=user)
    # the daily quota resets at the next UTC midnight: Retry-After is the seconds until then (rounded up)
    midnight = (timezone.now() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    before = int((midnight - timezone.now()).total_seconds()) + 1
    response = api.post(f"{SESSIONS}{session.pk}/messages/", {"content": "vacation"}, format="json")
    after = int((midnight - timezone.now()).total_seconds()) + 1
    error = assert_envelope(response, 429, "quota_exceeded")
    assert error["details"]["scope"] == "tenant" and error["details"]["used"] == 2500
    # The refusal says what was needed and what is left, in words as in details.
    needed, left = error["details"]["needed"], error["details"]["remaining"]
    assert needed > left == 500
    assert f"needs about {needed} tokens" in error["message"] and "500 of 3000 left" in error["message"], error
    assert after <= int(response["Retry-After"]) <= before
    assert error["details"]["retry_after"] == int(response["Retry-After"])
    assert openai_chat.requests_to("chat") == [] and Message.objects.count() == 0


def test_viewers_can_chat(client_for: Any, viewer_user: Any, handbook: Any) -> None:
    client = client_for(viewer_user)
    session = client.post(SESSIONS, {}, format="json")
    assert session.status_code == 201
    response = client.post(f"{SESSIONS}{session.json()['id']}/messages/", {"content": "vacation days"}, format="json")
    assert response.status_code == 201


def test_deleting_a_session_deletes_its_messages(api: Any, user: Any) -> None:
    session = ChatSession.objects.create(tenant=user.tenant, user=user)
    Message.objects.create(tenant=user.tenant, session=session, role="user", content="q")
    colleague = UserFactory(tenant=user.tenant, email="c@acme.test")
    theirs = ChatSession.objects.create(tenant=user.tenant, user=colleague)
    assert api.delete(f"{SESSIONS}{session.pk}/").status_code == 204
    assert Message.objects.count() == 0
    assert_envelope(api.delete(f"{SESSIONS}{theirs.pk}/"), 404, "not_found")


def test_the_tenants_system_prompt_and_answer_language_reach_the_model(
    admin_api: Any, api: Any, user: Any, handbook: Any, openai_chat: Any
) -> None:
    """README: an admin's system_prompt and answer_language (PATCH /api/v1/tenant/) are in the request the
    model receives (the fake OpenAI server records it), for a question asked in English."""
    patched = admin_api.patch(
        "/api/v1/tenant/",
        {"settings": {"system_prompt": "You are Acme's cheerful HR assistant.", "answer_language": "de"}},
        format="json",
    )
    assert patched.status_code == 200, patched.content
    session = api.post(SESSIONS, {}, format="json").json()
    response = api.post(f"{SESSIONS}{session['id']}/messages/", {"content": "How many vacation days?"}, format="json")
    assert response.status_code == 201, response.content
    [request] = openai_chat.requests_to("chat")
    system = request.body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are Acme's cheerful HR assistant.")
    assert "German" in system["content"]
    assert request.body["messages"][-1] == {"role": "user", "content": "How many vacation days?"}
