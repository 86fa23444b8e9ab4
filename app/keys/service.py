"""Creating, listing and revoking API keys."""

from sqlalchemy import select

from security import keys
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
    """Revoke ``row`` now; later requests with it get 401."""
    row.revoked_at = row.revoked_at or utcnow()
    session.commit()
    return row
