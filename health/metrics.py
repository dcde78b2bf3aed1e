"""DocuMind's own Prometheus series (django-prometheus adds requests, database and cache).

Every process records into prometheus-client's registry. With ``PROMETHEUS_MULTIPROC_DIR`` set (the
same empty folder for the web process and the Celery worker, cleared before they start) each process
writes its samples to files there and ``GET /metrics`` adds them up: that is how the worker's
ingestion figures, and every prefork child's, reach the scrape. Without it a process only serves its
own (the worker's then stay in the worker).

Queue depth and task ages are not recorded as things happen: :class:`TaskLedgerCollector` reads them
from the task ledger at scrape time (one grouped query), so they are right whichever process moved a
row.

The helpers below never raise: a metric must not break the work it measures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

INGEST_STAGE_SECONDS = Histogram(
    "documind_ingest_stage_seconds", "Seconds an ingestion spent in each stage", ["stage"], buckets=_SECONDS
)
INGEST_PAGES = Histogram(
    "documind_ingest_pages",
    "Pages of each ingested document (its _sum: pages ingested)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
INGEST_DOCUMENTS = Counter("documind_ingest_documents", "Documents ingested (made ready)")

CHAT_FIRST_TOKEN_SECONDS = Histogram(
    "documind_chat_first_token_seconds",
    "Seconds from a question to its answer's first token",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
CHAT_TOKENS_PER_SECOND = Histogram(
    "documind_chat_tokens_per_second",
    "Completion tokens per second of an answer, after its first token",
    buckets=(1, 5, 10, 20, 50, 100, 200, 500, 1000),
)
CHAT_ANSWERS = Counter("documind_chat_answers", "Chat answers finished, by status", ["status"])
ACTIVE_SOCKETS = Gauge("documind_active_sockets", "Authenticated chat WebSockets open now", multiprocess_mode="livesum")

SEARCH_SECONDS = Histogram(
    "documind_search_seconds",
    "Seconds of a chunk search (embedding the query included), by mode and plan",
    ["mode", "plan"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

PROVIDER_ERRORS = Counter(
    "documind_provider_errors", "Failed calls to a model provider (after retries)", ["provider", "error"]
)
PROVIDER_RETRIES = Counter("documind_provider_retries", "Retried calls to a model provider", ["provider"])

QUOTA_REFUSALS = Counter("documind_quota_refusals", "Requests refused by a daily token quota", ["scope"])


def _safely(what: str) -> Any:
    """Decorator: log (never raise) when recording a metric fails."""

    def wrap(function: Any) -> Any:
        def recorder(*args: Any, **kwargs: Any) -> None:
            try:
                function(*args, **kwargs)
            except Exception:
                logger.exception("metric_record_failed", extra={"metric": what})

        recorder.__doc__ = function.__doc__
        return recorder

    return wrap


@_safely("ingest")
def record_ingest(*, timings: Mapping[str, float], pages: int) -> None:
    """A document became ready: its per-stage seconds (the task row's ``timings``) and pages."""
    for stage, seconds in timings.items():
        INGEST_STAGE_SECONDS.labels(stage=stage).observe(float(seconds))
    INGEST_PAGES.observe(pages)
    INGEST_DOCUMENTS.inc()


@_safely("chat_answer")
def record_chat_answer(*, status: str, ttft_ms: int | None, total_ms: int, completion_tokens: int) -> None:
    """A chat answer finished: time to its first token and the streaming rate after it."""
    CHAT_ANSWERS.labels(status=status).inc()
    if ttft_ms is None:
        return
    CHAT_FIRST_TOKEN_SECONDS.observe(ttft_ms / 1000)
    streaming_seconds = (total_ms - ttft_ms) / 1000
    if completion_tokens > 1 and streaming_seconds > 0:
        CHAT_TOKENS_PER_SECOND.observe(completion_tokens / streaming_seconds)


@_safely("search")
def record_search(*, mode: str, plan: str, seconds: float) -> None:
    """One search: ``plan`` is ``exact`` or ``hnsw`` (its semantic part), ``keyword``, or ``empty``."""
    SEARCH_SECONDS.labels(mode=mode, plan=plan).observe(seconds)


@_safely("provider_error")
def record_provider_error(*, provider: str, error: str) -> None:
    """A provider call failed for good (``error``: the exception's class name or a status)."""
    PROVIDER_ERRORS.labels(provider=provider, error=error).inc()


@_safely("provider_retry")
def record_provider_retry(*, provider: str) -> None:
    """A provider call is being retried."""
    PROVIDER_RETRIES.labels(provider=provider).inc()


@_safely("quota_refusal")
def record_quota_refusal(*, scope: str) -> None:
    """A request was refused by the ``tenant`` or ``user`` daily token quota."""
    QUOTA_REFUSALS.labels(scope=scope).inc()


@_safely("sockets")
def record_socket(*, delta: int) -> None:
    """An authenticated chat socket opened (+1) or closed (-1)."""
    ACTIVE_SOCKETS.inc(delta)


class TaskLedgerCollector(Collector):
    """Background tasks per state and the age of the oldest in each, read from the ledger at scrape time.

    ``documind_tasks{state}``: rows of background work (to-dos excluded) in each state;
    ``documind_task_oldest_age_seconds{state}``: for ``pending`` since it was created (queue wait),
    for ``processing`` since it started (run time so far). All tenants: the endpoint is the operator's.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count, Min
        from django.utils import timezone

        from tasks.models import Task

        counts = GaugeMetricFamily(
            "documind_tasks", "Background tasks in each state (the task ledger)", labels=["state"]
        )
        ages = GaugeMetricFamily(
            "documind_task_oldest_age_seconds",
            "Age of the oldest pending (since created) or processing (since started) task",
            labels=["state"],
        )
        rows = (
            Task.objects.exclude(kind=Task.Kind.TODO)
            .order_by()
            .values("status")
            .annotate(n=Count("pk"), created=Min("created_at"), started=Min("started_at"))
        )
        found = {row["status"]: row for row in rows}
        now = timezone.now()
        for state in Task.Status.values:
            row = found.get(state)
            counts.add_metric([state], row["n"] if row else 0)
            if state in (Task.Status.PENDING, Task.Status.PROCESSING):
                since = None
                if row is not None:
                    since = row["created"] if state == Task.Status.PENDING else (row["started"] or row["created"])
                ages.add_metric([state], (now - since).total_seconds() if since else 0.0)
        yield counts
        yield ages
