"""Marshmallow schemas of the key management endpoints."""

from marshmallow import RAISE
from marshmallow import Schema
from marshmallow import fields
from marshmallow import validate

from security.roles import ROLES

# Longest lifetime a key may be given, in days (ten years).
MAX_EXPIRES_IN_DAYS = 3650


class CreateKeySchema(Schema):
    """Body of a key creation."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    expires_in_days = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_EXPIRES_IN_DAYS),
    )


class RotateKeySchema(Schema):
    """Body of a rotation; both fields optional."""

    class Meta:
        unknown = RAISE

    grace_seconds = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0)
    )
    expires_in_days = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_EXPIRES_IN_DAYS),
    )


class KeySchema(Schema):
    """A key as admins see it: never its secret or hash."""

    prefix = fields.String()
    name = fields.String()
    role = fields.String()
    state = fields.String()
    created_at = fields.AwareDateTime()
    expires_at = fields.AwareDateTime(allow_none=True)
    revoked_at = fields.AwareDateTime(allow_none=True)
    rotated_at = fields.AwareDateTime(allow_none=True)
    previous_valid_until = fields.AwareDateTime(allow_none=True)
    last_used_at = fields.AwareDateTime(allow_none=True)
    use_count = fields.Integer()
