"""Authentication by API key and the permission each endpoint needs.

Every endpoint is listed in ``ENDPOINT_PERMISSIONS``: the permission it
needs, or ``PUBLIC``. The factory refuses to start if a route is missing
from the table, so no endpoint can be reachable by accident.

Checking runs in two steps around the rate limiter: :func:`identify` finds
the key (remembering, not raising, a failure) so that the limiter can
count by key, or by client address when there is none; :func:`authorise`
then refuses with 401 or 403. So failed attempts are rate-limited too. A
failure is written as a security event by :func:`record_failure`, which
the limiter calls once it knows the request is not banned: a banned
client's flood of bad keys is refused without a write per request.

Credentials come only from the ``Authorization`` header: no endpoint reads
cookies, so a browser cannot be tricked into sending them (no CSRF
surface; ``tests/security/test_headers.py`` checks it).
"""

import logging

from flask import g
from flask import request
from sqlalchemy import select

from app.errors import Forbidden
from app.errors import Unauthorized
from monitoring import requestlog
from security import events
from security import keycache
from security import keys
from security import roles
from storage.db import session
from storage.jobs import as_utc
from storage.models import ApiKey
from storage.models import utcnow

logger = logging.getLogger(__name__)

PUBLIC = None
# Any valid key, whatever its role.
ANY_KEY = "any:key"

ENDPOINT_PERMISSIONS = {
    "health.health": PUBLIC,
    "health.ready": PUBLIC,
    "docs.openapi": PUBLIC,
    "jobs.submit": roles.CREATE_CLASSIFICATIONS,
    "jobs.submit_emergency": roles.CREATE_CLASSIFICATIONS,
    "jobs.submit_batch": roles.CREATE_CLASSIFICATIONS,
    "jobs.get": roles.READ_CLASSIFICATIONS,
    "jobs.list_": roles.READ_CLASSIFICATIONS,
    "model.get": ANY_KEY,
    "keys.create": roles.MANAGE_USERS,
    "keys.list_": roles.MANAGE_USERS,
    "keys.get": roles.MANAGE_USERS,
    "keys.rotate": roles.MANAGE_USERS,
    "keys.revoke": roles.MANAGE_USERS,
    # A key manages its own webhooks: whoever may submit may be called back.
    "webhooks.create": roles.CREATE_CLASSIFICATIONS,
    "webhooks.list_": roles.CREATE_CLASSIFICATIONS,
    "webhooks.get": roles.CREATE_CLASSIFICATIONS,
    "webhooks.update": roles.CREATE_CLASSIFICATIONS,
    "webhooks.delete": roles.CREATE_CLASSIFICATIONS,
    "webhooks.rotate_secret": roles.CREATE_CLASSIFICATIONS,
    "webhooks.list_deliveries": roles.CREATE_CLASSIFICATIONS,
    "webhooks.list_all_deliveries": roles.CREATE_CLASSIFICATIONS,
    "webhooks.get_delivery": roles.CREATE_CLASSIFICATIONS,
    "webhooks.redeliver": roles.CREATE_CLASSIFICATIONS,
    "watch.list_alerts": roles.MANAGE_USERS,
    "watch.get_alert": roles.MANAGE_USERS,
    "watch.list_actions": roles.MANAGE_USERS,
    "watch.reverse_action": roles.MANAGE_USERS,
    "watch.get_evidence": roles.MANAGE_USERS,
    "watch.lift_ban": roles.MANAGE_USERS,
    "watch.metrics_page": roles.VIEW_METRICS,
}

_MISSING_KEY = "an API key is required: send 'Authorization: Bearer <key>'"
_BAD_KEY = "the API key is not valid"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="aicrisisalert"'}
# Compared against when no row has the prefix, so that an unknown prefix
# costs the same work as a known one.
_NO_HASH = "0" * 64


def check_routes(app):
    """Raise if a route of ``app`` has no entry in the permission table."""
    missing = sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and rule.endpoint not in ENDPOINT_PERMISSIONS
    )
    if missing:
        raise RuntimeError(f"auth: no permission declared for {missing}")


def is_public(endpoint):
    """Return whether ``endpoint`` needs no key (unknown endpoints count as public).

    An unknown endpoint is a 404 or 405 raised by routing; it reaches no view.
    """
    return endpoint is None or ENDPOINT_PERMISSIONS.get(endpoint) is PUBLIC


def _presented_key():
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized(_MISSING_KEY, headers=_CHALLENGE)
    return value.strip()


