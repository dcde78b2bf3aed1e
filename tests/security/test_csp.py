"""Attack: inject a script (XSS) or frame a page (clickjacking).

Every response carries a Content-Security-Policy allowing scripts from this origin only (never
inline), no other host, and no framing; the HTML pages (/docs, /redoc, the admin) work under it:
they contain no inline script.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = ["/docs", "/redoc", "/admin/login/", "/"]


def policy(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [part.strip().split() for part in header.split(";") if part.strip()]
    return {d[0]: d[1:] for d in directives}


@pytest.mark.parametrize("path", [*PAGES, "/api/v1/health", "/nope"])
def test_every_response_has_the_policy(path: str) -> None:
    directives = policy(Client().get(path))
    assert directives["script-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["default-src"] == ["'self'"] and directives["object-src"] == ["'none'"]
    for name, sources in directives.items():  # no remote host anywhere
        assert all(re.fullmatch(r"'[a-z-]+'|data:|blob:", source) for source in sources), (name, sources)


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/admin/login/"])
def test_html_pages_have_no_inline_script_and_their_scripts_load(path: str) -> None:
    client = Client()
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts, "the page should load its scripts"
    for attributes, body in scripts:
        assert body.strip() == "", f"inline script on {path}: {body[:200]}"
        source = re.search(r'src="([^"]+)"', attributes).group(1)  # type: ignore[union-attr]
        assert source.startswith("/"), source  # this origin
        loaded = client.get(source.replace("&amp;", "&"))
        assert loaded.status_code == 200, source
        assert "javascript" in loaded["Content-Type"], (source, loaded["Content-Type"])
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
