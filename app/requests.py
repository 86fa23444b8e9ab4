"""Reading request bodies: JSON objects only, with clear errors."""

from flask import request
from werkzeug.exceptions import BadRequest

from app.errors import ApiError
from app.errors import Unprocessable
from app.errors import UnsupportedMediaType


class MalformedJson(ApiError):
    """The body claims to be JSON but does not parse."""

    status = 400
    code = "malformed_json"


def json_body():
    """Return the request's JSON object.

    Raises:
        UnsupportedMediaType: 415, the body is not ``application/json``.
        MalformedJson: 400, the body does not parse.
        Unprocessable: 422, the JSON is not an object.
    """
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    try:
        body = request.get_json()
    except BadRequest:
        raise MalformedJson("the body is not valid JSON") from None
    except RecursionError:
        # The parser gives up on arrays or objects nested thousands deep.
        raise MalformedJson("the body is nested too deeply to read") from None

    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object")
    return body
