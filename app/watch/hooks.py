"""Per-request hooks: request id, the blocklist, request logs and metrics."""

import logging
import time

import redis
from flask import current_app
from flask import g
from flask import request
from werkzeug.exceptions import HTTPException

from app.errors import ApiError
from monitoring import logs
from monitoring import requestlog
from monitoring import state
from security import keys

logger = logging.getLogger(__name__)

# Probes are not blocked, logged or counted: a load balancer's address
# must never lock itself out, and /ready must answer fast with Redis down.
_UNWATCHED_BLUEPRINTS = ("health",)
_SUBMIT_ENDPOINTS = ("jobs.submit", "jobs.submit_emergency")
_BLOCKED = "requests from this address are blocked for now"


class Blocked(ApiError):
    """The client's address is on the blocklist."""

    status = 403
    code = "address_blocked"


def init_app(app):
    """Register the hooks; call before the authentication hook is registered."""
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_forget_request_id)


# The address is request.remote_addr: the socket's, or the client's as
# ProxyFix reads it when TRUSTED_PROXY_COUNT proxies sit in front (set that
# behind a reverse proxy, or a block would lock out everyone behind it).


def _watched():
    return request.blueprint not in _UNWATCHED_BLUEPRINTS


def _start():
    g.started = time.perf_counter()
    g.request_id = logs.clean_request_id(request.headers.get(logs.REQUEST_ID_HEADER))
    g.request_id_token = logs.set_request_id(g.request_id)
    g.detailed_logging = False
    # None: unknown, so cached key snapshots are trusted only for their TTL.
    g.key_generation = None
    if not _watched():
        return

    try:
        blocked, g.detailed_logging, g.key_generation = state.request_state(
            state.client_for(current_app.config), request.remote_addr
        )
    except redis.RedisError as error:
        # Fail open: with Redis down the submit path answers 503 anyway.
        logger.warning("watch: blocklist unreadable error=%s", type(error).__name__)
        return
    if blocked:
        g.blocked = True
        raise Blocked(_BLOCKED)


def _finish(response):
    response.headers[logs.REQUEST_ID_HEADER] = g.get("request_id", "-")
    if not _watched() or "started" not in g:
        return response

    duration = time.perf_counter() - g.started
    endpoint = request.endpoint or "unmatched"
    row = {
        "request_id": g.request_id,
        "key_prefix": _key_prefix(),
        "client_address": request.remote_addr,
        "method": request.method,
        "endpoint": endpoint,
        "status": response.status_code,
        "duration_ms": duration * 1000,
        "text_length": _text_length(),
        "user_agent_length": len(request.headers.get("User-Agent", "")),
    }
    # A blocked client is counted, not logged row by row: a flood from a
    # blocked address must not turn into a flood of database writes.
    if not g.get("blocked"):
        requestlog.record(**row)
    requestlog.count_request(
        state.client_for(current_app.config),
        endpoint=endpoint,
        status=response.status_code,
        submit_seconds=duration if endpoint in _SUBMIT_ENDPOINTS else None,
    )
    if g.detailed_logging:
        logger.info(
            "watch: request method=%s endpoint=%s status=%d key_prefix=%s "
            "address=%s ua_length=%d text_length=%s duration_ms=%.1f",
            row["method"],
            endpoint,
            row["status"],
            row["key_prefix"],
            row["client_address"],
            row["user_agent_length"],
            row["text_length"],
            row["duration_ms"],
        )
    return response


def _forget_request_id(_exception):
    token = g.pop("request_id_token", None)
    if token is not None:
        logs.reset_request_id(token)


def _key_prefix():
    """Return the prefix of the key used, valid or not (never the secret)."""
    key = g.get("api_key")
    if key is not None:
        return key.prefix
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return keys.parse_prefix(value.strip())


def _text_length():
    if request.endpoint not in _SUBMIT_ENDPOINTS or not request.is_json:
        return None
    limit = current_app.config["MAX_BODY_BYTES"]
    if request.content_length is None or request.content_length > limit:
        return None
    try:
        body = request.get_json(silent=True)
    except (HTTPException, RecursionError):
        # RecursionError: nested past the parser's depth (the view says so).
        return None
    text = body.get("text") if isinstance(body, dict) else None
    return len(text) if isinstance(text, str) else None
