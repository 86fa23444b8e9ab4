"""Security headers, HTTPS forcing, and the absence of any cookie surface."""

import re
import socket

import pytest

from app import create_app
from storage import db
from tests.conftest import ROOT
from tests.conftest import KeyMaker
from tests.conftest import LiveServer
from tests.conftest import make_test_config

TWEET = "Power lines down across Oak Avenue, road blocked, sparks visible"
EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "1; mode=block",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "geolocation=(), microphone=(), camera=()",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; "
        "base-uri 'self'; form-action 'self'"
    ),
}


@pytest.fixture
def secured(redis_url, database_url):
    """Build an app with Talisman on; extra settings per test."""

    def build(**overrides):
        settings = {"TALISMAN_ENABLED": True, **overrides}
        application = create_app(make_test_config(redis_url, database_url, **settings))
        db.create_all()
        return application

    yield build
    db.session.remove()


def test_every_response_has_the_security_headers(secured):
    """200, 202, 401, 404 and 422 answers all carry the design's headers."""
    app = secured()
    client = app.test_client()
    headers = KeyMaker(app).headers()

    responses = [
        client.get("/health"),
        client.post("/v1/classifications", json={"text": TWEET}, headers=headers),
        client.get("/v1/classifications"),
        client.get("/nowhere"),
        client.post("/v1/classifications", json={"text": "x"}, headers=headers),
    ]

    assert [r.status_code for r in responses] == [200, 202, 401, 404, 422]
    for response in responses:
        for name, value in EXPECTED.items():
            assert response.headers[name] == value, name
        assert "Strict-Transport-Security" not in response.headers


def test_hsts_only_over_https(secured):
    """HSTS is sent on HTTPS responses, with the design's value."""
    client = secured().test_client()

    response = client.get("/health", base_url="https://api.example.test")

    assert response.headers["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )


def test_force_https_redirects_with_308_and_spares_probes(secured):
    """Plain HTTP gets a 308 to HTTPS (a POST stays a POST); probes answer."""
    client = secured(FORCE_HTTPS=True).test_client()

    post = client.post("/v1/classifications", json={"text": TWEET})
    get = client.get("/v1/classifications?ids=a")
    probes = [client.get("/health"), client.get("/ready")]
    over_https = client.get("/health", base_url="https://api.example.test")

    assert post.status_code == 308
    assert post.headers["Location"] == "https://localhost/v1/classifications"
    assert get.status_code == 308
    assert get.headers["Location"] == "https://localhost/v1/classifications?ids=a"
    assert [p.status_code for p in probes] == [200, 200]
    assert over_https.status_code == 200


def test_forwarded_proto_is_believed_only_from_a_trusted_proxy(secured):
    """A client's own X-Forwarded-Proto does not skip the redirect."""
    direct = secured(FORCE_HTTPS=True).test_client()
    proxied = secured(FORCE_HTTPS=True, TRUSTED_PROXY_COUNT=1).test_client()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.1"}

    forged = direct.post("/v1/classifications", json={}, headers=forwarded)
    through_proxy = proxied.post("/v1/classifications", json={}, headers=forwarded)

    assert forged.status_code == 308
    assert through_proxy.status_code == 401


def test_no_endpoint_sets_or_reads_cookies(app, client, make_key):
    """No response sets a cookie, and a cookie never stands in for the key."""
    headers = make_key.headers("admin")
    client.set_cookie("session", "forged-session-value")

    responses = [
        client.get("/health"),
        client.post("/v1/classifications", json={"text": TWEET}, headers=headers),
        client.get("/v1/keys", headers=headers),
        client.post("/v1/classifications", json={"text": TWEET}),
    ]

    assert [r.status_code for r in responses] == [200, 202, 200, 401]
    assert all("Set-Cookie" not in r.headers for r in responses)
    sources = [
        path.read_text()
        for folder in ("app", "security")
        for path in (ROOT / folder).rglob("*.py")
    ]
    assert sources
    cookie_use = re.compile(r"request\.cookies|from flask import session\b|set_cookie")
    assert [s for s in sources if cookie_use.search(s)] == []


def _raw_request(port, authorization):
    request = (
        b"GET /v1/classifications?ids=00000000-0000-4000-8000-000000000000 "
        b"HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
        + authorization
        + b"\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer aca_deadbeef_" + "é".encode() * 30,
        b"Bearer aca_deadbeef_" + b"\xff\xfe" * 20,
        "Bearer ключ_доступа_секрет".encode(),
        b"Bearer \x80\x81\x82",
        "Bearer 🔑🔑🔑".encode(),
    ],
)
def test_non_ascii_authorization_over_real_http_is_401(app, authorization):
    """Raw non-ASCII bytes in the header, through a real server: 401, never 500."""
    with LiveServer(app) as server:
        answer = _raw_request(server.port, authorization)

    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 401"), answer[:300]
    assert b'"code":"unauthorized"' in answer.replace(b" ", b"")
