"""Marshmallow schemas of the webhook endpoints, and the URL check they share."""

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import current_app
from flask import g
from marshmallow import RAISE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates

from security import roles
from security import urls
from storage.models import ALERT_EVENT_TYPES
from storage.models import WEBHOOK_EVENT_TYPES

logger = logging.getLogger(__name__)

# Seconds a registration waits on DNS before accepting the URL unresolved
# (every attempt checks what the name resolves to anyway).
_RESOLVE_TIMEOUT_SECONDS = 2.0
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")
ALERT_PREFIX = "alert."


def _may_see_alerts():
    key = getattr(g, "api_key", None)
    return key is not None and roles.allows(key.role, roles.MANAGE_USERS)


def check_webhook_url(value):
    """Refuse a URL that may not receive webhooks; raise ValidationError.

    The form is checked first; then the name is resolved and every address
    checked. A name that does not resolve right now is accepted (and
    checked again at each attempt).
    """
    allow_private = current_app.config["WEBHOOK_ALLOW_PRIVATE"]
    try:
        target = urls.check_url(value, allow_private=allow_private)
        if not target.is_literal:
            future = _resolver.submit(urls.resolve, target, allow_private=allow_private)
            future.result(timeout=_RESOLVE_TIMEOUT_SECONDS)
    except urls.UnsafeUrl as error:
        raise ValidationError(str(error)) from None
    except (OSError, FutureTimeout) as error:
        logger.info("webhooks: url not resolvable now, accepted error=%s", error)


def _check_event_types(values):
    problems = []
    known = (*WEBHOOK_EVENT_TYPES, *ALERT_EVENT_TYPES)
    for value in values:
        if value not in known:
            problems.append(f"'{value}' is not an event type; use {', '.join(known)}")
        elif value.startswith(ALERT_PREFIX) and not _may_see_alerts():
            problems.append(f"'{value}': alert events are for admin keys only")
    if len(set(values)) != len(values):
        problems.append("event types must not repeat")
    if problems:
        raise ValidationError(problems)


class EndpointCreateSchema(Schema):
    """Body of ``POST /v1/webhooks``."""

    class Meta:
        unknown = RAISE

    url = fields.String(required=True, validate=check_webhook_url)
    event_types = fields.List(
        fields.String(validate=validate.Length(max=64)),
        load_default=lambda: list(WEBHOOK_EVENT_TYPES),
        validate=[validate.Length(min=1, max=10), _check_event_types],
    )
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=200)
    )
    enabled = fields.Boolean(load_default=True)


class EndpointUpdateSchema(Schema):
    """Body of ``PATCH /v1/webhooks/<id>``: any of the create fields."""

    class Meta:
        unknown = RAISE

    url = fields.String(validate=check_webhook_url)
    event_types = fields.List(
        fields.String(validate=validate.Length(max=64)),
        validate=[validate.Length(min=1, max=10), _check_event_types],
    )
    description = fields.String(allow_none=True, validate=validate.Length(max=200))
    enabled = fields.Boolean()


class RotateSchema(Schema):
    """Body of ``POST /v1/webhooks/<id>/rotate-secret`` (may be empty)."""

    class Meta:
        unknown = RAISE

    overlap_seconds = fields.Integer(load_default=None, allow_none=True)

    @validates("overlap_seconds")
    def _check_overlap(self, value, **_kwargs):
        largest = current_app.config["WEBHOOK_MAX_SECRET_OVERLAP_SECONDS"]
        if value is not None and not 0 <= value <= largest:
            raise ValidationError(f"must be between 0 and {largest}")


class EndpointSchema(Schema):
    """An endpoint as its key sees it (the secret only where it is new)."""

    id = fields.String()
    url = fields.String()
    event_types = fields.List(fields.String())
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()
    secret_rotated_at = fields.AwareDateTime(allow_none=True)
    previous_secret_expires_at = fields.AwareDateTime(allow_none=True)
    secret = fields.String()
    links = fields.Dict(keys=fields.String(), values=fields.String())


class AttemptSchema(Schema):
    """One attempt: when, the status code, how long, and why it failed."""

    number = fields.Integer()
    started_at = fields.AwareDateTime()
    status_code = fields.Integer(allow_none=True)
    latency_ms = fields.Float()
    error = fields.String(allow_none=True)
    outcome = fields.String()


class DeliverySchema(Schema):
    """A delivery with its attempts."""

    id = fields.String()
    event_id = fields.String()
    event_type = fields.String()
    job_id = fields.String(allow_none=True)
    endpoint_id = fields.String(allow_none=True)
    target = fields.String()
    status = fields.String()
    attempt_count = fields.Integer()
    next_attempt_at = fields.AwareDateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    finished_at = fields.AwareDateTime(allow_none=True)
    redelivery_of = fields.String(allow_none=True)
    attempts = fields.List(fields.Nested(AttemptSchema))
    links = fields.Dict(keys=fields.String(), values=fields.String())
