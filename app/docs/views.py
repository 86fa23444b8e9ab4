"""``GET /openapi.json``: the API described as OpenAPI 3."""

from flask import Blueprint
from flask import current_app

from app.docs import spec

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi():
    """Return the OpenAPI 3 document, built once per process."""
    document = current_app.extensions.get("openapi")
    if document is None:
        document = current_app.extensions["openapi"] = spec.build(current_app)
    return document
