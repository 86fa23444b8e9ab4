"""Log set-up: a request id on every line, and one JSON object a line.

The request id comes from the client's ``X-Request-ID`` (when it is a
plain token) or is made up by the API; it travels to the worker in the
task's headers, so the worker's lines for a job carry the id of the
request that submitted it.
"""

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC
from datetime import datetime

REQUEST_ID_HEADER = "X-Request-ID"
# The task header the request id travels in.
TASK_HEADER = "request_id"

_request_id = contextvars.ContextVar("request_id", default=None)
_ACCEPTED_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_NOISY_LOGGERS = ("urllib3", "kombu", "amqp", "tornado.access")


def clean_request_id(value):
    """Return ``value`` when it is a safe request id, else a fresh one."""
    if value and _ACCEPTED_ID.match(value):
        return value
    return uuid.uuid4().hex


def set_request_id(value):
    """Make ``value`` the request id of this thread's log lines; return a token."""
    return _request_id.set(value)


def reset_request_id(token):
    """Undo :func:`set_request_id`."""
    _request_id.reset(token)


def current_request_id():
    """Return the request id of the work in hand, or None."""
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    """Put ``request_id`` on every record ("-" outside a request or job)."""

    def filter(self, record):
        """Add the request id; keep every record."""
        record.request_id = _request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id."""

    def format(self, record):
        """Return the record as one line of JSON."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or "-",
        }
        for name in ("task_name", "task_id"):
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure(*, level, fmt):
    """Set up the root logger once per process: ``fmt`` is "text" or "json"."""
    root = logging.getLogger()
    handler = next(
        (h for h in root.handlers if getattr(h, "_aicrisisalert", False)), None
    )
    if handler is None:
        handler = logging.StreamHandler()
        handler._aicrisisalert = True
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    root.setLevel(level)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def log_format(settings):
    """Return the log format the settings ask for (json in production)."""
    if settings.get("LOG_FORMAT"):
        return settings["LOG_FORMAT"]
    return "json" if settings.get("ENV") == "production" else "text"
