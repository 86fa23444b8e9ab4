"""Creating, listing, rotating and revoking API keys."""

from datetime import timedelta

from sqlalchemy import select

from security import keys
from storage.jobs import as_utc
from storage.models import ApiKey
from storage.models import utcnow


def create(session, *, name, role, pepper, expires_at=None):
    """Create a key; return ``(row, key)``. The key itself is never stored."""
    key, prefix = keys.generate()
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=keys.hash_key(key, pepper),
        role=role,
        expires_at=expires_at,
        use_count=0,
    )
    session.add(row)
    session.commit()
    return row, key


def list_(session):
    """Return every key row, oldest first."""
    return session.scalars(select(ApiKey).order_by(ApiKey.id)).all()


def get_by_prefix(session, *, prefix):
    """Return the key row with ``prefix``, or None."""
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()


def revoke(session, *, row):
    """Revoke ``row`` now; later requests with it, old secret or new, get 401."""
    row.revoked_at = row.revoked_at or utcnow()
    row.previous_key_hash = None
    row.previous_valid_until = None
    session.commit()
    return row


def rotate(session, *, row, pepper, grace_seconds, expires_at=None):
    """Give ``row`` a new secret; the old one works ``grace_seconds`` longer.

    The prefix, role, usage and jobs stay with the row, so a client that
    switches keys keeps its jobs and its rate-limit bucket. A second
    rotation inside the grace period ends the first secret's grace at once:
    only the newest two secrets ever work. ``expires_at``, when given,
    replaces the key's expiry. Returns ``(row, key)``.
    """
    key, _prefix = keys.generate(prefix=row.prefix)
    now = utcnow()
    if grace_seconds > 0:
        row.previous_key_hash = row.key_hash
        row.previous_valid_until = now + timedelta(seconds=grace_seconds)
    else:
        row.previous_key_hash = None
        row.previous_valid_until = None
    row.key_hash = keys.hash_key(key, pepper)
    row.rotated_at = now
    if expires_at is not None:
        row.expires_at = expires_at
    session.commit()
    return row, key


def state(row, *, now=None):
    """Return ``"revoked"``, ``"expired"`` or ``"active"``."""
    now = now or utcnow()
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and as_utc(row.expires_at) <= now:
        return "expired"
    return "active"


def to_dict(row):
    """Return what may be shown of a key: never its secret or hash."""
    return {
        "prefix": row.prefix,
        "name": row.name,
        "role": row.role,
        "state": state(row),
        "created_at": as_utc(row.created_at),
        "expires_at": as_utc(row.expires_at),
        "revoked_at": as_utc(row.revoked_at),
        "rotated_at": as_utc(row.rotated_at),
        "previous_valid_until": as_utc(row.previous_valid_until),
        "last_used_at": as_utc(row.last_used_at),
        "use_count": row.use_count,
    }
