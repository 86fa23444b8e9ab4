"""Endpoints: register webhooks per API key; list and redeliver deliveries.

A key sees only its own endpoints and deliveries; anything else is 404.
"""

import uuid

from flask import Blueprint
from flask import current_app
from flask import g
from flask import request
from flask import url_for

from app.errors import Conflict
from app.errors import NotFound
from app.errors import Unprocessable
from app.requests import json_body
from app.webhooks import service
from app.webhooks.schemas import DeliverySchema
from app.webhooks.schemas import EndpointCreateSchema
from app.webhooks.schemas import EndpointSchema
from app.webhooks.schemas import EndpointUpdateSchema
from app.webhooks.schemas import RotateSchema
from storage import webhooks
from storage.db import session
from storage.models import DELIVERY_STATUSES

bp = Blueprint("webhooks", __name__, url_prefix="/v1")

_create_schema = EndpointCreateSchema()
_update_schema = EndpointUpdateSchema()
_rotate_schema = RotateSchema()
_endpoint_schema = EndpointSchema()
_delivery_schema = DeliverySchema()
_DEFAULT_LIMIT = 50
_MAX_LIMIT = 100
_NO_ENDPOINT = "no such webhook endpoint"
_NO_DELIVERY = "no such delivery"


def _is_uuid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _endpoint_or_404(endpoint_id):
    endpoint = None
    if _is_uuid(endpoint_id):
        endpoint = service.get(
            session, api_key_id=g.api_key.id, endpoint_id=endpoint_id
        )
    if endpoint is None:
        raise NotFound(_NO_ENDPOINT)
    return endpoint


def _dump_endpoint(endpoint, *, secret=False):
    url = url_for("webhooks.get", endpoint_id=endpoint.id)
    return _endpoint_schema.dump(service.to_dict(endpoint, self_url=url, secret=secret))


def _dump_deliveries(rows):
    items = service.delivery_dicts(
        session,
        rows,
        self_url_for=lambda delivery_id: url_for(
            "webhooks.get_delivery", delivery_id=delivery_id
        ),
    )
    return [_delivery_schema.dump(item) for item in items]


def _delivery_filters():
    status = request.args.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise Unprocessable(
            "unknown status filter",
            fields={"status": [f"one of {', '.join(DELIVERY_STATUSES)}"]},
        )
    raw = request.args.get("limit", str(_DEFAULT_LIMIT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _MAX_LIMIT:
        raise Unprocessable(
            "limit out of range", fields={"limit": [f"between 1 and {_MAX_LIMIT}"]}
        )
    return status, int(raw)


@bp.post("/webhooks")
def create():
    """Register an endpoint; the response carries its ``secret``, once."""
    fields = _create_schema.load(json_body())
    largest = current_app.config["WEBHOOK_MAX_ENDPOINTS_PER_KEY"]
    if service.count(session, api_key_id=g.api_key.id) >= largest:
        raise Conflict(f"a key may register at most {largest} webhook endpoints")
    endpoint = service.create(session, api_key_id=g.api_key.id, **fields)
    url = url_for("webhooks.get", endpoint_id=endpoint.id)
    return _dump_endpoint(endpoint, secret=True), 201, {"Location": url}


@bp.get("/webhooks")
def list_():
    """Return the key's endpoints (never their secrets)."""
    endpoints = service.list_(session, api_key_id=g.api_key.id)
    return {"items": [_dump_endpoint(endpoint) for endpoint in endpoints]}


@bp.get("/webhooks/<endpoint_id>")
def get(endpoint_id):
    """Return one of the key's endpoints."""
    return _dump_endpoint(_endpoint_or_404(endpoint_id))


@bp.patch("/webhooks/<endpoint_id>")
def update(endpoint_id):
    """Change an endpoint's URL, event types, description or enabled flag."""
    endpoint = _endpoint_or_404(endpoint_id)
    changes = _update_schema.load(json_body())
    return _dump_endpoint(service.update(session, endpoint=endpoint, changes=changes))


@bp.delete("/webhooks/<endpoint_id>")
def delete(endpoint_id):
    """Delete an endpoint; deliveries still pending to it are dead-lettered."""
    service.delete(session, endpoint=_endpoint_or_404(endpoint_id))
    return "", 204


@bp.post("/webhooks/<endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id):
    """Issue a new secret; the old one also signs until the overlap ends."""
    endpoint = _endpoint_or_404(endpoint_id)
    body = json_body() if request.get_data() else {}
    overlap = _rotate_schema.load(body)["overlap_seconds"]
    if overlap is None:
        overlap = current_app.config["WEBHOOK_SECRET_OVERLAP_SECONDS"]
    endpoint = service.rotate_secret(
        session, endpoint=endpoint, overlap_seconds=overlap
    )
    return _dump_endpoint(endpoint, secret=True)


@bp.get("/webhooks/<endpoint_id>/deliveries")
def list_deliveries(endpoint_id):
    """Return the endpoint's deliveries, newest first (``?status=``, ``?limit=``)."""
    endpoint = _endpoint_or_404(endpoint_id)
    status, limit = _delivery_filters()
    rows = service.list_deliveries(
        session,
        api_key_id=g.api_key.id,
        endpoint_id=endpoint.id,
        status=status,
        limit=limit,
    )
    return {"items": _dump_deliveries(rows)}


@bp.get("/deliveries")
def list_all_deliveries():
    """Return the key's deliveries to endpoints and callback URLs alike."""
    status, limit = _delivery_filters()
    rows = service.list_deliveries(
        session, api_key_id=g.api_key.id, status=status, limit=limit
    )
    return {"items": _dump_deliveries(rows)}


def _delivery_or_404(delivery_id):
    found = None
    if _is_uuid(delivery_id):
        found = service.get_delivery(
            session, api_key_id=g.api_key.id, delivery_id=delivery_id
        )
    if found is None:
        raise NotFound(_NO_DELIVERY)
    return found


@bp.get("/deliveries/<delivery_id>")
def get_delivery(delivery_id):
    """Return one delivery with its attempts."""
    (item,) = _dump_deliveries([_delivery_or_404(delivery_id)])
    return item


@bp.post("/deliveries/<delivery_id>/redeliver")
def redeliver(delivery_id):
    """Send a finished delivery's event again, with the same event id."""
    delivery, event = _delivery_or_404(delivery_id)
    if delivery.status == "pending":
        raise Conflict("the delivery is still pending; it will be attempted")
    _url, _secrets, problem = webhooks.target_of(session, delivery)
    if problem:
        raise Conflict(f"cannot redeliver: {problem}")

    # Due at once: the dispatcher (every WEBHOOK_DISPATCH_INTERVAL_SECONDS)
    # enqueues it, so the web process never publishes deliveries itself.
    copy = webhooks.redeliver(session, delivery=delivery)
    url = url_for("webhooks.get_delivery", delivery_id=copy.id)
    (item,) = _dump_deliveries([(copy, event)])
    return item, 202, {"Location": url}
