import re
import socket
import subprocess
import time

import pytest

from security import outbound
from tests.receivers import Receiver
from tests.receivers import Reply

BODY = b'{"id":"evt"}'
HEADERS = {"Content-Type": "application/json"}


def post(url, **options):
    options.setdefault("allow_private", True)
    options.setdefault("connect_timeout", 1.0)
    options.setdefault("read_timeout", 1.0)
    return outbound.post(url, BODY, HEADERS, **options)


def test_post_delivers_body_and_headers_and_keeps_only_the_status():
    """A 2xx is success; the receiver got the exact body and headers."""
    with Receiver(default=Reply(200, body=b"secret receiver text")) as receiver:
        outcome = post(receiver.url("/in?x=1"))

    assert (outcome.ok, outcome.status_code, outcome.error) == (True, 200, None)
    assert outcome.latency_ms > 0
    (seen,) = receiver.requests
    assert (seen.path, seen.body) == ("/in?x=1", BODY)
    assert seen.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert "secret receiver text" not in repr(outcome)


@pytest.mark.parametrize(
    ("reply", "retryable", "message"),
    [
        (Reply(500), True, "receiver error 500"),
        (Reply(503), True, "receiver error 503"),
        (Reply(429, {"Retry-After": "7"}), True, r"rate-limited .*429"),
        (Reply(400), False, r"refused the delivery \(400\)"),
        (Reply(404), False, r"refused the delivery \(404\)"),
        (Reply(410), False, r"refused the delivery \(410\)"),
    ],
)
def test_post_classifies_failures_as_retryable_or_not(reply, retryable, message):
    """5xx and 429 are retried; other 4xx are not."""
    with Receiver(default=reply) as receiver:
        outcome = post(receiver.url())

    assert not outcome.ok
    assert outcome.status_code == reply.status
    assert outcome.retryable is retryable
    assert outcome.latency_ms > 0
    assert re.search(message, outcome.error)
    if reply.status == 429:
        assert outcome.retry_after_seconds == 7.0


def test_post_does_not_follow_redirects():
    """A 302 is a failed attempt; the Location is never fetched."""
    with Receiver() as elsewhere:
        redirect = Reply(302, {"Location": elsewhere.url("/stolen")})
        with Receiver(default=redirect) as receiver:
            outcome = post(receiver.url())

    assert (outcome.ok, outcome.status_code, outcome.retryable) == (False, 302, False)
    assert outcome.error == "redirect 302 not followed"
    assert receiver.count() == 1
    assert elsewhere.count() == 0


def test_post_times_out_on_a_slow_receiver():
    """A receiver slower than the read timeout gives a retryable timeout."""
    with Receiver(default=Reply(200, delay_seconds=3)) as receiver:
        started = time.monotonic()
        outcome = post(receiver.url(), read_timeout=0.5)
        elapsed = time.monotonic() - started

    assert not outcome.ok and outcome.retryable
    assert outcome.status_code is None
    assert outcome.error.startswith("timed out")
    assert elapsed < 2.0
    assert 400 <= outcome.latency_ms < 2000


def test_post_reads_at_most_the_cap_of_a_huge_response():
    """A 50 MB answer is cut at the cap; the attempt still counts by its status."""
    huge = Reply(200, body=b"x" * (50 * 1024 * 1024))
    with Receiver(default=huge) as receiver:
        started = time.monotonic()
        outcome = post(receiver.url(), max_response_bytes=1024)

    assert (outcome.ok, outcome.status_code) == (True, 200)
    assert time.monotonic() - started < 5


def test_post_refuses_connection_to_a_port_nobody_listens_on():
    """A refused connection is a retryable failure with no status code."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    outcome = post(f"http://127.0.0.1:{port}/")

    assert (outcome.ok, outcome.status_code, outcome.retryable) == (False, None, True)
    assert "ConnectionRefusedError" in outcome.error


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:{port}/", "must use https"),
        ("https://127.0.0.1:{port}/", "loopback address 127.0.0.1"),
        ("https://localhost:{port}/", "'localhost' resolves to a refused address"),
        ("https://2130706433:{port}/", "numeric host"),
    ],
)
def test_post_refuses_blocked_targets_before_connecting(url, message):
    """Without allow_private, loopback is refused at the attempt: nothing is sent."""
    with Receiver() as receiver:
        outcome = post(url.format(port=receiver.port), allow_private=False)

    assert outcome.blocked and not outcome.ok and not outcome.retryable
    assert message in outcome.error
    assert receiver.count() == 0


def test_post_looks_the_name_up_once_and_connects_to_that_answer():
    """A resolver that would answer differently the second time is asked once.

    DNS stand-in: a counting getaddrinfo (no resolver here serves a name
    that changes its answer), so a second lookup at connect time would
    show as a second call pointing at the metadata address.
    """
    calls = []

    def rebinding(host, port, type=None):  # noqa: A002  (socket's signature)
        calls.append(host)
        address = "127.0.0.1" if len(calls) == 1 else "169.254.169.254"
        return [(socket.AF_INET, type, 6, "", (address, port))]

    with Receiver() as receiver:
        outcome = post(receiver.url(host="rebind.test"), getaddrinfo=rebinding)

    assert outcome.ok
    assert calls == ["rebind.test"]
    assert receiver.requests[0].headers["host"] == f"rebind.test:{receiver.port}"


@pytest.fixture(scope="module")
def localhost_cert(tmp_path_factory):
    """A self-signed certificate for the name 'localhost', made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_post_over_tls_checks_the_certificate_for_the_host_name(localhost_cert):
    """Pinned to 127.0.0.1, TLS still sends SNI 'localhost' and verifies it."""
    cert, key = localhost_cert
    with Receiver(tls=(cert, key)) as receiver:
        url = receiver.url(host="localhost", scheme="https")
        trusted = post(url, context=outbound.tls_context(cert))
        untrusted = post(url)

    assert (trusted.ok, trusted.status_code) == (True, 200)
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"
    assert not untrusted.ok and untrusted.retryable
    assert untrusted.error.startswith("TLS failed")


def test_parse_retry_after_reads_seconds_and_http_dates():
    """Both forms of Retry-After give seconds; nonsense gives None."""
    now = 1_700_000_000

    assert outbound.parse_retry_after("120") == 120.0
    assert outbound.parse_retry_after(
        "Tue, 14 Nov 2023 22:14:20 GMT", now=now
    ) == pytest.approx(60, abs=1)
    assert outbound.parse_retry_after("soon") is None
    assert outbound.parse_retry_after(None) is None
