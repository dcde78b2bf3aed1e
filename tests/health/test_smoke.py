from tests.crosstenant import assert_envelope


def test_root(client):
    body = client.get("/").json()
    assert body["name"] == "DocuMind" and body["api_prefix"] == "/api/v1"


def test_ready(db, client):
    r = client.get("/api/v1/health/ready")
    assert r.status_code == 200, r.json()
    assert set(r.json()["checks"]) == {"database", "cache", "broker", "channel_layer"}


def test_tenant_required(db, client):
    assert_envelope(client.get("/api/v1/tasks/"), 400, "tenant_required")
    assert_envelope(client.get("/api/v1/tasks/", HTTP_X_TENANT_ID="nope"), 404, "tenant_not_found")


def test_unknown_url(db, client):
    assert_envelope(client.get("/nope"), 404, "not_found")
