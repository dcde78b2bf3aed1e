"""The load test's people (locust): signing in, listing, uploading, searching and chatting.

Run by :mod:`benchmarks.loadtest.driver` (``make loadtest``) against ``make run`` on loopback, with
``LOADTEST_CREDENTIALS`` naming the JSON written by :mod:`benchmarks.loadtest.seed`.

* :class:`Person` (one per seeded member, holding the tokens the seed issued): lists documents,
  searches (hybrid), asks a question over Server-Sent Events and uploads a small PDF of its own.
  Each starts a task every ``LOADTEST_PACE`` seconds (1.5 by default), so a person stays under the
  general limit of 60 requests a minute: any 429 a person gets is an error.
* :class:`SignIn` (``LOADTEST_SIGNERS`` of them, 2 by default): signs in with a password about
  twice a second, rotating over its accounts, far more than the sign-in limit allows from one
  address (``RATELIMIT_AUTH_PER_MINUTE``, 10 a minute by default): those 429s are intended. Each must carry ``Retry-After`` and the ``rate_limited`` envelope; it is
  then recorded under its own name, ``... (429 intended)``, and not as a failure.

Request names are the endpoints with ids written as ``{id}``. The answer's stream adds two entries
of its own: ``SSE chat: first token`` and ``SSE chat: whole answer`` (from the request's start).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, between, constant_pacing, task

from benchmarks.loadtest.content import QUESTIONS, TOPICS, make_pdf

CREDENTIALS = json.loads(Path(os.environ["LOADTEST_CREDENTIALS"]).read_text())
TENANT = CREDENTIALS["tenant"]
PACE = float(os.environ.get("LOADTEST_PACE", "1.5"))
_people = itertools.cycle(CREDENTIALS["people"])
_sign_in_accounts = itertools.cycle(CREDENTIALS["sign_in"])


def sse_events(lines: Any) -> Any:
    """``(event type, data)`` of each Server-Sent Event in an iterator of text lines."""
    kind, data = None, []
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if not line:
            if kind is not None or data:
                yield kind or "message", json.loads("\n".join(data)) if data else None
            kind, data = None, []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


class Person(HttpUser):
    """A member of the tenant at work: lists, searches, asks and uploads."""

    wait_time = constant_pacing(PACE)

    def on_start(self) -> None:
        me = next(_people)
        self.client.headers.update({"X-Tenant-ID": TENANT, "Authorization": f"Bearer {me['access']}"})
        with self.client.post(
            "/api/v1/chat/sessions/", json={"title": "load"}, name="POST /api/v1/chat/sessions/", catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {response.text[:300]}")
                self.session_id = None
                return
            self.session_id = response.json()["id"]

    @task(4)
    def list_documents(self) -> None:
        with self.client.get(
            "/api/v1/documents/?page_size=20", name="GET /api/v1/documents/", catch_response=True
        ) as response:
            if response.status_code != 200 or "results" not in response.json():
                response.failure(f"{response.status_code}: {response.text[:300]}")

    @task(3)
    def search(self) -> None:
        query = random.choice(QUESTIONS)
        with self.client.post(
            "/api/v1/search/", json={"query": query, "top_k": 5, "mode": "hybrid"}, name="POST /api/v1/search/",
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200 or "results" not in response.json():
                response.failure(f"{response.status_code}: {response.text[:300]}")

    @task(2)
    def chat(self) -> None:
        """Ask over SSE; the stream must end with ``chat.end`` and no ``error`` event."""
        if self.session_id is None:
            return
        started = time.perf_counter()
        first_token = None
        url = f"/api/v1/chat/sessions/{self.session_id}/messages/"
        with self.client.post(
            url, json={"content": random.choice(QUESTIONS)}, headers={"Accept": "text/event-stream"}, stream=True,
            name="POST /api/v1/chat/sessions/{id}/messages/ (SSE headers)", catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:300]}")
                return
            ended, problem = False, None
            for kind, data in sse_events(response.iter_lines()):
                if kind == "chat.token" and first_token is None:
                    first_token = time.perf_counter() - started
                elif kind == "error":
                    problem = f"error event: {data}"
                    break
                elif kind == "chat.end":
                    ended = True
                    break
            if problem or not ended:
                response.failure(problem or "the stream closed before chat.end")
                return
        whole = time.perf_counter() - started
        fire = self.environment.events.request.fire
        if first_token is not None:
            fire(request_type="SSE", name="SSE chat: first token", response_time=first_token * 1000,
                 response_length=0, exception=None, context={})  # fmt: skip
        fire(request_type="SSE", name="SSE chat: whole answer", response_time=whole * 1000,
             response_length=0, exception=None, context={})  # fmt: skip

    @task(1)
    def upload(self) -> None:
        topic, sentence = random.choice(TOPICS)
        pdf = make_pdf(topic, sentence)
        with self.client.post(
            "/api/v1/documents/", files={"file": (f"{topic}.pdf", pdf, "application/pdf")},
            data={"title": f"Notes on the {topic}"}, name="POST /api/v1/documents/", catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code != 202:
                response.failure(f"{response.status_code}: {response.text[:300]}")


class SignIn(HttpUser):
    """Signs in with a password faster than the sign-in limit allows from one address."""

    fixed_count = int(os.environ.get("LOADTEST_SIGNERS", "2"))
    wait_time = between(0.3, 0.7)

    @task
    def sign_in(self) -> None:
        account = next(_sign_in_accounts)
        with self.client.post(
            "/api/v1/auth/login", json={"email": account["email"], "password": account["password"]},
            headers={"X-Tenant-ID": TENANT}, name="POST /api/v1/auth/login", catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code == 200 and response.json().get("access"):
                return
            if response.status_code == 429:
                body = (
                    response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
                )
                kind = (body.get("error") or {}).get("type")
                if response.headers.get("Retry-After", "").isdigit() and kind == "rate_limited":
                    response.request_meta["name"] = "POST /api/v1/auth/login (429 intended)"
                    response.success()
                    return
                response.failure(f"429 without Retry-After or the rate_limited envelope: {response.text[:300]}")
                return
            response.failure(f"{response.status_code}: {response.text[:300]}")
