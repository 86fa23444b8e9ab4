"""Key management endpoints under ``/v1/keys`` (permission ``manage:users``).

A new or rotated key is in the response body once; only its hash is kept.
Keys are named by their public prefix. Every change is a security event.
"""

from datetime import timedelta

from flask import Blueprint
from flask import current_app
from flask import g
from flask import request
from flask import url_for

from app.errors import Conflict
from app.errors import NotFound
from app.errors import Unprocessable
from app.keys import service
from app.keys.schemas import CreateKeySchema
from app.keys.schemas import KeySchema
from app.keys.schemas import RotateKeySchema
from app.requests import json_body
from security import events
from storage.db import session
from storage.models import utcnow

bp = Blueprint("keys", __name__, url_prefix="/v1/keys")

_create_schema = CreateKeySchema()
_rotate_schema = RotateKeySchema()
_key_schema = KeySchema()


def _expiry(days):
    return utcnow() + timedelta(days=days) if days else None


def _find(prefix):
    row = service.get_by_prefix(session, prefix=prefix)
    if row is None:
        raise NotFound("no key with that prefix")
    return row


def _audit(kind, row, **details):
    events.record(
        session,
        kind,
        key_prefix=row.prefix,
        client_address=request.remote_addr,
        endpoint=request.endpoint,
        severity="info",
        details={"by": g.api_key.prefix, "role": row.role, **details},
    )


def _dump(row, key=None):
    body = _key_schema.dump(service.to_dict(row))
    body["links"] = {"self": url_for("keys.get", prefix=row.prefix)}
    if key is not None:
        body["key"] = key
    return body


@bp.post("")
def create():
    """Create a key; the response holds it, the only time it is shown."""
    item = _create_schema.load(json_body())
    row, key = service.create(
        session,
        name=item["name"],
        role=item["role"],
        pepper=current_app.config["KEY_PEPPER"],
        expires_at=_expiry(item["expires_in_days"]),
    )
    _audit("key_created", row)
    return _dump(row, key), 201, {"Location": url_for("keys.get", prefix=row.prefix)}


@bp.get("")
def list_():
    """List every key, oldest first."""
    return {"items": [_dump(row) for row in service.list_(session)]}


@bp.get("/<prefix>")
def get(prefix):
    """Return one key's record."""
    return _dump(_find(prefix))


@bp.post("/<prefix>/rotate")
def rotate(prefix):
    """Issue a new secret; the old one keeps working for the grace period.

    Raises:
        NotFound: 404, no such key.
        Conflict: 409, the key is revoked.
        Unprocessable: 422, the grace period is over the maximum.
    """
    row = _find(prefix)
    item = _rotate_schema.load(json_body() if request.get_data() else {})
    settings = current_app.config
    grace = item["grace_seconds"]
    grace = settings["KEY_ROTATION_GRACE_SECONDS"] if grace is None else grace
    if grace > settings["KEY_MAX_GRACE_SECONDS"]:
        raise Unprocessable(
            "the grace period is too long",
            fields={"grace_seconds": [f"at most {settings['KEY_MAX_GRACE_SECONDS']}"]},
        )
    if row.revoked_at is not None:
        raise Conflict("a revoked key cannot be rotated; create a new one")

    row, key = service.rotate(
        session,
        row=row,
        pepper=settings["KEY_PEPPER"],
        grace_seconds=grace,
        expires_at=_expiry(item["expires_in_days"]),
    )
    _audit("key_rotated", row, grace_seconds=grace)
    return _dump(row, key)


@bp.delete("/<prefix>")
def revoke(prefix):
    """Revoke a key at once, its previous secret included."""
    row = service.revoke(session, row=_find(prefix))
    _audit("key_revoked", row)
    return _dump(row)
