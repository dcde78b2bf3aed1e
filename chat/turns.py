"""Turn preparation: everything that happens to a question before its answer streams.

:func:`prepare_turn` (synchronous; callers run it in a thread: :func:`chat.db.run` on the socket,
the request's own thread over REST) checks the question, the session, the filter and the model;
retrieves with :func:`documents.search.search_chunks` (hybrid, scoped to the session's project and
documents); builds the prompt within ``CHAT_CONTEXT_TOKENS``; reserves the quota (tiktoken estimate
of the prompt + ``CHAT_MAX_ANSWER_TOKENS``); and saves the question and an empty ``streaming``
answer. Quota, validation and not-found errors are raised here, before anything is saved. The
:class:`Turn` it returns is what :mod:`chat.generation` streams.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from chat import events
from chat.llm import ChatProvider, ChatRequest, get_chat_provider
from chat.models import ChatSession, Message
from chat.prompting import Source, answer_language, build_prompt
from chat.selectors import chat_session_get, session_history
from chat.services import UNSET, Filters, chat_turn_create, resolve_filters, resolve_model, validate_question
from tenants.models import Tenant, UsageRecord
from tenants.selectors import tenant_effective_settings
from tenants.usage import usage_record, usage_reserve


@dataclass
class Turn:
    """A question that passed every check, saved, with everything needed to generate its answer."""

    tenant: Tenant
    user: Any
    session: ChatSession
    created_session: bool
    question: Message
    answer: Message
    provider: ChatProvider
    request: ChatRequest | None  # None: nothing relevant was found, the model is not called
    sources: list[Source]
    reservation: UsageRecord | None
    language: str | None = None
    started: float = field(default_factory=time.monotonic)

    def start_event(self) -> events.ChatStartEvent:
        """The ``chat.start`` of this turn's answer."""
        return events.chat_start(
            answer=self.answer,
            session=self.session,
            question_id=self.question.pk,
            created_session=self.created_session,
            resumed=False,
        )


def _hits_to_sources(hits: list[Any]) -> list[Source]:
    return [
        Source(
            n=i + 1,
            chunk_id=str(h.chunk_id),
            document_id=str(h.document_id),
            document_title=h.document_title,
            page_start=h.page_start,
            page_end=h.page_end,
            text=h.text,
            score=float(h.score or 0.0),
            page_breaks=h.page_breaks,
            source=getattr(h, "source", "text"),
            ocr_confidence=getattr(h, "ocr_confidence", None),
        )
        for i, h in enumerate(hits)
    ]


def retrieve(*, tenant: Tenant, user: Any, question: str, filters: Filters, top_k: int | None = None) -> list[Source]:
    """The best chunks for ``question`` within the filter (hybrid search), numbered from 1."""
    from documents.search import search_chunks

    hits = search_chunks(
        tenant=tenant,
        query=question,
        top_k=top_k or settings.CHAT_TOP_K,
        mode="hybrid",
        project_id=filters.project_id,
        document_ids=filters.document_ids or None,
        user=user,
    )
    return _hits_to_sources(list(hits))


def _chat_request(
    *, tenant: Tenant, question: str, sources: list[Source], session: ChatSession | None, model: str
) -> ChatRequest:
    """The model call for ``question`` over ``sources`` (the prompt keeps the sources that fit)."""
    effective = tenant_effective_settings(tenant=tenant)
    prompt = build_prompt(
        question=question,
        sources=sources,
        history=session_history(session=session) if session else [],
        model=model,
        budget_tokens=settings.CHAT_CONTEXT_TOKENS,
        system_prompt=effective["system_prompt"],
        language_setting=effective["answer_language"],
    )
    return ChatRequest(
        model=model,
        messages=prompt.messages,
        max_tokens=settings.CHAT_MAX_ANSWER_TOKENS,
        question=question,
        sources=prompt.sources,
        language=prompt.language,
        prompt_tokens=prompt.prompt_tokens,
    )


