"""Domain errors and the one JSON error envelope every failure uses.

Every error body reads ``{"error": {"code", "message", "fields"?}}``, and
a refusal by the rate limiter adds ``retry_after``.
"""

import logging

from flask import jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status = 400
    code = "bad_request"

    def __init__(self, message, *, fields=None, headers=None, extra=None):
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.headers = headers or {}
        # Members the envelope carries beside code and message.
        self.extra = extra or {}


class Unauthorized(ApiError):
    """The request carries no valid API key."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """The key is valid but its role lacks the permission."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """The resource does not exist (or is not the caller's)."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The request clashes with the resource's current state or a limit."""

    status = 409
    code = "conflict"


class UnsupportedMediaType(ApiError):
    """The body is not JSON."""

    status = 415
    code = "unsupported_media_type"


class Unprocessable(ApiError):
    """The body is JSON but its content is invalid."""

    status = 422
    code = "validation_failed"


class ServiceUnavailable(ApiError):
    """A backing service (broker, database) is down; try again later."""

    status = 503
    code = "service_unavailable"


def error_response(status, code, message, *, fields=None, headers=None, extra=None):
    """Return the envelope as a response."""
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    if extra:
        body.update(extra)
    response = jsonify(error=body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _code_for(exception):
    return (exception.name or "error").lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app):
    """Map domain errors, validation errors and HTTP errors to the envelope."""

    @app.errorhandler(ApiError)
    def handle_api_error(error):
        log = logger.warning if error.status < 500 else logger.error
        log("api: %s status=%d", error.code, error.status)
        return error_response(
            error.status,
            error.code,
            error.message,
            fields=error.fields,
            headers=error.headers,
            extra=error.extra,
        )

    @app.errorhandler(ValidationError)
    def handle_validation_error(error):
        messages = error.messages
        if not isinstance(messages, dict):
            messages = {"_schema": messages}
        return error_response(
            422, "validation_failed", "the request body is invalid", fields=messages
        )

    @app.errorhandler(HTTPException)
    def handle_http_exception(error):
        headers = {}
        if error.code == 405 and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return error_response(
            error.code or 500, _code_for(error), error.description, headers=headers
        )

    @app.errorhandler(Exception)
    def handle_unexpected(error):
        from flask import request

        logger.exception(
            "api: unhandled error path=%s method=%s", request.path, request.method
        )
        return error_response(500, "internal_error", "an internal error occurred")
