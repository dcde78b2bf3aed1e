"""``tenant_effective_settings``: the one reader of a tenant's settings, and everyone reads through it."""

from __future__ import annotations

from typing import Any

import pytest

from chat.services import resolve_model
from tenants.models import Tenant
from tenants.selectors import tenant_effective_settings, tenant_signup_allowed
from tenants.usage import tenant_quota_limit, user_quota_limit


def tenant_with(**stored: Any) -> Tenant:
    return Tenant(slug="t", name="T", settings=stored)


def test_defaults_fill_every_missing_key(settings: Any) -> None:
    settings.CHAT_MODEL, settings.CHAT_ALLOWED_MODELS = "gpt-4o-mini", ["gpt-4o-mini", "gpt-4o"]
    settings.DEFAULT_TENANT_DAILY_TOKEN_QUOTA, settings.DEFAULT_USER_DAILY_TOKEN_QUOTA = 1000, 100
    assert tenant_effective_settings(tenant=tenant_with()) == {
        "allowed_models": ["gpt-4o-mini", "gpt-4o"],
        "default_model": "gpt-4o-mini",
        "system_prompt": "",
        "answer_language": "auto",
        "signup_allowed": False,
        "daily_token_quota": 1000,
        "user_daily_token_quota": 100,
        "embedder": "hashing",  # EMBEDDING_PROVIDER (tests: hashing)
    }


def test_the_embedder_is_read_through_it(settings: Any) -> None:
    from documents.embeddings import tenant_embedder_name

    settings.EMBEDDING_PROVIDER, settings.OPENAI_API_KEY = "auto", ""
    assert tenant_effective_settings(tenant=tenant_with())["embedder"] == "local"  # offline default
    assert tenant_embedder_name(tenant_with(embedder="hashing")) == "hashing"  # pinned
    assert tenant_embedder_name(tenant_with(embedder="bogus")) == "local"  # unusable: the default


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"allowed_models": ["gpt-4o"], "default_model": "gpt-4o"}, "gpt-4o"),  # the stored default
        ({"allowed_models": ["gpt-4o-mini", "gpt-4o"]}, "gpt-4o-mini"),  # none stored: CHAT_MODEL
        ({"allowed_models": ["gpt-4o"]}, "gpt-4o"),  # CHAT_MODEL not allowed: the first allowed
        # the stored default fell off the list (the deployment's list changed since): an allowed one
        ({"allowed_models": ["gpt-4o"], "default_model": "retired-model"}, "gpt-4o"),
        ({"default_model": "retired-model"}, "gpt-4o-mini"),
    ],
)
def test_the_default_model_is_always_an_allowed_one_and_chat_uses_it(
    settings: Any, stored: dict[str, Any], expected: str
) -> None:
    settings.CHAT_MODEL, settings.CHAT_ALLOWED_MODELS = "gpt-4o-mini", ["gpt-4o-mini", "gpt-4o"]
    tenant = tenant_with(**stored)
    effective = tenant_effective_settings(tenant=tenant)
    assert effective["default_model"] == expected
    assert effective["default_model"] in effective["allowed_models"]
    assert resolve_model(tenant=tenant, requested=None) == expected  # chat reads the same rule


def test_quotas_and_sign_up_are_read_through_it(settings: Any) -> None:
    settings.DEFAULT_TENANT_DAILY_TOKEN_QUOTA, settings.DEFAULT_USER_DAILY_TOKEN_QUOTA = 1000, 100
    tenant = tenant_with(daily_token_quota=500, user_daily_token_quota="not a number", signup_allowed=True)
    assert (tenant_quota_limit(tenant), user_quota_limit(tenant)) == (500, 100)  # unusable value: the default
    assert tenant_signup_allowed(tenant=tenant) is True
    assert tenant_quota_limit(tenant_with(daily_token_quota=-3)) == 0


def test_the_tenant_model_has_no_second_reader_of_its_settings() -> None:
    """Issue 10: one reader. ``Tenant.setting(key)`` read the stored value without the deployment's
    defaults or the checks above (a quota stored as text came back as text): it is gone."""
    assert not hasattr(Tenant, "setting")
