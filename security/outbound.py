"""One outbound webhook POST, to an address that was checked.

The name is resolved once, every address is checked
(:func:`security.urls.resolve`), and the socket connects to one of those
addresses; TLS still sends the host name for SNI and checks the certificate
against it, and the ``Host`` header carries the name. Redirects are never
followed (``http.client`` does not follow them, and nothing here does).
Connect and read timeouts are separate and short, and at most
``max_response_bytes`` of the response are read, then dropped: only the
status code is kept. The read timeout bounds each read, not the whole
response; a receiver that drips bytes is cut off by the delivery task's
soft time limit, which records a retryable timeout.
"""

import functools
import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from security import urls


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to.

    ``status_code`` is None when no response arrived; ``error`` says why an
    attempt failed; ``retryable`` whether trying again later may help;
    ``retry_after_seconds`` is the receiver's ``Retry-After``, if any.
    """

    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None
    retryable: bool
    retry_after_seconds: float | None = None
    blocked: bool = False


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a checked address, named by the URL's host."""

    def __init__(self, host, port, *, addresses, connect_timeout, read_timeout):
        super().__init__(host, port, timeout=connect_timeout)
        self._addresses = addresses
        self._read_timeout = read_timeout

    def _open_socket(self):
        last_error = None
        for address in self._addresses:
            try:
                sock = socket.create_connection((str(address), self.port), self.timeout)
            except OSError as error:
                last_error = error
                continue
            sock.settimeout(self._read_timeout)
            return sock
        raise last_error or OSError("no address to connect to")

    def connect(self):
        """Connect to the first checked address that answers."""
        self.sock = self._open_socket()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """The same over TLS, with SNI and certificate checks for the host name."""

    def __init__(self, host, port, *, context, **kwargs):
        super().__init__(host, port, **kwargs)
        self._context = context

    def connect(self):
        """Connect, then run the TLS handshake for the URL's host name."""
        sock = self._open_socket()
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@functools.lru_cache(maxsize=4)
def tls_context(ca_file=None):
    """Return the TLS context deliveries use: verified, TLS 1.2 or later.

    Cached per CA file: loading the system's store on every attempt is
    wasted work, and one context serves any number of connections.
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def parse_retry_after(value, *, now=None):
    """Return ``Retry-After`` (seconds or an HTTP date) in seconds, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, moment.timestamp() - now)


def _classify(status, retry_after):
    if 200 <= status < 300:
        return None, False
    if 300 <= status < 400:
        return f"redirect {status} not followed", False
    if status == 429:
        return "receiver rate-limited the delivery (429)", True
    if status >= 500:
        return f"receiver error {status}", True
    return f"receiver refused the delivery ({status})", False


def post(
    url,
    body,
    headers,
    *,
    allow_private=False,
    connect_timeout=3.0,
    read_timeout=10.0,
    max_response_bytes=65536,
    context=None,
    getaddrinfo=socket.getaddrinfo,
):
    """POST ``body`` to ``url`` after checking where it goes; return an Outcome.

    The name is looked up once, through ``getaddrinfo``, and the connection
    goes to an address from that answer.

    Never raises for network faults: they become a failed Outcome.
    """
    started = time.perf_counter()

    def elapsed_ms():
        return round((time.perf_counter() - started) * 1000, 1)

    try:
        target = urls.check_url(url, allow_private=allow_private)
        addresses = urls.resolve(
            target, allow_private=allow_private, getaddrinfo=getaddrinfo
        )
    except urls.UnsafeUrl as error:
        return Outcome(False, None, elapsed_ms(), str(error), False, blocked=True)
    except OSError as error:
        return Outcome(False, None, elapsed_ms(), f"name lookup failed: {error}", True)

    options = {
        "addresses": addresses,
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
    }
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(
            target.host, target.port, context=context or tls_context(), **options
        )
    else:
        connection = _PinnedHTTPConnection(target.host, target.port, **options)

    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        # Read a bounded amount so the connection can close cleanly; the
        # content itself is never kept.
        response.read(max_response_bytes)
        status = response.status
        retry_after = parse_retry_after(response.getheader("Retry-After"))
    except TimeoutError as error:
        return Outcome(False, None, elapsed_ms(), f"timed out: {error}", True)
    except ssl.SSLError as error:
        return Outcome(False, None, elapsed_ms(), f"TLS failed: {error}", True)
    except (OSError, http.client.HTTPException) as error:
        name = type(error).__name__
        return Outcome(False, None, elapsed_ms(), f"{name}: {error}", True)
    finally:
        connection.close()

    error, retryable = _classify(status, retry_after)
    return Outcome(
        error is None,
        status,
        elapsed_ms(),
        error,
        retryable,
        retry_after_seconds=retry_after if retryable else None,
    )
