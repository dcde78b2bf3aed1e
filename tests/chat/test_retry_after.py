"""The chat client reads Retry-After with the one parser the embeddings client uses."""

from __future__ import annotations

import httpx
import openai

from chat.llm import translate_error


def rate_limited(headers: dict[str, str]) -> openai.RateLimitError:
    response = httpx.Response(429, headers=headers, request=httpx.Request("POST", "http://upstream.test/v1/chat"))
    return openai.RateLimitError("slow down", response=response, body=None)


def test_retry_after_in_seconds_milliseconds_or_absent() -> None:
    assert translate_error(rate_limited({"retry-after": "3"})).details["retry_after"] == 3
    assert translate_error(rate_limited({"retry-after-ms": "1500", "retry-after": "9"})).details["retry_after"] == 2
    assert translate_error(rate_limited({"retry-after": "0.2"})).details["retry_after"] == 1  # at least a second
    error = translate_error(rate_limited({"retry-after": "soon"}))
    assert "retry_after" not in error.details and error.code == "upstream_rate_limited"
