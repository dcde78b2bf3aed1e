"""The fake OpenAI-compatible server, driven by the official ``openai`` client (sync and async)."""

from __future__ import annotations

import time

import openai
import pytest

from tests.fake_openai import FakeOpenAI, fake_vector


def client(fake: FakeOpenAI, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=fake.base_url, **{"max_retries": 0, "timeout": 10, **kwargs})


def aclient(fake: FakeOpenAI, **kwargs: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url, **{"max_retries": 0, "timeout": 10, **kwargs})


def test_base_url_and_models(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url.startswith("http://127.0.0.1:") and fake_openai.base_url.endswith("/v1")
    ids = [m.id for m in client(fake_openai).models.list()]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids


def test_embeddings_are_deterministic_and_honour_dimensions(fake_openai: FakeOpenAI) -> None:
    c = client(fake_openai)
    first = c.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], dimensions=64)
    again = c.embeddings.create(model="text-embedding-3-small", input="alpha", dimensions=64)
    assert [len(d.embedding) for d in first.data] == [64, 64]
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding)
    assert first.data[0].embedding != pytest.approx(first.data[1].embedding)
    assert sum(v * v for v in first.data[0].embedding) == pytest.approx(1.0)
    assert first.usage.prompt_tokens == 2 and first.usage.total_tokens == 2
    default = c.embeddings.create(model="text-embedding-3-small", input="x")
    assert len(default.data[0].embedding) == 1536
    body = fake_openai.requests_to("embeddings")[0].body
    assert body["dimensions"] == 64 and body["input"] == ["alpha", "beta"]


def test_embeddings_base64(fake_openai: FakeOpenAI) -> None:
    import base64
    import struct

    result = client(fake_openai).embeddings.create(model="m", input="alpha", dimensions=8, encoding_format="base64")
    raw = result.data[0].embedding
    values = list(struct.unpack("<8f", base64.b64decode(raw))) if isinstance(raw, str) else raw
    assert values == pytest.approx(fake_vector("alpha", 8), rel=1e-6)


def test_chat_without_stream(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = "Hello there [1]."
    result = client(fake_openai).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert result.choices[0].message.content == "Hello there [1]."
    assert result.usage.completion_tokens == 6 and result.usage.prompt_tokens == 1


async def test_chat_stream_with_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = lambda body: "Echo " + body["messages"][-1]["content"]
    stream = await aclient(fake_openai).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas, usage, finish = [], None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            deltas.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(deltas) == "Echo one two three"
    assert len([d for d in deltas if d]) == 4  # one chunk per word
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 4 and usage.prompt_tokens == 3
    assert fake_openai.requests_to("chat")[0].body["stream_options"] == {"include_usage": True}


async def test_stream_without_usage_option_sends_no_usage(fake_openai: FakeOpenAI) -> None:
    stream = await aclient(fake_openai).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "q"}], stream=True
    )
    usages = [chunk.usage async for chunk in stream]
    assert usages and all(u is None for u in usages)


def test_rate_limit_is_retried_after_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.set_fault("rate_limit", endpoint="chat", times=1, retry_after="0.2")
    started = time.monotonic()
    result = client(fake_openai, max_retries=2).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "q"}]
    )
    assert time.monotonic() - started >= 0.2
    assert result.choices[0].message.content
    assert len(fake_openai.requests_to("chat")) == 2


def test_rate_limit_and_server_error_surface_as_client_errors(fake_openai: FakeOpenAI) -> None:
    fake_openai.set_fault("rate_limit", endpoint="chat", retry_after="7")
    with pytest.raises(openai.RateLimitError) as info:
        client(fake_openai).chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    assert info.value.response.headers["retry-after"] == "7"
    fake_openai.reset()
    fake_openai.set_fault("server_error", endpoint="embeddings", times=1)
    with pytest.raises(openai.InternalServerError):
        client(fake_openai).embeddings.create(model="m", input="x")
    # the fault was used up; chat was never affected
    assert client(fake_openai).embeddings.create(model="m", input="x").data


async def test_stream_cut_breaks_the_transfer(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = "one two three four five six"
    fake_openai.set_fault("stream_cut", endpoint="chat", after=2)
    stream = await aclient(fake_openai).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True, stream_options={"include_usage": True}
    )
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "one two "


async def test_malformed_chunk(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = "one two three four"
    fake_openai.set_fault("malformed_chunk", endpoint="chat", after=1)
    stream = await aclient(fake_openai).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    received = []
    with pytest.raises(ValueError):  # json.JSONDecodeError from the SSE decoder
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "one "


async def test_slow_first_token_and_token_delay(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply = "a b c"
    fake_openai.token_delay = 0.05
    fake_openai.set_fault("slow_first_token", endpoint="chat", delay=0.3)
    started = time.monotonic()
    stream = await aclient(fake_openai).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    first = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.monotonic() - started
    total = time.monotonic() - started
    assert first is not None and first >= 0.3
    assert total >= 0.3 + 2 * 0.05


def test_requires_key_when_set_and_records_headers(fake_openai: FakeOpenAI) -> None:
    fake_openai.api_key = "sk-right"
    with pytest.raises(openai.AuthenticationError):
        client(fake_openai).embeddings.create(model="m", input="x")
    assert fake_openai.requests[-1].headers["authorization"] == "Bearer sk-test"
    ok = openai.OpenAI(api_key="sk-right", base_url=fake_openai.base_url, max_retries=0)
    assert ok.embeddings.create(model="m", input="x").data


def test_unknown_fault_mode_is_refused(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ValueError):
        fake_openai.set_fault("explode")
    with pytest.raises(ValueError):
        fake_openai.set_fault("server_error", endpoint="images")


def test_runs_in_its_own_process_controlled_over_http() -> None:
    import subprocess
    import sys

    import httpx

    from tests.subprocesses import BASE_DIR

    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", "0"], cwd=BASE_DIR, stdout=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("base_url http://127.0.0.1:")
        base_url = line.split()[1]
        root = base_url.removesuffix("/v1")
        assert httpx.post(
            f"{root}/_fake/config",
            json={
                "reply": "From afar [1].",
                "faults": [{"mode": "server_error", "endpoint": "embeddings", "times": 1}],
            },
        ).json()["ok"]
        c = openai.OpenAI(api_key="k", base_url=base_url, max_retries=0)
        assert (
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}]).choices[0].message.content
            == "From afar [1]."
        )
        with pytest.raises(openai.InternalServerError):
            c.embeddings.create(model="m", input="x")
        assert httpx.post(f"{root}/_fake/reset").json() == {"ok": True, "requests": 0}
        assert httpx.post(f"{root}/_fake/nope").status_code == 404
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
