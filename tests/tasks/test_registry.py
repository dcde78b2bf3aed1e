"""The kind → Celery task registry used by retry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.registry import (
    RegistryConflict,
    background_task_for,
    register_background,
    registered_kinds,
    unregister_background,
)
from tests.tasks.worker_tasks import flaky, run_steps


@pytest.fixture
def kind() -> Iterator[str]:
    yield "test_registry_kind"
    unregister_background("test_registry_kind")


def test_register_and_look_up(kind: str) -> None:
    assert background_task_for(kind) is None
    register_background(kind, run_steps)
    register_background(kind, run_steps)  # again: harmless
    assert background_task_for(kind) is run_steps
    assert kind in registered_kinds()


def test_register_by_name(kind: str) -> None:
    register_background(kind, "tests.tasks.flaky")
    assert background_task_for(kind).name == flaky.name


def test_a_kind_runs_one_task_only(kind: str) -> None:
    register_background(kind, run_steps)
    with pytest.raises(RegistryConflict):
        register_background(kind, flaky)
    assert background_task_for(kind) is run_steps


@pytest.mark.parametrize("bad", ["", "todo"])
def test_todos_are_not_background_kinds(bad: str) -> None:
    with pytest.raises(ValueError):
        register_background(bad, run_steps)
