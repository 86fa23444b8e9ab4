"""``GET /v1/model``: the served artifact's version, scores and card."""

from functools import lru_cache

from flask import Blueprint

from classifier.artifact import describe

bp = Blueprint("model", __name__, url_prefix="/v1")


@lru_cache(maxsize=1)
def _description():
    # The artifact does not change while the process runs.
    return describe()


@bp.get("/model")
def get():
    """Return the model card and scores of the artifact the workers load."""
    return _description()