@transaction.atomic
def _save_and_reserve(
    *,
    tenant: Tenant,
    user: Any,
    session: ChatSession | None,
    question: str,
    model: str,
    filters: Filters,
    provider: ChatProvider,
    request: ChatRequest | None,
) -> tuple[UsageRecord, ChatSession, Message, Message]:
    """Save the question and the empty answer, and reserve the quota (or record a request without
    tokens), in one transaction: a refused reservation saves nothing. The reservation comes last
    because it takes the tenant's usage lock (:func:`tenants.usage.usage_reserve`), held to the commit."""
    calls_model = request is not None and provider.calls_model
    no_call_model = provider.name if request is not None else "none"
    session, asked, answer = chat_turn_create(
        tenant=tenant,
        user=user,
        session=session,
        question=question,
        model=model if calls_model else no_call_model,
        filters=filters,
    )
    if calls_model:
        assert request is not None
        reservation = usage_reserve(
            tenant=tenant,
            user=user,
            model=model,
            prompt_tokens=request.prompt_tokens,
            completion_tokens=request.max_tokens,
        )
    else:  # no model call (nothing relevant, or the extractive provider): a request with no tokens
        reservation = usage_record(tenant=tenant, user=user, kind=UsageRecord.Kind.CHAT, model=no_call_model)
    return reservation, session, asked, answer


def _turn_scope(
    *, tenant: Tenant, user: Any, session_id: Any, project_id: Any, document_ids: Any, model: str | None
) -> tuple[ChatSession | None, Filters, str]:
    """The session asked in (None: a new one), the filter of this turn and its model, all checked."""
    session = chat_session_get(tenant=tenant, user=user, session_id=session_id) if session_id else None
    filters = resolve_filters(
        tenant=tenant,
        project_id=(session.project_id if session else None) if project_id is UNSET else project_id,
        document_ids=(session.document_ids if session else None) if document_ids is UNSET else document_ids,
    )
    return session, filters, resolve_model(tenant=tenant, requested=model or (session.model if session else None))


def prepare_turn(
    *,
    tenant: Tenant,
    user: Any,
    content: Any,
    session_id: Any = None,
    project_id: Any = UNSET,
    document_ids: Any = UNSET,
    model: str | None = None,
    provider: ChatProvider | None = None,
    received_at: float | None = None,
) -> Turn:
    """Check, retrieve, build the prompt, reserve the quota and save the question (see the module docstring).

    ``project_id``/``document_ids`` narrow this turn (and become a new session's filter); left unset,
    the session's own filter applies. ``user`` and ``tenant`` should be fresh (a socket reloads them
    in its check). Times (first token, total) count from ``received_at`` (``time.monotonic()``;
    default: now).
    """
    started = received_at or time.monotonic()
    question = validate_question(content)
    session, filters, model = _turn_scope(
        tenant=tenant, user=user, session_id=session_id, project_id=project_id, document_ids=document_ids, model=model
    )
    provider = provider or get_chat_provider()
    sources = retrieve(tenant=tenant, user=user, question=question, filters=filters)
    language, _ = answer_language(question, tenant_effective_settings(tenant=tenant)["answer_language"])
    request = None
    if sources:
        request = _chat_request(tenant=tenant, question=question, sources=sources, session=session, model=model)
        sources = request.sources
    reservation, saved_session, asked, answer = _save_and_reserve(
        tenant=tenant,
        user=user,
        session=session,
        question=question,
        model=model,
        filters=filters,
        provider=provider,
        request=request,
    )
    return Turn(
        tenant=tenant,
        user=user,
        session=saved_session,
        created_session=session is None,
        question=asked,
        answer=answer,
        provider=provider,
        request=request,
        sources=sources,
        reservation=reservation if request is not None and provider.calls_model else None,
        language=language,
        started=started,
    )
