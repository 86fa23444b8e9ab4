"""Authentication by API key and the permission each endpoint needs.

Every endpoint is listed in ``ENDPOINT_PERMISSIONS``: the permission it
needs, or ``PUBLIC``. The factory refuses to start if a route is missing
from the table, so no endpoint can be reachable by accident.
"""

import logging

from flask import g
from flask import request
from sqlalchemy import select
from sqlalchemy import update

from app.errors import Forbidden
from app.errors import Unauthorized
from security import events
from security import keys
from security import roles
from storage.db import session
from storage.models import ApiKey
from storage.models import utcnow

logger = logging.getLogger(__name__)

PUBLIC = None

ENDPOINT_PERMISSIONS = {
    "health.health": PUBLIC,
    "health.ready": PUBLIC,
    "jobs.submit": roles.CREATE_CLASSIFICATIONS,
    "jobs.submit_emergency": roles.CREATE_CLASSIFICATIONS,
    "jobs.get": roles.READ_CLASSIFICATIONS,
    "jobs.list_": roles.READ_CLASSIFICATIONS,
    "watch.list_alerts": roles.MANAGE_USERS,
    "watch.get_alert": roles.MANAGE_USERS,
    "watch.list_actions": roles.MANAGE_USERS,
    "watch.reverse_action": roles.MANAGE_USERS,
    "watch.get_evidence": roles.MANAGE_USERS,
    "watch.metrics_page": roles.VIEW_METRICS,
}

_MISSING_KEY = "an API key is required: send 'Authorization: Bearer <key>'"
_BAD_KEY = "the API key is not valid"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="aicrisisalert"'}


def check_routes(app):
    """Raise if a route of ``app`` has no entry in the permission table."""
    missing = sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and rule.endpoint not in ENDPOINT_PERMISSIONS
    )
    if missing:
        raise RuntimeError(f"auth: no permission declared for {missing}")


def _presented_key():
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized(_MISSING_KEY, headers=_CHALLENGE)
    return value.strip()


def authenticate(pepper):
    """Return the live ApiKey row for the request's key.

    Raises:
        Unauthorized: no key, a malformed key, or one that is unknown,
            revoked or expired.
    """
    presented = _presented_key()
    prefix = keys.parse_prefix(presented)
    row = None
    if prefix is not None:
        row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    # Hash even when no row was found, so timing does not reveal prefixes.
    stored = row.key_hash if row is not None else "0" * 64
    valid = keys.matches(presented, stored, pepper) and row is not None
    now = utcnow()
    if valid and row.revoked_at is not None:
        valid = False
    if valid and row.expires_at is not None and _aware(row.expires_at) <= now:
        valid = False
    if not valid:
        events.record(
            session,
            "auth_failed",
            key_prefix=prefix,
            client_address=request.remote_addr,
            endpoint=request.endpoint,
            details={"reason": "unknown, revoked or expired key"},
        )
        raise Unauthorized(_BAD_KEY, headers=_CHALLENGE)

    session.execute(
        update(ApiKey)
        .where(ApiKey.id == row.id)
        .values(last_used_at=now, use_count=ApiKey.use_count + 1)
    )
    session.commit()
    return row


def _aware(moment):
    from storage.jobs import as_utc

    return as_utc(moment)


def enforce(app):
    """Check the request's key against its endpoint's permission."""
    permission = ENDPOINT_PERMISSIONS.get(request.endpoint, PUBLIC)
    if request.endpoint is None or permission is PUBLIC:
        return

    key = authenticate(app.config["KEY_PEPPER"])
    g.api_key = key
    if not roles.allows(key.role, permission):
        logger.warning(
            "auth: forbidden prefix=%s role=%s permission=%s",
            key.prefix,
            key.role,
            permission,
        )
        raise Forbidden(f"role '{key.role}' lacks the permission '{permission}'")
