"""Which Celery task runs each kind of background task, so the API can run a task again.

Apps register their kinds once, in ``AppConfig.ready()`` or in their ``tasks`` module::

    register_background(Task.Kind.DOCUMENT_INGESTION, ingest_document)

A retry calls the registered Celery task with the row's ``payload`` as keyword arguments (plus
``task_row_id``). Registrations made in a ``tasks`` module are found too: a lookup that misses runs
Celery's autodiscovery of the installed apps' ``tasks`` modules once and looks again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from celery import Task as CeleryTask

if TYPE_CHECKING:
    from tasks.models import Task

logger = logging.getLogger(__name__)

_registry: dict[str, CeleryTask | str] = {}
# Called (after commit) with the row when a background task ends outside its worker: cancelled
# before a worker picked it up, or failed by the watchdog. The owning app puts its resource in step.
_on_abandoned: dict[str, Callable[[Task], None]] = {}
_lock = threading.Lock()
_discovered = False


class RegistryConflict(ValueError):
    """A kind is already registered to another Celery task."""


def _name(celery_task: CeleryTask | str) -> str:
    return celery_task if isinstance(celery_task, str) else celery_task.name


def register_background(
    kind: str, celery_task: CeleryTask | str, *, on_abandoned: Callable[[Task], None] | None = None
) -> None:
    """Map ``kind`` to ``celery_task`` (the task object or its registered name).

    ``on_abandoned(task)`` is called after commit when a row of this kind is cancelled or failed
    (stalled) by the API or the watchdog rather than by its worker.

    Registering the same task again is harmless; registering another task for a kind that has one
    raises :class:`RegistryConflict`.
    """
    if not kind or kind == "todo":
        raise ValueError("to-dos are not background tasks")
    with _lock:
        current = _registry.get(kind)
        if current is not None and _name(current) != _name(celery_task):
            raise RegistryConflict(f"kind {kind!r} already runs {_name(current)!r}, not {_name(celery_task)!r}")
        _registry[kind] = celery_task
        if on_abandoned is not None:
            _on_abandoned[kind] = on_abandoned


def run_abandoned_hook(task: Task) -> None:
    """Run the ``on_abandoned`` hook of ``task.kind`` (call it after commit); errors are logged."""
    hook = _on_abandoned.get(task.kind)
    if hook is None:
        _autodiscover()
        hook = _on_abandoned.get(task.kind)
    if hook is None:
        return
    try:
        hook(task)
    except Exception:
        logger.exception("task_abandoned_hook_failed", extra={"task_id": task.pk, "kind": task.kind})


def unregister_background(kind: str) -> None:
    """Forget ``kind`` (tests and reloads)."""
    with _lock:
        _registry.pop(kind, None)


def _autodiscover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    try:
        from config.celery import app

        app.autodiscover_tasks(force=True)
    except Exception:
        logger.exception("task_registry_autodiscover_failed")


def background_task_for(kind: str) -> CeleryTask | None:
    """The Celery task registered for ``kind``, or None."""
    registered = _registry.get(kind)
    if registered is None:
        _autodiscover()
        registered = _registry.get(kind)
    if registered is None:
        return None
    if isinstance(registered, str):
        from config.celery import app

        return app.tasks.get(registered)
    return registered


def registered_kinds() -> list[str]:
    """The kinds that can be run again, sorted."""
    _autodiscover()
    return sorted(_registry)
