"""``/health`` says the process is up; ``/ready`` checks what it depends on."""

import logging

import redis
from flask import Blueprint
from flask import current_app
from sqlalchemy import text

from storage.db import session

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    """Answer 200 while the process can serve requests at all."""
    return {"status": "ok"}


def _check_database():
    try:
        session.execute(text("SELECT 1"))
        return None
    except Exception as error:  # noqa: BLE001  (any failure means not ready)
        session.rollback()
        return type(error).__name__


def _check_broker():
    timeout = current_app.config["BROKER_TIMEOUT_SECONDS"]
    client = redis.Redis.from_url(
        current_app.config["BROKER_URL"],
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )
    try:
        client.ping()
        return None
    except redis.RedisError as error:
        return type(error).__name__
    finally:
        client.close()


@bp.get("/ready")
def ready():
    """Answer 200 when Redis and the database answer, else 503 naming the part.

    Not checked: whether the classify workers are up and have loaded the
    model. Each worker process loads it in the background as it starts,
    so just after start-up this answers 200 a few seconds before the
    first job can finish (2.9 s measured on the 2-core machine).
    """
    checks = {"database": _check_database(), "redis": _check_broker()}
    failing = sorted(name for name, problem in checks.items() if problem)
    body = {
        "status": "ready" if not failing else "unavailable",
        "checks": {name: problem or "ok" for name, problem in checks.items()},
    }
    if failing:
        logger.warning("ready: failing=%s", ",".join(failing))
        body["failing"] = failing
        return body, 503, {"Retry-After": "5"}
    return body
