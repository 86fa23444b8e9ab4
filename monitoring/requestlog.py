"""Writing request-log rows: one per API request, never the message's text."""

import logging

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError

from storage.db import get_engine
from storage.models import utcnow
from storage.monitoring import RequestLog

logger = logging.getLogger(__name__)


def record(**values):
    """Insert one request-log row on a connection of its own.

    The request's own session may hold a failed transaction (the request
    that errored), so the row is written apart from it. A database fault
    is logged and swallowed: logging a request must never fail it.
    """
    values.setdefault("created_at", utcnow())
    try:
        with get_engine().begin() as connection:
            connection.execute(insert(RequestLog), values)
    except SQLAlchemyError as error:
        logger.warning("requestlog: not written error=%s", type(error).__name__)
