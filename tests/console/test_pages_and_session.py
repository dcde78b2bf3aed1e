"""The console's server side: `/` by Accept, pages and their 403s, the cookie session, signed file links, e-mails."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from accounts import tokens
from accounts.models import User
from documents.models import Document
from tests.accounts.conftest import PASSWORD
from tests.conftest import make_client
from tests.documents.conftest import upload
from tests.documents.pdfs import make_pdf
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
COOKIE = "documind_refresh"


@pytest.fixture(autouse=True)
def _no_limits(settings: Any) -> None:
    settings.RATELIMIT_ENABLED = False
    settings.EMBEDDING_PROVIDER = "hashing"


def browser() -> Client:
    return Client(enforce_csrf_checks=True, HTTP_ACCEPT=BROWSER_ACCEPT)


def csrf(client: Client) -> str:
    response = client.get("/console/")
    assert response.status_code in (200, 302)
    return client.cookies["csrftoken"].value


def sign_in(client: Client, user: User, *, password: str = PASSWORD) -> Any:
    token = csrf(client)
    return client.post(
        "/console/auth/login",
        {"email": user.email, "password": password},
        content_type="application/json",
        headers={"X-CSRFToken": token, "X-Tenant-ID": user.tenant.slug},
    )


def post(client: Client, path: str, **headers: str) -> Any:
    return client.post(path, content_type="application/json", headers=headers)


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("application/json, text/html;q=0.5", False),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("text/html;q=0, application/json", False),
    ],
)
def test_root_serves_browsers_the_console_and_everyone_else_the_json_index(accept: str, html: bool) -> None:
    response = Client().get("/", headers={"Accept": accept} if accept else {})
    assert "Accept" in response["Vary"]
    if html:
        assert response.status_code == 302 and response["Location"] == "/console/"
    else:
        assert response.status_code == 200 and response.json()["api_prefix"] == "/api/v1"


def test_sign_in_page_has_no_inline_script_and_a_csp(tenant: Any) -> None:
    response = browser().get("/console/?workspace=acme&email=a%40acme.test")
    assert response.status_code == 200
    html = response.content.decode()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all('src="/static/' in tag and 'type="module"' in tag for tag in scripts)
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
    assert 'value="acme"' in html and 'value="a@acme.test"' in html
    for name in ("Workspace", "Email", "Password", "Sign in", "Email me a code"):
        assert f">{name}<" in html
    assert 'rel="icon"' in html


def test_password_sign_in_puts_the_refresh_token_in_an_httponly_strict_cookie_only(user: User) -> None:
    client = browser()
    response = sign_in(client, user)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"access", "user", "workspace"} and "refresh" not in body
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console/"
    assert body["workspace"] == "acme" and body["user"]["email"] == user.email


def test_wrong_password_and_unknown_workspace_are_errors_in_words(user: User) -> None:
    client = browser()
    response = sign_in(client, user, password="nope-nope-nope")
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_failed"
    assert COOKIE not in response.cookies
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/console/auth/login",
        {"email": user.email, "password": PASSWORD},
        content_type="application/json",
        headers={"X-CSRFToken": token, "X-Tenant-ID": "nowhere"},
    )
    assert response.status_code == 404 and response.json()["error"]["type"] == "tenant_not_found"
    response = post(client, "/console/auth/login", **{"X-CSRFToken": token})
    assert response.status_code == 400 and response.json()["error"]["type"] == "tenant_required"


def test_console_endpoints_refuse_requests_without_the_csrf_token(user: User) -> None:
    client = browser()
    csrf(client)
    response = client.post(
        "/console/auth/login",
        {"email": user.email, "password": PASSWORD},
        content_type="application/json",
        headers={"X-Tenant-ID": "acme"},
    )
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_denied"
    assert sign_in(client, user).status_code == 200
    assert post(client, "/console/auth/refresh").status_code == 403
    assert post(client, "/console/auth/logout").status_code == 403


def test_refresh_rotates_the_cookie_and_the_old_token_stops_working(
    user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "REFRESH_GRACE_SECONDS", 0)  # past the grace window at once
    client = browser()
    sign_in(client, user)
    token = client.cookies["csrftoken"].value
    first = client.cookies[COOKIE].value
    response = post(client, "/console/auth/refresh", **{"X-CSRFToken": token})
    assert response.status_code == 200
    assert response.json()["access"] and response.json()["user"]["id"] == str(user.pk)
    second = client.cookies[COOKIE].value
    assert second and second != first
    me = make_client(None, user.tenant)
    me.credentials(HTTP_X_TENANT_ID="acme", HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert me.get("/api/v1/auth/me").json()["email"] == user.email

    replay = browser()
    replay_token = csrf(replay)
    replay.cookies[COOKIE] = first
    response = post(replay, "/console/auth/refresh", **{"X-CSRFToken": replay_token})
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_failed"
    assert response.cookies[COOKIE].value == ""  # cleared
    assert replay.get("/console/chat").status_code == 302  # nor does it open pages
    # a reused token is a stolen copy: its whole sign-in ends, the rightful page's cookie too
    assert post(client, "/console/auth/refresh", **{"X-CSRFToken": token}).status_code == 401


def test_a_refresh_whose_answer_was_lost_gets_the_same_successor_until_sign_out(user: User) -> None:
    client = browser()
    sign_in(client, user)
    token = client.cookies["csrftoken"].value
    old = client.cookies[COOKIE].value
    assert post(client, "/console/auth/refresh", **{"X-CSRFToken": token}).status_code == 200
    successor = client.cookies[COOKIE].value

    lost = browser()  # a page that navigated away before storing the rotated cookie
    lost_token = csrf(lost)
    lost.cookies[COOKIE] = old
    response = post(lost, "/console/auth/refresh", **{"X-CSRFToken": lost_token})
    assert response.status_code == 200 and response.json()["access"]
    assert lost.cookies[COOKIE].value == successor
    stale_page = browser()  # a page request sent with the old cookie while the refresh was in flight
    stale_page.cookies[COOKIE] = old
    assert stale_page.get("/console/chat").status_code == 200

    assert post(client, "/console/auth/logout", **{"X-CSRFToken": token}).status_code == 204
    late = browser()
    late_token = csrf(late)
    late.cookies[COOKIE] = old
    assert post(late, "/console/auth/refresh", **{"X-CSRFToken": late_token}).status_code == 401
    assert late.get("/console/chat").status_code == 302


def test_sign_out_with_a_just_rotated_cookie_revokes_its_successor(user: User) -> None:
    client = browser()
    sign_in(client, user)
    token = client.cookies["csrftoken"].value
    old = client.cookies[COOKIE].value
    assert post(client, "/console/auth/refresh", **{"X-CSRFToken": token}).status_code == 200
    successor = client.cookies[COOKIE].value
    stale = browser()  # signs out with the cookie a page had before the refresh's answer arrived
    stale_token = csrf(stale)
    stale.cookies[COOKIE] = old
    assert post(stale, "/console/auth/logout", **{"X-CSRFToken": stale_token}).status_code == 204
    assert post(client, "/console/auth/refresh", **{"X-CSRFToken": token}).status_code == 401
    assert client.cookies[COOKIE].value == ""
    client.cookies[COOKIE] = successor
    assert client.get("/console/documents").status_code == 302


def test_refresh_without_a_cookie_or_with_garbage_is_401(user: User) -> None:
    client = browser()
    token = csrf(client)
    assert post(client, "/console/auth/refresh", **{"X-CSRFToken": token}).status_code == 401
    client.cookies[COOKIE] = "not.a.token"
    assert post(client, "/console/auth/refresh", **{"X-CSRFToken": token}).status_code == 401


def test_sign_out_revokes_the_refresh_token_on_the_server(user: User) -> None:
    client = browser()
    sign_in(client, user)
    token = client.cookies["csrftoken"].value
    value = client.cookies[COOKIE].value
    response = post(client, "/console/auth/logout", **{"X-CSRFToken": token})
    assert response.status_code == 204 and response.cookies[COOKIE].value == ""
    again = browser()
    again_token = csrf(again)
    again.cookies[COOKIE] = value
    assert post(again, "/console/auth/refresh", **{"X-CSRFToken": again_token}).status_code == 401
    assert again.get("/console/documents").status_code == 302


def test_code_sign_in_through_the_console(user: User) -> None:
    client = browser()
    token = csrf(client)
    api = make_client(None, user.tenant)
    assert api.post("/api/v1/auth/request-code", {"email": user.email}, format="json").status_code == 202
    code = re.findall(r"^\s+(\d{6})\s*$", mail.outbox[-1].body, flags=re.MULTILINE)[0]
    assert "http://testserver-console.example/console/?workspace=acme&email=member%40acme.test" in mail.outbox[-1].body
    response = client.post(
        "/console/auth/verify-code",
        {"email": user.email, "code": code},
        content_type="application/json",
        headers={"X-CSRFToken": token, "X-Tenant-ID": "acme"},
    )
    assert response.status_code == 200 and "refresh" not in response.json()
    assert client.get("/console/documents").status_code == 200


@pytest.fixture(autouse=True)
def _console_url(settings: Any) -> None:
    settings.CONSOLE_URL = "http://testserver-console.example"


def test_pages_need_a_session_and_admin_pages_refuse_members_on_the_server(user: User, admin_user: User) -> None:
    anonymous = browser()
    response = anonymous.get("/console/chat")
    assert response.status_code == 302 and response["Location"] == "/console/?next=%2Fconsole%2Fchat"

    member = browser()
    sign_in(member, user)
    assert member.get("/console/").status_code == 302
    for page in ("documents", "chat", "usage"):
        response = member.get(f"/console/{page}")
        assert response.status_code == 200, page
        assert "no-store" in response["Cache-Control"]
    for page in ("people", "settings"):
        response = member.get(f"/console/{page}")
        assert response.status_code == 403
        assert "text/html" in response["Content-Type"] and "Only the workspace's admins" in response.content.decode()
    assert 'href="/console/people"' not in member.get("/console/documents").content.decode()

    admin = browser()
    sign_in(admin, admin_user)
    assert admin.get("/console/people").status_code == 200
    assert admin.get("/console/settings").status_code == 200
    assert admin.get("/console/nothing-here").status_code == 404


def test_a_deactivated_user_loses_the_pages_at_once(user: User) -> None:
    client = browser()
    sign_in(client, user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert client.get("/console/documents").status_code == 302


def test_invitation_links_to_the_console_with_the_workspace(admin_api: Any) -> None:
    response = admin_api.post("/api/v1/users/", {"email": "new@acme.test", "role": "member"}, format="json")
    assert response.status_code == 201
    assert "http://testserver-console.example/console/?workspace=acme&email=new%40acme.test" in mail.outbox[-1].body


# --- signed download links ---------------------------------------------------------------------


@pytest.fixture
def document(api: Any) -> Document:
    response = upload(api, make_pdf(["First page text here.", "Second page text here."]), name="guide.pdf")
    assert response.status_code == 202, response.content
    return Document.objects.get(pk=response.json()["id"])


def test_a_signed_link_opens_the_pdf_inline_without_a_bearer(api: Any, document: Document) -> None:
    response = api.get(f"/api/v1/documents/{document.pk}/file-link/")
    assert response.status_code == 200
    url = response.json()["url"]
    assert url.startswith("/files/") and response.json()["expires_in"] > 0
    pdf = Client().get(url)
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"].startswith("inline") and "guide.pdf" in pdf["Content-Disposition"]
    assert b"".join(pdf.streaming_content).startswith(b"%PDF")


def test_signed_links_refuse_tampering_expiry_other_tenants_and_deactivated_users(
    api: Any, user: User, document: Document, other_user: User, client_for: Any, settings: Any
) -> None:
    url = api.get(f"/api/v1/documents/{document.pk}/file-link/").json()["url"]
    assert Client().get(url[:-2] + "xx").status_code == 404
    assert Client().get("/files/garbage").json()["error"]["type"] == "not_found"
    assert client_for(other_user).get(f"/api/v1/documents/{document.pk}/file-link/").status_code == 404
    settings.DOCUMENT_LINK_SECONDS = -1
    expired = Client().get(url)
    assert expired.status_code == 404 and "expired" in expired.json()["error"]["message"]
    settings.DOCUMENT_LINK_SECONDS = 600
    assert Client().get(url).status_code == 200
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert Client().get(url).status_code == 404


def test_a_viewer_can_get_a_link_to_a_colleagues_document(document: Document, tenant: Any, client_for: Any) -> None:
    viewer = UserFactory(tenant=tenant, email="viewer2@acme.test", role=User.Role.VIEWER)
    response = client_for(viewer).get(f"/api/v1/documents/{document.pk}/file-link/")
    assert response.status_code == 200
    assert Client().get(response.json()["url"]).status_code == 200
