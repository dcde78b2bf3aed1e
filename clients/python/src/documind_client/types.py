"""The shapes the API answers with (the fields a program relies on; the server may add more)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class Tokens(TypedDict):
    access: str
    refresh: str


class APIKey(TypedDict, total=False):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    status: Literal["active", "revoked", "expired"]
    expires_at: str | None
    last_used_at: str | None
    key: str  # only in the answer to a creation


class Project(TypedDict, total=False):
    id: str
    name: str
    description: str


class Document(TypedDict, total=False):
    id: str
    title: str
    status: Literal["pending", "processing", "ready", "failed"]
    progress: int
    project: str | None
    page_count: int | None
    chunk_count: int
    error: dict[str, Any] | None
    task: dict[str, Any] | None


class SearchHit(TypedDict, total=False):
    chunk_id: str
    document_id: str
    document_title: str
    page_start: int
    page_end: int
    text: str
    source: str  # "text" (the PDF's text layer) or "ocr" (recognised from a scan)
    ocr_confidence: float | None  # the OCR engine's confidence for "ocr" text, else None
    score: float
    retrievers: list[str]


class Citation(TypedDict, total=False):
    n: int
    chunk_id: str
    document_id: str
    document_title: str
    page_start: int
    page_end: int
    snippet: str
    source: str  # "text" or "ocr"
    ocr_confidence: float | None


class ChatSession(TypedDict, total=False):
    id: str
    title: str
    project: str | None


class Answer(TypedDict, total=False):
    id: str
    session: str
    content: str
    citations: list[Citation]
    status: str
    model: str


class Task(TypedDict, total=False):
    id: str
    title: str
    status: str
    kind: str


class Page(TypedDict):
    count: int
    next: str | None
    previous: str | None
    results: list[dict[str, Any]]