def _refusal(row, matched, now):
    """Return why a key is refused, or None when it may be used."""
    if row is None or matched is None:
        return "unknown key or wrong secret"
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        return "expired"
    if matched == 1 and not (
        row.previous_valid_until and as_utc(row.previous_valid_until) > now
    ):
        return "rotated out: the grace period of the old secret is over"
    return None


class _Refused(Unauthorized):
    """A 401 that remembers what to record: the key's prefix and the reason."""

    def __init__(self, prefix, reason, message):
        super().__init__(message, headers=_CHALLENGE)
        self.prefix = prefix
        self.reason = reason


def authenticate(pepper, *, before_read=None):
    """Return the request's live key, a :class:`~security.keycache.KeySnapshot`.

    The current secret always works; the previous one (after a rotation)
    only until its grace period ends. The failure is not recorded here
    (see :func:`record_failure`).

    Args:
        pepper: the HMAC pepper keys are stored under.
        before_read: called before the key's row is read from the database
            (not when this process has it cached); it may raise to refuse
            the request first.

    Raises:
        Unauthorized: no key, a malformed key, or one that is unknown,
            revoked, expired or rotated out.
    """
    try:
        presented = _presented_key()
    except Unauthorized as error:
        raise _Refused(None, "no bearer key", error.message) from None
    prefix = keys.parse_prefix(presented)
    row = _key_snapshot(prefix, before_read) if prefix is not None else None
    # Hash and compare even when no row was found, so timing does not
    # reveal which prefixes exist.
    candidates = (
        [_NO_HASH, None] if row is None else [row.key_hash, row.previous_key_hash]
    )
    matched = keys.matching_hash(presented, candidates, pepper)
    now = utcnow()
    reason = _refusal(row, matched, now)
    if reason is not None:
        raise _Refused(prefix, reason, _BAD_KEY)

    if matched == 1:
        logger.info("auth: previous secret used prefix=%s", row.prefix)
    requestlog.count_key_use(row.id, now)
    return row


def _key_snapshot(prefix, before_read=None):
    """Return the snapshot of the key with ``prefix``, cached or read, or None."""
    generation = g.get("key_generation")
    snapshot = keycache.cache.get(prefix, generation)
    if snapshot is not keycache.MISS:
        return snapshot

    if before_read is not None:
        before_read()
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    snapshot = keycache.KeySnapshot.of(row) if row is not None else None
    keycache.cache.put(prefix, snapshot, generation)
    return snapshot


def record_failure():
    """Record the request's failed authentication, if any, as a security event."""
    error = g.get("auth_error")
    if error is None or g.get("auth_failure_recorded"):
        return

    g.auth_failure_recorded = True
    events.record(
        session,
        "auth_failed",
        key_prefix=error.prefix,
        client_address=request.remote_addr,
        endpoint=request.endpoint,
        details={"reason": error.reason, "method": request.method},
    )


def identify(app, *, before_read=None):
    """Find the request's key, if its endpoint needs one, into ``g.api_key``.

    A failure is kept in ``g.auth_error`` for :func:`record_failure` to
    record and :func:`authorise` to raise once the rate limiter has counted
    the request. ``before_read`` is passed to :func:`authenticate`.
    """
    g.api_key = None
    g.auth_error = None
    if is_public(request.endpoint):
        return

    try:
        g.api_key = authenticate(app.config["KEY_PEPPER"], before_read=before_read)
    except _Refused as error:
        g.auth_error = error


def authorise():
    """Refuse the request unless its key holds its endpoint's permission.

    Raises:
        Unauthorized: 401, no valid key (see :func:`authenticate`).
        Forbidden: 403, the key's role lacks the permission.
    """
    if is_public(request.endpoint):
        return
    if g.auth_error is not None:
        raise g.auth_error

    key = g.api_key
    permission = ENDPOINT_PERMISSIONS[request.endpoint]
    if permission != ANY_KEY and not roles.allows(key.role, permission):
        events.record(
            session,
            "forbidden",
            key_prefix=key.prefix,
            client_address=request.remote_addr,
            endpoint=request.endpoint,
            details={"role": key.role, "permission": permission},
        )
        raise Forbidden(f"role '{key.role}' lacks the permission '{permission}'")


def can_read_all(key):
    """Return whether ``key`` may read every job, not only its own."""
    return roles.allows(key.role, roles.READ_ALL_CLASSIFICATIONS)
