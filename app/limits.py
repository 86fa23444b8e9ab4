"""Rate limits per key (or client address) and progressive bans, in Redis.

Policy, in one place:

- Requests with a valid key are counted per key; requests without one
  (no key, a bad key) per client address. The address is the socket's,
  or the one ``TRUSTED_PROXY_COUNT`` proxies vouch for (``ProxyFix``), so a
  forged ``X-Forwarded-For`` does not open a fresh bucket.
- The standard endpoints share one bucket per key with the role's limit
  (``RATELIMIT_BY_ROLE``, else ``RATELIMIT_STANDARD``). The emergency
  endpoint has a bucket of its own per key (``RATELIMIT_EMERGENCY``).
  Keyless requests get the standard limit everywhere, emergency included,
  so the emergency ceiling cannot be used to flood us with key guesses.
- ``/health`` and ``/ready`` are not limited (probes must always work).
- A batch submit counts as one request per ``RATELIMIT_BATCH_ITEMS_PER_REQUEST``
  items (rounded up): far cheaper than one request per message, which is
  the point of a batch, but 1,000 items still cost 10 requests, so a
  batch cannot multiply a key's ceiling a thousandfold.
- A key or address that hits its limit ``BAN_AFTER_BREACHES`` times within
  ``BAN_BREACH_WINDOW_SECONDS`` is banned; each later ban lasts
  ``BAN_GROWTH`` times longer. A banned address is refused before its key
  is even looked up. Breaches and bans are security events.
- Redis down: the classification endpoints *fail open*, onto per-process
  in-memory counters with the same limits (an emergency must never be
  refused because the limiter is down; polls read only the database). Key
  management *fails closed* with a 503: nobody needs it during an outage,
  and it is what a stolen admin key would go for. Each Redis call waits at
  most ``RATELIMIT_STORAGE_TIMEOUT_SECONDS``, and a failed store is not
  asked again for a second, so no request hangs.

One ``Limiter`` is built per app (the suite builds many apps in a process,
and the extension keeps per-app state).
"""

import logging
import math
import time

from flask import current_app
from flask import g
from flask import request
from flask_limiter import ApplicationLimit
from flask_limiter import HeaderNames
from flask_limiter import Limiter
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from app.auth import is_public
from app.errors import ApiError
from app.errors import ServiceUnavailable
from app.errors import error_response
from security import events
from security.bans import KEY_PREFIX
from security.bans import BanStore
from security.bans import StoreUnavailable
from storage.db import session

logger = logging.getLogger(__name__)

EMERGENCY_ENDPOINT = "jobs.submit_emergency"
BATCH_ENDPOINT = "jobs.submit_batch"
# Blueprints whose endpoints answer 503 rather than run unlimited while the
# limiter's Redis is down.
FAIL_CLOSED_BLUEPRINTS = frozenset({"keys"})
# Seconds a client is told to wait when the limiter's store is down.
STORE_RETRY_AFTER_SECONDS = 5


class Banned(ApiError):
    """The key or address is banned for a while after repeated limit hits."""

    status = 429
    code = "banned"


def address_identity():
    """Return the bucket name of the client address."""
    return f"addr:{request.remote_addr or 'unknown'}"


def key_identity(key):
    """Return the bucket name of an API key (its public prefix)."""
    return f"key:{key.prefix}"


def _identity():
    key = g.get("api_key")
    return key_identity(key) if key is not None else address_identity()


def _is_emergency():
    return request.endpoint == EMERGENCY_ENDPOINT and g.get("api_key") is not None


def _limit_value():
    settings = current_app.config
    key = g.get("api_key")
    if key is None:
        return settings["RATELIMIT_STANDARD"]
    if _is_emergency():
        return settings["RATELIMIT_EMERGENCY"]
    return settings["RATELIMIT_BY_ROLE"].get(key.role, settings["RATELIMIT_STANDARD"])


