"""Admin endpoints of the watch (alerts, actions, evidence) and /metrics."""

import redis
from flask import Blueprint
from flask import Response
from flask import current_app
from flask import g
from flask import request
from sqlalchemy import func
from sqlalchemy import select

from app.errors import ApiError
from app.errors import NotFound
from app.errors import ServiceUnavailable
from app.errors import Unprocessable
from monitoring import alerts
from monitoring import metrics
from monitoring import response
from monitoring import state
from storage.db import session
from storage.models import Job
from storage.monitoring import Evidence
from storage.monitoring import ResponseAction

bp = Blueprint("watch", __name__)

_MAX_LIMIT = 500
_DEFAULT_LIMIT = 50
# Queues whose depth /metrics reports (the broker's list per queue).
_QUEUES = ("emergency", "standard", "maintenance")


class Conflict(ApiError):
    """The action cannot be done in the resource's current state."""

    status = 409
    code = "conflict"


# The largest row id a database column holds (a signed 64-bit integer): a
# larger one in a path is a 404 from the router, not an overflow below.
_MAX_ID = 2**63 - 1


def _limit():
    raw = request.args.get("limit", str(_DEFAULT_LIMIT))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _MAX_LIMIT:
        raise Unprocessable(
            f"limit must be a whole number from 1 to {_MAX_LIMIT}",
            fields={"limit": [f"between 1 and {_MAX_LIMIT}"]},
        )
    return int(raw)


@bp.get("/v1/alerts")
def list_alerts():
    """Return the latest alerts, newest first (``?limit=``, ``?type=``)."""
    rows = alerts.list_(
        session, limit=_limit(), alert_type=request.args.get("type") or None
    )
    return {"items": [alerts.to_dict(row) for row in rows]}


@bp.get(f"/v1/alerts/<int(max={_MAX_ID}):alert_id>")
def get_alert(alert_id):
    """Return one alert with the actions taken on it."""
    row = alerts.get(session, alert_id=alert_id)
    if row is None:
        raise NotFound("no such alert")
    body = alerts.to_dict(row)
    body["actions"] = [
        response.action_dict(action)
        for action in response.list_actions(session, limit=_MAX_LIMIT, alert_id=row.id)
    ]
    return body


@bp.get("/v1/actions")
def list_actions():
    """Return the latest automatic and admin actions, newest first."""
    rows = response.list_actions(session, limit=_limit())
    return {"items": [response.action_dict(row) for row in rows]}


@bp.post(f"/v1/actions/<int(max={_MAX_ID}):action_id>/reverse")
def reverse_action(action_id):
    """Undo an action (lift a block, restore a key, end detailed logging).

    Answers 404 for an unknown action and 409 for one reversed before or
    one that changed nothing (evidence).
    """
    row = session.get(ResponseAction, action_id)
    if row is None:
        raise NotFound("no such action")
    try:
        response.reverse(
            session,
            state.client_for(current_app.config),
            row,
            by=f"key:{g.api_key.prefix}",
        )
    except response.ResponseError as error:
        raise Conflict(str(error)) from None
    return response.action_dict(row)


@bp.get(f"/v1/evidence/<int(max={_MAX_ID}):evidence_id>")
def get_evidence(evidence_id):
    """Return an evidence record: the alert, its window, requests and events."""
    row = session.get(Evidence, evidence_id)
    if row is None:
        raise NotFound("no such evidence")
    return response.evidence_dict(row)


@bp.get("/metrics")
def metrics_page():
    """Return the metrics in the Prometheus text format."""
    counts = dict(
        session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    )
    try:
        body = metrics.render(
            state.client_for(current_app.config), queues=_QUEUES, jobs_by_status=counts
        )
    except redis.RedisError:
        raise ServiceUnavailable(
            "metrics are unavailable: Redis does not answer",
            headers={"Retry-After": "5"},
        ) from None
    return Response(body, mimetype=None, content_type=metrics.CONTENT_TYPE)
