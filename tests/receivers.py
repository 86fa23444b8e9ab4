"""Real HTTP receivers on 127.0.0.1 for webhook tests.

A :class:`Receiver` is a threading ``http.server`` that records every
request (headers and raw body) and answers from a script: a list of
:class:`Reply` used in order, then ``default`` for the rest.
"""

import ssl
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer


@dataclass
class Reply:
    """How to answer one request."""

    status: int = 200
    headers: dict = field(default_factory=dict)
    delay_seconds: float = 0.0
    body: bytes = b"ok"


@dataclass
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict
    raw_headers: str
    body: bytes
    at: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802  (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        receiver = self.server.receiver
        reply = receiver.record(
            Received(
                method="POST",
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                raw_headers=f"{self.requestline}\r\n{self.headers}",
                body=body,
                at=time.time(),
            )
        )
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            # The sender gave up first (a timeout test); nothing to answer.
            pass

    def log_message(self, format, *args):  # noqa: A002  (http.server's signature)
        """Keep the test output quiet."""


class Receiver:
    """A recording HTTP(S) server on 127.0.0.1, started in a thread."""

    def __init__(self, replies=(), *, default=None, tls=None):
        self.replies = list(replies)
        self.default = default or Reply()
        self.requests = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True
            )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def url(self, path="/hook", *, host="127.0.0.1", scheme="http"):
        return f"{scheme}://{host}:{self.port}{path}"

    def record(self, request):
        with self._lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.pop(0)
            return self.default

    def count(self):
        with self._lock:
            return len(self.requests)

    def __enter__(self):
        return self.start()

    def __exit__(self, *_exc):
        self.stop()
