"""Signed webhooks: registration with SSRF refusals (asserted before any connection, through a
stubbed resolver), deliveries to real HTTP and HTTPS receivers on loopback, signatures verified
with the standardwebhooks library, retries, failures, auto-disable, redelivery, tenant isolation."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.models import User
from audit.models import AuditEvent
from integrations import netguard
from integrations.models import WebhookDelivery, WebhookEndpoint
from integrations.services import webhook_endpoint_create
from integrations.tasks import deliver_webhook
from integrations.webhooks import signed_headers, webhook_emit
from tests.crosstenant import IsolatedResourceTests, assert_envelope
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/"


def run_deliveries(ids: list[str] | None = None) -> list[WebhookDelivery]:
    """Run the Celery task in this process (``apply``: retries included) for the given or all pending rows."""
    rows = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
    if ids is not None:
        rows = WebhookDelivery.objects.filter(pk__in=ids)
    for row in list(rows):
        deliver_webhook.apply(args=[str(row.pk)])
    return list(WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows]).order_by("created_at"))


def make_endpoint(tenant: Any, url: str, events: list[str] | None = None) -> WebhookEndpoint:
    return webhook_endpoint_create(tenant=tenant, created_by=None, url=url, events=events or ["api_key.created"])


# --- registration and SSRF -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "url_forbidden_address"),
        ("http://10.1.2.3/hook", "url_forbidden_address"),
        ("http://169.254.169.254/latest/meta-data/", "url_forbidden_address"),
        ("http://[::1]/hook", "url_forbidden_address"),
        ("http://[::ffff:10.0.0.1]/hook", "url_forbidden_address"),
        ("http://100.64.0.1/hook", "url_forbidden_address"),
        ("http://internal.example.test/hook", "url_forbidden_address"),  # resolves to 10.x (stub)
        ("http://metadata.example.test/hook", "url_forbidden_address"),  # resolves to 169.254.169.254 (stub)
        ("http://split.example.test/hook", "url_forbidden_address"),  # one public, one private address
        ("http://metadata.google.internal/computeMetadata/v1/", "url_forbidden_address"),
        ("ftp://files.example.test/x", "url_scheme"),
        ("http://user:pw@public.example.test/hook", "url_credentials"),
        ("http://nowhere.example.test/hook", "url_unresolvable"),
    ],
)
def test_refused_urls_are_400_before_any_connection(
    admin_api: Any, fake_dns: dict[str, list[str]], loopback_only: list[Any], url: str, reason: str
) -> None:
    fake_dns.update(
        {
            "internal.example.test": ["10.0.0.7"],
            "metadata.example.test": ["169.254.169.254"],
            "split.example.test": ["93.184.216.34", "192.168.1.10"],
            "public.example.test": ["93.184.216.34"],
        }
    )
    error = assert_envelope(admin_api.post(URL, {"url": url, "events": ["document.ready"]}, format="json"), 400)
    assert error["type"] == "validation_error" and error["details"].get("reason", reason) == reason, error
    assert loopback_only == []  # nothing was contacted
    assert not WebhookEndpoint.objects.exists()


def test_admin_registers_endpoint_secret_once(admin_api: Any, fake_dns: dict[str, list[str]]) -> None:
    fake_dns["hooks.example.test"] = ["93.184.216.34"]
    response = admin_api.post(
        URL, {"url": "https://hooks.example.test/in", "events": ["document.ready", "api_key.created"]}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["document.ready", "api_key.created"]
    listed = admin_api.get(URL).json()["results"][0]
    assert "secret" not in listed and body["secret"] not in json.dumps(listed)
    assert "secret" not in admin_api.get(f"{URL}{body['id']}/").json()
    rotated = admin_api.post(f"{URL}{body['id']}/rotate-secret/").json()
    assert rotated["secret"] != body["secret"]
    assert AuditEvent.objects.filter(action="webhook.created").exists()
    assert body["secret"] not in json.dumps(list(AuditEvent.objects.values("details")))


def test_bad_registrations(admin_api: Any, api: Any, fake_dns: dict[str, list[str]]) -> None:
    fake_dns["hooks.example.test"] = ["93.184.216.34"]
    for body in (
        {"url": "https://hooks.example.test/in", "events": []},
        {"url": "https://hooks.example.test/in", "events": ["everything"]},
        {"url": "not a url", "events": ["document.ready"]},
        {"events": ["document.ready"]},
    ):
        assert_envelope(admin_api.post(URL, body, format="json"), 400, "validation_error")
    assert_envelope(api.get(URL), 403, "permission_denied")


class TestWebhookEndpointsAreIsolated(IsolatedResourceTests):
    list_url = URL
    verbs = ("get", "patch", "delete")
    owner_role = "admin"
    max_list_queries = 8

    def make_object(self, owner: User) -> WebhookEndpoint:
        return make_endpoint(owner.tenant, f"https://93.184.216.34/{uuid.uuid4().hex[:6]}")  # a literal public address

    def check_unchanged(self, obj: WebhookEndpoint) -> None:
        obj.refresh_from_db()
        assert obj.is_active


def test_another_tenants_deliveries_are_404(admin_api: Any, tenant: Any, other_tenant: Any, client_for: Any) -> None:
    endpoint = make_endpoint(tenant, "https://93.184.216.34/a")
    delivery = WebhookDelivery.objects.create(
        tenant=tenant, endpoint=endpoint, message_id="msg_x", event_type="api_key.created", payload={}
    )
    foreign = client_for(UserFactory(tenant=other_tenant, email="admin@globex.test", role=User.Role.ADMIN))
    assert_envelope(foreign.get(f"{URL}{endpoint.pk}/deliveries/"), 404)
    assert_envelope(foreign.post(f"{URL}{endpoint.pk}/deliveries/{delivery.pk}/redeliver/"), 404)
    assert admin_api.get(f"{URL}{endpoint.pk}/deliveries/").json()["count"] == 1
    assert WebhookDelivery.objects.count() == 1


# --- deliveries -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_signed_delivery_to_a_real_receiver(
    admin_api: Any, receivers: Any, scheme: str, django_capture_on_commit_callbacks: Any
) -> None:
    receiver = receivers(scheme)
    created = admin_api.post(URL, {"url": receiver.url, "events": ["api_key.created"]}, format="json")
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        key = admin_api.post("/api/v1/api-keys/", {"name": "bot", "scopes": ["search"]}, format="json").json()
    assert callbacks  # queued only once the change commits
    (delivery,) = run_deliveries()
    assert delivery.status == "succeeded" and delivery.attempts == 1 and delivery.response_code == 200
    assert delivery.latency_ms is not None and delivery.delivered_at is not None
    (got,) = receiver.received
    assert got.path == "/hooks/documind" and got.headers["host"] == f"localhost:{receiver.port}"
    payload = Webhook(secret).verify(got.body, got.headers)  # the receiver's own verification
    assert payload["type"] == "api_key.created" and payload["data"]["api_key_id"] == key["id"]
    assert key["key"] not in got.body.decode()
    assert got.headers["webhook-id"] == delivery.message_id
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(got.body, got.headers)  # another secret
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body.replace(b"api_key.created", b"api_key.createe"), got.headers)


def test_https_certificate_must_match_the_original_host_name(admin_api: Any, receivers: Any, tenant: Any) -> None:
    receiver = receivers("https", hostname="somebody-else.test")  # a certificate for another name
    endpoint = make_endpoint(tenant, receiver.url)
    webhook_emit(tenant=tenant, event_type="api_key.created", data={})
    (delivery,) = run_deliveries()
    assert delivery.status == "failed" and delivery.response_code is None
    assert "SSL" in delivery.error or "certificate" in delivery.error.lower(), delivery.error
    assert receiver.received == []
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1


def test_replayed_signature_outside_the_tolerance_is_refused_by_the_receiver() -> None:
    secret = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
    body = json.dumps({"type": "document.ready", "data": {}})
    old = signed_headers(secret=secret, message_id="msg_1", body=body, now=timezone.now() - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, old)
    future = signed_headers(secret=secret, message_id="msg_1", body=body, now=timezone.now() + timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too new"):
        Webhook(secret).verify(body, future)
    fresh = signed_headers(secret=secret, message_id="msg_1", body=body)
    assert Webhook(secret).verify(body, fresh) == json.loads(body)


class VerifyingReceiver:
    """A real receiver on loopback that does what an integrator's does: verify each request with the
    endpoint's secret (``standardwebhooks``, its five-minute tolerance, at the receiver's clock) and
    answer 204, or 401 with the reason. It keeps what it got (``received``: headers, body) and its
    verdicts. ``clock_offset`` moves the receiver's clock (the library's ``datetime.now``)."""

    def __init__(self) -> None:
        self.secret = ""
        self.clock_offset = timedelta(0)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.verdicts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.received.append((headers, body))
                try:
                    Webhook(outer.secret).verify(body, headers)
                    status, verdict = 204, "accepted"
                except WebhookVerificationError as exc:
                    status, verdict = 401, str(exc)
                outer.verdicts.append(verdict)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="verifying-receiver").start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server.server_address[1]}/hooks/verified"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def verifying_receiver(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[VerifyingReceiver]:
    import standardwebhooks.webhooks as library

    settings.WEBHOOK_ALLOWED_HOSTS = ["localhost"]
    settings.WEBHOOK_TIMEOUT_SECONDS = settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 2.0
    receiver = VerifyingReceiver()

    class ReceiverClock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + receiver.clock_offset

    monkeypatch.setattr(library, "datetime", ReceiverClock)
    yield receiver
    receiver.close()


def test_our_delivery_verifies_and_a_replay_or_a_tampered_body_is_refused(
    admin_api: Any, tenant: Any, verifying_receiver: VerifyingReceiver
) -> None:
    receiver = verifying_receiver
    created = admin_api.post(URL, {"url": receiver.url, "events": ["document.ready"]}, format="json")
    assert created.status_code == 201, created.content
    receiver.secret = created.json()["secret"]  # shown once, kept by the integrator
    webhook_emit(tenant=tenant, event_type="document.ready", data={"document_id": "d-1"})
    (delivery,) = run_deliveries()
    assert receiver.verdicts == ["accepted"]
    assert delivery.status == "succeeded" and delivery.response_code == 204
    ((headers, body),) = receiver.received
    sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    assert abs(timezone.now() - sent_at) < timedelta(seconds=30)  # stamped when sent
    signed = {k: v for k, v in headers.items() if k.startswith("webhook-") or k == "content-type"}

    def replay(content: bytes) -> int:
        return httpx.post(receiver.url, content=content, headers=signed, timeout=5).status_code

    assert replay(body) == 204  # the same request within the tolerance: the signature holds
    tampered = body.replace(b'"d-1"', b'"d-2"')
    assert tampered != body and replay(tampered) == 401
    assert receiver.verdicts[-1] == "No matching signature found"
    receiver.clock_offset = timedelta(minutes=5, seconds=30)  # the same body and headers, replayed later
    assert replay(body) == 401
    assert receiver.verdicts[-1] == "Message timestamp too old"


@pytest.mark.parametrize("mode", ["error", "slow", "redirect"])
def test_failing_receivers_are_retried_then_failed(
    receivers: Any, tenant: Any, settings: Any, mode: str, loopback_only: list[Any]
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    receiver = receivers("http")
    receiver.mode = mode
    receiver.delay = 1.5
    make_endpoint(tenant, receiver.url)
    webhook_emit(tenant=tenant, event_type="api_key.created", data={"n": 1})
    (delivery,) = run_deliveries()
    assert delivery.status == "failed" and delivery.attempts == 3
    assert len(receiver.received) == 3
    if mode == "error":
        assert delivery.response_code == 500 and delivery.response_excerpt == "boom"
    elif mode == "slow":
        assert delivery.response_code is None and delivery.error.startswith("timeout")
    else:  # never followed: the redirect's target (the metadata service) is not contacted
        assert delivery.response_code == 302
        assert all(a[0] in ("127.0.0.1", "::1") for a in loopback_only if isinstance(a, tuple))


def test_a_slow_receiver_within_the_timeout_succeeds_with_its_latency(
    receivers: Any, tenant: Any, settings: Any
) -> None:
    receiver = receivers("http")
    receiver.mode, receiver.delay = "slow", 0.3
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    make_endpoint(tenant, receiver.url)
    webhook_emit(tenant=tenant, event_type="api_key.created", data={})
    (delivery,) = run_deliveries()
    assert delivery.status == "succeeded" and delivery.latency_ms >= 300


def test_backoff_is_exponential_with_a_ceiling(settings: Any) -> None:
    from integrations.tasks import backoff_seconds

    settings.WEBHOOK_RETRY_BACKOFF_SECONDS, settings.WEBHOOK_RETRY_BACKOFF_MAX_SECONDS = 10, 100
    for retries, ceiling in [(0, 10), (1, 20), (2, 40), (3, 80), (4, 100), (9, 100)]:
        assert ceiling / 2 <= backoff_seconds(retries) <= ceiling


def test_dns_rebinding_after_registration_is_refused_at_delivery(
    tenant: Any, fake_dns: dict[str, list[str]], loopback_only: list[Any]
) -> None:
    fake_dns["rebind.example.test"] = ["93.184.216.34"]
    make_endpoint(tenant, "http://rebind.example.test/hook")
    fake_dns["rebind.example.test"] = ["10.0.0.1"]
    webhook_emit(tenant=tenant, event_type="api_key.created", data={})
    (delivery,) = run_deliveries()
    assert delivery.status == "failed" and delivery.error.startswith("url_forbidden_address")
    assert loopback_only == []


def test_the_checked_address_is_the_one_connected(receivers: Any, tenant: Any, monkeypatch: Any) -> None:
    receiver = receivers("http")
    calls: list[str] = []
    real = netguard.resolver

    def counting(host: str, port: int) -> list[str]:
        calls.append(host)
        return real(host, port)

    monkeypatch.setattr(netguard, "resolver", counting)
    make_endpoint(tenant, receiver.url)
    calls.clear()
    webhook_emit(tenant=tenant, event_type="api_key.created", data={})
    (delivery,) = run_deliveries()
    assert delivery.status == "succeeded"
    assert calls == ["localhost"]  # resolved once; httpx was handed an address, not the name


def test_endpoint_failing_repeatedly_is_disabled_with_an_event(
    receivers: Any, tenant: Any, settings: Any, admin_api: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS, settings.WEBHOOK_DISABLE_AFTER_FAILURES = 1, 2
    broken, watcher = receivers("http"), receivers("http")
    broken.mode = "error"
    endpoint = make_endpoint(tenant, broken.url)
    make_endpoint(tenant, watcher.url, events=["webhook.disabled"])
    for n in range(2):
        webhook_emit(tenant=tenant, event_type="api_key.created", data={"n": n})
        run_deliveries()
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.consecutive_failures == 2 and endpoint.disabled_reason
    assert AuditEvent.objects.filter(action="webhook.disabled", object_id=str(endpoint.pk)).exists()
    run_deliveries()
    (announced,) = watcher.received
    assert json.loads(announced.body)["data"]["endpoint_id"] == str(endpoint.pk)
    # a disabled endpoint receives nothing more, and cannot be redelivered to until re-enabled
    webhook_emit(tenant=tenant, event_type="api_key.created", data={"n": 3})
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 2
    failed = WebhookDelivery.objects.filter(endpoint=endpoint).first()
    assert_envelope(admin_api.post(f"{URL}{endpoint.pk}/deliveries/{failed.pk}/redeliver/"), 409)
    response = admin_api.patch(f"{URL}{endpoint.pk}/", {"is_active": True}, format="json")
    assert response.json()["is_active"] and response.json()["consecutive_failures"] == 0


def test_redelivery_keeps_the_message_id(
    receivers: Any, tenant: Any, settings: Any, admin_api: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    receiver = receivers("http")
    receiver.mode = "error"
    endpoint = make_endpoint(tenant, receiver.url)
    webhook_emit(tenant=tenant, event_type="api_key.created", data={"n": 1})
    (first,) = run_deliveries()
    assert first.status == "failed"
    receiver.mode = "ok"
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_api.post(f"{URL}{endpoint.pk}/deliveries/{first.pk}/redeliver/")
    assert response.status_code == 202, response.content
    (again,) = run_deliveries([response.json()["id"]])
    assert again.status == "succeeded" and again.message_id == first.message_id
    assert again.redelivery_of_id == first.pk
    assert [r.headers["webhook-id"] for r in receiver.received] == [first.message_id] * 2
    listed = admin_api.get(f"{URL}{endpoint.pk}/deliveries/").json()["results"]
    assert {row["status"] for row in listed} == {"failed", "succeeded"}
    assert_envelope(admin_api.post(f"{URL}{endpoint.pk}/deliveries/not-a-uuid/redeliver/"), 404)


def test_a_rolled_back_change_sends_nothing(receivers: Any, tenant: Any) -> None:
    from django.db import transaction

    receiver = receivers("http")
    make_endpoint(tenant, receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        webhook_emit(tenant=tenant, event_type="api_key.created", data={})
        raise RuntimeError("rolled back")
    assert not WebhookDelivery.objects.exists()
