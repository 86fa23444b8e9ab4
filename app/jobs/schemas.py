"""Marshmallow schemas of the classification endpoints."""

from flask import current_app
from marshmallow import RAISE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import post_load
from marshmallow import validates

from app.webhooks.schemas import check_webhook_url
from security.validation import location_problems
from security.validation import source_problems
from security.validation import text_problems
from storage.serialize import JobSchema  # noqa: F401  (re-exported)
from storage.serialize import ResultSchema  # noqa: F401  (re-exported)


def _refuse(problems):
    if problems:
        raise ValidationError(problems)


class SubmitSchema(Schema):
    """Body of a submit: the message and where it came from."""

    class Meta:
        unknown = RAISE

    text = fields.String(required=True)
    source = fields.String(load_default=None, allow_none=True)
    location = fields.String(load_default=None, allow_none=True)
    # Where to POST the signed classification.succeeded/failed event.
    callback_url = fields.String(
        load_default=None, allow_none=True, validate=check_webhook_url
    )

    @validates("text")
    def _check_text(self, value, **_kwargs):
        _refuse(
            text_problems(
                value,
                min_chars=current_app.config["TEXT_MIN_CHARS"],
                max_chars=current_app.config["TEXT_MAX_CHARS"],
            )
        )

    @validates("source")
    def _check_source(self, value, **_kwargs):
        if value is not None:
            _refuse(source_problems(value))

    @validates("location")
    def _check_location(self, value, **_kwargs):
        if value is not None:
            _refuse(location_problems(value))

    @post_load
    def _trim(self, item, **_kwargs):
        for name in ("source", "location"):
            if item.get(name) is not None:
                item[name] = item[name].strip()
        return item
