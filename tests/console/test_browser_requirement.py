"""Without a browser the console's browser tests skip with the reason, except under CI, where they fail."""

from __future__ import annotations

import pytest

from tests.console import conftest


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_browser_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CHROMIUM_PATH", "/nonexistent/chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"chromium not available.*CHROMIUM_PATH"):
        conftest.require_browser()
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        conftest.require_browser()