def _cost():
    """Return what this request counts for: 1, or more for a large batch."""
    if request.endpoint != BATCH_ENDPOINT or not request.is_json:
        return 1
    length = request.content_length
    if length is None or length > current_app.config["BATCH_MAX_BODY_BYTES"]:
        return 1
    try:
        body = request.get_json(silent=True)
    except HTTPException:
        return 1
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return 1
    per_request = current_app.config["RATELIMIT_BATCH_ITEMS_PER_REQUEST"]
    return max(1, math.ceil(len(items) / per_request))


def _scope(_endpoint):
    return "emergency" if _is_emergency() else "standard"


def _unlimited():
    return is_public(request.endpoint)


def _on_breach(request_limit):
    identity = _identity()
    key = g.get("api_key")
    store = current_app.extensions["ban_store"]
    try:
        strikes, level, seconds = store.strike(identity)
    except StoreUnavailable:
        strikes, level, seconds = None, 0, 0
    details = {"identity": identity, "limit": str(request_limit.limit)}
    _record("rate_limited", key, {**details, "strikes": strikes})
    if seconds:
        _record("banned", key, {**details, "level": level, "seconds": seconds}, "error")


def _record(kind, key, details, severity="warning"):
    events.record(
        session,
        kind,
        key_prefix=key.prefix if key is not None else None,
        client_address=request.remote_addr,
        endpoint=request.endpoint,
        severity=severity,
        details=details,
    )


def refuse_banned(identities):
    """Refuse a request from a banned key or address.

    Raises:
        Banned: 429 with ``Retry-After``, the ban's remaining seconds.
        ServiceUnavailable: 503, the store is down and the endpoint fails
            closed (key management).
    """
    store = current_app.extensions.get("ban_store")
    if store is None:
        return

    try:
        remaining = store.ban_remaining(identities)
    except StoreUnavailable:
        if request.blueprint in FAIL_CLOSED_BLUEPRINTS:
            raise ServiceUnavailable(
                "rate limiting is unavailable; try again shortly",
                headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
            ) from None
        return

    if remaining:
        raise Banned(
            f"too many requests over the limit: banned for {remaining} more seconds",
            headers={
                "Retry-After": str(remaining),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + remaining),
            },
        )


def init_limiter(app):
    """Build the app's Limiter and ban store; return the limiter, or None when off.

    The limiter's ``before_request`` hook is registered here, so call this
    after the hooks that must run before it (identifying the key).
    """
    settings = app.config
    if not settings["RATELIMIT_ENABLED"]:
        return None

    timeout = settings["RATELIMIT_STORAGE_TIMEOUT_SECONDS"]
    app.extensions["ban_store"] = BanStore(
        settings["RATELIMIT_STORAGE_URL"], timeout_seconds=timeout, settings=settings
    )
    limiter = Limiter(
        key_func=_identity,
        application_limits=[
            ApplicationLimit(limit_provider=_limit_value, scope=_scope, cost=_cost)
        ],
        storage_uri=settings["RATELIMIT_STORAGE_URL"],
        storage_options={
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "retry_on_timeout": False,
        },
        # A sliding log: exactly N requests in any window, as the design
        # asks, with no double burst at a window's edge.
        strategy="moving-window",
        headers_enabled=True,
        # The extension would put Retry-After on every response, 200s
        # included, and stretch a 503's; it gets a name of its own, and
        # Retry-After is set only on refusals, by their handlers.
        header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Retry-After"},
        swallow_errors=True,
        # TODO: the fallback counts a batch as one request (it takes only
        # limit strings, no cost). Acceptable while it covers only a Redis
        # outage of seconds; give it the cost if outages run longer.
        in_memory_fallback=[_limit_value],
        in_memory_fallback_enabled=True,
        on_breach=_on_breach,
        key_prefix=KEY_PREFIX,
    )
    limiter.request_filter(_unlimited)
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def _handle_rate_limited(error):
        current = limiter.current_limit
        retry_after = 60
        if current is not None:
            retry_after = max(1, math.ceil(current.reset_at - time.time()))
        response = error_response(
            429,
            "rate_limited",
            f"rate limit exceeded: {error.description}",
            headers={"Retry-After": str(retry_after)},
        )
        body = response.get_json()
        body["error"]["retry_after"] = retry_after
        response.set_data(current_app.json.dumps(body))
        return response

    return limiter
