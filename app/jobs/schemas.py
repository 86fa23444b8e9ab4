"""Marshmallow schemas of the classification endpoints."""

from flask import current_app
from marshmallow import RAISE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import post_load
from marshmallow import validates

from security.validation import location_problems
from security.validation import source_problems
from security.validation import text_problems


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


class ResultSchema(Schema):
    """The model's answer for one job."""

    category = fields.String()
    confidence = fields.Float()
    scores = fields.Dict(keys=fields.String(), values=fields.Float())
    model_version = fields.String()
    truncated = fields.Boolean()
    needs_review = fields.Boolean()
    queue_ms = fields.Float()
    inference_ms = fields.Float()


class JobSchema(Schema):
    """A job as clients see it."""

    id = fields.String()
    status = fields.String()
    queue = fields.String()
    source = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(default_timezone=None)
    started_at = fields.AwareDateTime(allow_none=True)
    finished_at = fields.AwareDateTime(allow_none=True)
    result = fields.Nested(ResultSchema, allow_none=True)
    error = fields.String(allow_none=True)
    links = fields.Dict(keys=fields.String(), values=fields.String())
