"""``GET /metrics``: refused without the token (or off loopback), and every series after real work.

The work is real: a PDF uploaded and ingested through Celery's API, searches through the API, chat
answers from the ``openai`` provider on the fake server (with a retry and a failure), a quota
refusal, a chat socket. Metrics are process-wide and add up over the session, so each check compares
the scrape with one taken before the work.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import Client

from chat.models import ChatSession
from documents.ingestion_progress import STAGES
from tenants.models import UsageRecord
from tests.chat.conftest import connected
from tests.crosstenant import assert_envelope
from tests.documents.conftest import ingest, known_pages, upload
from tests.documents.pdfs import make_pdf

SESSIONS = "/api/v1/chat/sessions/"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(client: Client | None = None, **headers: Any) -> dict[str, float]:
    """The samples of one scrape, ``{'name{labels}': value}`` (labels as the exposition writes them)."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there are none)."""
    total = 0.0
    for key, sample in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += sample
    return total


@pytest.mark.django_db
def test_refused_without_the_token_or_off_loopback(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    assert_envelope(Client(REMOTE_ADDR="203.0.113.7").get("/metrics"), 404, "not_found")
    # A forwarded-for header from an untrusted peer changes nothing (config.client_ip drops it).
    response = Client(REMOTE_ADDR="203.0.113.7").get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert_envelope(response, 404, "not_found")

    settings.METRICS_TOKEN = "s3cret-metrics-token"
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Basic s3cret-metrics-token"}):
        for address in ("127.0.0.1", "203.0.113.7"):  # with a token, loopback needs it too
            response = Client(REMOTE_ADDR=address).get("/metrics", **headers)
            assert_envelope(response, 401, "not_authenticated")
            assert response["WWW-Authenticate"] == "Bearer"
    authorised = Client(REMOTE_ADDR="203.0.113.7")
    samples = scrape(authorised, HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert "documind_active_sockets" in samples
    assert authorised.post("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token").status_code == 405


@pytest.mark.django_db
def test_every_series_after_real_work(
    api: Any, user: Any, tenant: Any, openai_chat: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.METRICS_TOKEN = ""
    before = scrape()

    # Ingestion: a three-page PDF through the API and the Celery task (in this process).
    response = upload(api, make_pdf(known_pages()))
    assert response.status_code == 202, response.content
    result = ingest(response.json()["id"])
    assert result["pages"] == 3

    # Searches through the API: hybrid (few chunks: the exact plan) and keyword.
    for mode in ("hybrid", "keyword"):
        found = api.post("/api/v1/search/", {"query": "the known sentence", "mode": mode}, format="json")
        assert found.status_code == 200, found.content

    # Chat through the REST endpoint on the openai provider: one retried answer, one failed one.
    settings.OPENAI_MAX_RETRIES = 1
    session = ChatSession.objects.create(tenant=tenant, user=user)
    openai_chat.set_fault("server_error", endpoint="chat", times=1)
    # tokens a few ms apart: a rate needs streaming time, which whole milliseconds round to 0 when the
    # fake model sends every token at once (the tokens/s series then stays empty, as it should)
    openai_chat.token_delay = 0.005
    answered = api.post(f"{SESSIONS}{session.pk}/messages/", {"content": "What is known?"}, format="json")
    assert answered.status_code == 201, answered.content
    assert answered.json()["completion_tokens"] > 1
    openai_chat.set_fault("server_error", endpoint="chat", times=2)
    failed = api.post(f"{SESSIONS}{session.pk}/messages/", {"content": "And else?"}, format="json")
    assert failed.status_code >= 500, failed.content

    # A quota refusal.
    tenant.settings = {**tenant.settings, "daily_token_quota": 100}
    tenant.save()
    UsageRecord.objects.create(tenant=tenant, user=None, kind="embedding", model="m", embedding_tokens=100)
    refused = api.post(f"{SESSIONS}{session.pk}/messages/", {"content": "Again?"}, format="json")
    assert_envelope(refused, 429, "quota_exceeded")

    # The cache backend counts reads, hits and misses (the rate limits only add and increment).
    cache.set("metrics-probe", 1)
    assert cache.get("metrics-probe") == 1 and cache.get("metrics-missing", "default") == "default"

    after = scrape()

    def grew(name: str, by: float = 1, **labels: str) -> None:
        assert value(after, name, **labels) - value(before, name, **labels) >= by, (name, labels)

    # django-prometheus: requests, views, database, cache.
    grew("django_http_requests_total_by_method_total", method="POST")
    grew("django_http_responses_total_by_status_total", status="429")
    grew("django_http_requests_latency_seconds_by_view_method_count", method="POST")
    grew("django_db_execute_total", 10, vendor="postgresql")
    grew("django_db_query_duration_seconds_count", vendor="postgresql")
    grew("django_cache_get_total", 2, backend="database")
    grew("django_cache_get_hits_total", backend="database")
    grew("django_cache_get_misses_total", backend="database")
    # Ingestion: each stage's seconds (the task row's timings) and the pages.
    for stage in STAGES:  # extract, ocr, chunk, embed, store, index
        grew("documind_ingest_stage_seconds_count", stage=stage)
    grew("documind_ingest_pages_count")
    grew("documind_ingest_pages_sum", 3)
    grew("documind_ingest_documents_total")
    # The task ledger, read at scrape time.
    assert value(after, "documind_tasks", state="completed") >= 1
    for state in ("pending", "processing", "failed", "cancelled"):
        assert f'documind_tasks{{state="{state}"}}' in after
    for state in ("pending", "processing"):
        assert value(after, "documind_task_oldest_age_seconds", state=state) >= 0
        assert f'documind_task_oldest_age_seconds{{state="{state}"}}' in after
    # Search by plan.
    grew("documind_search_seconds_count", mode="hybrid", plan="exact")
    grew("documind_search_seconds_count", mode="keyword", plan="keyword")
    # Chat: time to first token, tokens per second, answers by status.
    grew("documind_chat_first_token_seconds_count")
    grew("documind_chat_tokens_per_second_count")
    grew("documind_chat_answers_total", status="completed")
    grew("documind_chat_answers_total", status="failed")
    # Provider retries and errors; quota refusals.
    grew("documind_provider_retries_total", 2, provider="chat")  # one per answer above
    grew("documind_provider_errors_total", provider="chat", error="InternalServerError")
    grew("documind_quota_refusals_total", scope="tenant")

    # Every series the Grafana dashboard queries is one this scrape serves.
    dashboard = json.loads((Path(settings.BASE_DIR) / "deploy" / "grafana" / "documind.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b((?:django|documind)_[a-z_]+)", target["expr"])
    }
    served = {key.partition("{")[0] for key in after}
    assert len(queried) >= 15 and queried <= served, sorted(queried - served)


@pytest.mark.django_db(transaction=True)
async def test_active_sockets_count_authenticated_chat_sockets(sockets: Any, user: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    before = value(await sync_to_async(scrape)(), "documind_active_sockets")
    first = await connected(sockets, user)
    second = await connected(sockets, user)
    refused = sockets(token="not-a-token")  # refused sockets are not counted
    await refused.connect()
    assert await refused.closed_with() == 4401
    assert value(await sync_to_async(scrape)(), "documind_active_sockets") == before + 2
    await first.close()
    await second.close()
    assert value(await sync_to_async(scrape)(), "documind_active_sockets") == before
