"""End-to-end tests: the product runs in other processes; this one only speaks HTTP and WebSocket.

Their tests carry ``django_db`` only so that the session creates its test database (the servers
use it). The suite's autouse cache clearing is turned off here: run inside the test's transaction,
its DELETE would hold row locks that the servers' rate-limit counters then wait on.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Overrides the suite's: the servers' counters are theirs; nothing here touches the database."""
