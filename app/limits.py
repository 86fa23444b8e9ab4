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

Every limited request costs one Redis round trip for all of this: its bans
and all its limits are checked and counted by one script
(:meth:`security.bans.BanStore.check`). The one exception keeps a banned
address from costing a database read: when the key has to be read from the
database (it is not in this process's cache), the address's ban is checked
first, in a round trip of its own.

Responses of limited endpoints carry ``X-RateLimit-Limit``, ``-Remaining``
and ``-Reset`` (the epoch second by which the window has room again) for
the limit with the shortest window, or for the limit exceeded, and
``X-RateLimit-Retry-After``, the seconds until then. A refusal adds
``Retry-After``.

One ``Limiter`` is built per app (the suite builds many apps in a process,
and each keeps its own in-memory fallback).
"""

import functools
import logging
import math
import time

from flask import current_app
from flask import g
from flask import request
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import HTTPException

from app import auth
from app.errors import ApiError
from app.errors import ServiceUnavailable
from app.errors import Unprocessable
from security import events
from security import roles
from security.bans import BanStore
from security.bans import StoreUnavailable
from storage.db import session

logger = logging.getLogger(__name__)

EMERGENCY_ENDPOINT = "jobs.submit_emergency"
BATCH_ENDPOINT = "jobs.submit_batch"
# Blueprints whose endpoints answer 503 rather than run unlimited while the
# limiter's Redis is down.
FAIL_CLOSED_BLUEPRINTS = frozenset({"keys"})
# Single endpoints that fail closed the same way: reversing an automatic
# action restores revoked keys and lifts blocks, what a stolen admin key
# would go for. The rest of the watch (alerts, metrics) stays readable
# during an outage, when it is needed most.
FAIL_CLOSED_ENDPOINTS = frozenset({"watch.reverse_action"})
# Seconds a client is told to wait when the limiter's store is down.
STORE_RETRY_AFTER_SECONDS = 5


class Banned(ApiError):
    """The key or address is banned for a while after repeated limit hits."""

    status = 429
    code = "banned"


class RateLimited(ApiError):
    """The request is over one of its limits."""

    status = 429
    code = "rate_limited"


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
    """Whether the request gets the emergency bucket: a key that may submit.

    A key without the permission (a viewer) is refused by the view; its
    tries count against its own standard limit, not the emergency ceiling.
    """
    key = g.get("api_key")
    return (
        request.endpoint == EMERGENCY_ENDPOINT
        and key is not None
        and roles.allows(key.role, roles.CREATE_CLASSIFICATIONS)
    )


def _limit_value():
    settings = current_app.config
    key = g.get("api_key")
    if key is None:
        return settings["RATELIMIT_STANDARD"]
    if _is_emergency():
        return settings["RATELIMIT_EMERGENCY"]
    return settings["RATELIMIT_BY_ROLE"].get(key.role, settings["RATELIMIT_STANDARD"])


@functools.lru_cache(maxsize=64)
def _parsed(limit_string):
    """Return the limits of ``"100/hour;20/minute"``, shortest window first.

    The shortest window (in seconds: "10 per 90 seconds" is longer than
    "20/minute") is the one the headers describe; the sort is stable, so
    limits of one window keep the order they were written in.
    """
    return tuple(sorted(parse_many(limit_string), key=lambda item: item.get_expiry()))


def _batch_cost_ceiling():
    """Return what the largest batch allowed counts for."""
    settings = current_app.config
    per_request = settings["RATELIMIT_BATCH_ITEMS_PER_REQUEST"]
    return max(1, math.ceil(settings["BATCH_MAX_ITEMS"] / per_request))


def _cost():
    """Return what this request counts for: 1, or more for a large batch.

    A body is parsed here only for a request with a valid key: a keyless or
    badly keyed request is refused whatever it carries, so it costs 1 and
    its body (up to 16 MiB) is never read. A batch sent without a length
    (a chunked upload) cannot be sized before it is read, so it is charged
    as the largest batch; clients that send ``Content-Length``, as every
    ordinary client does, are charged by their items.
    """
    if request.endpoint != BATCH_ENDPOINT or not request.is_json:
        return 1
    if g.get("api_key") is None:
        return 1
    length = request.content_length
    if length is None:
        return _batch_cost_ceiling()
    if length > current_app.config["BATCH_MAX_BODY_BYTES"]:
        # Refused as too large (413) before the view reads it.
        return 1
    try:
        body = request.get_json(silent=True)
    except (HTTPException, RecursionError):
        # Malformed or nested past the parser's depth: the view answers 400.
        return 1
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return 1
    per_request = current_app.config["RATELIMIT_BATCH_ITEMS_PER_REQUEST"]
    return max(1, math.ceil(len(items) / per_request))


def _refuse_cost_above_limit(items, cost):
    """Answer 422 for a batch that counts for more than a whole limit.

    Such a request could never pass, however long the client waited, and
    each try would count as a breach towards a ban: say what would pass.
    """
    if cost <= 1:
        return
    smallest = min(items, key=lambda item: item.amount)
    if cost <= smallest.amount:
        return
    per_request = current_app.config["RATELIMIT_BATCH_ITEMS_PER_REQUEST"]
    raise Unprocessable(
        f"this batch counts as {cost} requests (one per {per_request} items), "
        f"more than this key's whole limit of {smallest}; send at most "
        f"{smallest.amount * per_request} items a batch"
    )


def _scope():
    return "emergency" if _is_emergency() else "standard"


def _on_breach(store, item):
    identity = _identity()
    key = g.get("api_key")
    try:
        strikes, level, seconds = store.strike(identity)
    except StoreUnavailable:
        strikes, level, seconds = None, 0, 0
    details = {"identity": identity, "limit": str(item)}
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


def _fail_closed():
    """Raise 503 if this endpoint must not run while the store is down."""
    if (
        request.blueprint in FAIL_CLOSED_BLUEPRINTS
        or request.endpoint in FAIL_CLOSED_ENDPOINTS
    ):
        raise ServiceUnavailable(
            "rate limiting is unavailable; try again shortly",
            headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
        )


def _banned(seconds):
    return Banned(
        f"too many requests over the limit: banned for {seconds} more seconds",
        headers={
            "Retry-After": str(seconds),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + seconds),
        },
    )


def refuse_banned(identities):
    """Refuse a request from a banned key or address.

    Raises:
        Banned: 429 with ``Retry-After``, the ban's remaining seconds.
        ServiceUnavailable: 503, the store is down and the endpoint fails
            closed (key management).
    """
    limiter = current_app.extensions.get("limiter")
    if limiter is None:
        return

    try:
        remaining = limiter.store.ban_remaining(identities)
    except StoreUnavailable:
        _fail_closed()
        return
    if remaining:
        raise _banned(remaining)


def check_request(app):
    """Identify the request's key, then refuse it if banned or over a limit.

    A failed authentication is recorded here, unless the request is
    banned, and raised later by :func:`app.auth.authorise`, so failed
    attempts count against the address's limit.

    Raises:
        Banned: 429, the key or address is banned.
        RateLimited: 429 with ``Retry-After``, a limit is exceeded.
        ServiceUnavailable: 503, the store is down and the endpoint fails
            closed (key management).
    """
    limiter = app.extensions.get("limiter")
    if limiter is None:
        auth.identify(app)
        auth.record_failure()
        return

    limiter.check(app)


class Limiter:
    """The per-request check and headers, with an in-memory fallback."""

    def __init__(self, settings):
        self.store = BanStore(
            settings["RATELIMIT_STORAGE_URL"],
            timeout_seconds=settings["RATELIMIT_STORAGE_TIMEOUT_SECONDS"],
            settings=settings,
        )
        self._memory = MovingWindowRateLimiter(MemoryStorage())

    def check(self, app):
        """Run the request's checks (see :func:`check_request`)."""
        address = address_identity()
        # A banned address never gets its key read from the database; a key
        # in the cache costs no read, and its address's ban is checked with
        # the limits below.
        auth.identify(app, before_read=lambda: refuse_banned([address]))
        key = g.api_key
        identities = [address]
        # A key banned for breaches of its standard limit still reaches the
        # emergency endpoint, which has a ceiling of its own: an emergency is
        # never refused for a client's polling mistakes. An address ban (key
        # guessing) applies everywhere.
        if key is not None and not _is_emergency():
            identities.append(key_identity(key))
        items = _parsed(_limit_value())
        cost = _cost()
        _refuse_cost_above_limit(items, cost)
        try:
            ban_seconds, exceeded, stats = self.store.check(
                identities, self._windows(items), cost=cost
            )
        except StoreUnavailable:
            _fail_closed()
            auth.record_failure()
            exceeded, stats = self._count_in_memory(items, cost)
        else:
            if ban_seconds:
                raise _banned(ban_seconds)
            auth.record_failure()

        shown = exceeded if exceeded is not None else 0
        remaining, reset_in = stats[shown]
        g.rate_limit = (items[shown].amount, remaining, time.time() + reset_in)
        if exceeded is not None:
            self._refuse(items[exceeded])

    @staticmethod
    def _windows(items):
        """Return ``(name, amount, seconds)`` of each limit of this request."""
        bucket = f"{_identity()}:{_scope()}"
        windows = []
        for item in items:
            name = f"{bucket}:{item.amount}/{item.multiples}/{item.GRANULARITY.name}"
            windows.append((name, item.amount, item.get_expiry()))
        return windows

    def _count_in_memory(self, items, cost):
        """Count the request in this process alone, as the store would."""
        identity, scope = _identity(), _scope()
        stats = []
        for index, item in enumerate(items):
            allowed = self._memory.hit(item, identity, scope, cost=cost)
            reset_at, remaining = self._memory.get_window_stats(item, identity, scope)
            stats.append((remaining, reset_at - time.time()))
            if not allowed:
                return index, stats
        return None, stats

    def _refuse(self, item):
        _on_breach(self.store, item)
        retry_after = max(1, math.ceil(_reset_at(g.rate_limit) - time.time()))
        raise RateLimited(
            f"rate limit exceeded: {item}",
            headers={"Retry-After": str(retry_after)},
            extra={"retry_after": retry_after},
        )


def _reset_at(rate_limit):
    """Return the whole epoch second by which the limit has room again."""
    return int(rate_limit[2] + 1)


def _add_headers(response):
    rate_limit = g.get("rate_limit")
    if rate_limit is None:
        return response

    amount, remaining, _reset = rate_limit
    reset_at = _reset_at(rate_limit)
    headers = response.headers
    headers["X-RateLimit-Limit"] = str(amount)
    headers["X-RateLimit-Remaining"] = str(max(0, remaining))
    headers["X-RateLimit-Reset"] = str(reset_at)
    retry_after = headers.get("Retry-After")
    if retry_after is not None and retry_after.isdigit():
        reset_at = max(reset_at, int(time.time()) + int(retry_after))
    headers["X-RateLimit-Retry-After"] = str(int(reset_at - time.time()))
    return response


def init_limiter(app):
    """Build the app's limiter; return it, or None when limits are off."""
    if not app.config["RATELIMIT_ENABLED"]:
        return None

    limiter = Limiter(app.config)
    app.extensions["limiter"] = limiter
    # The watch's views lift bans through the same store.
    app.extensions["ban_store"] = limiter.store
    app.after_request(_add_headers)
    return limiter
