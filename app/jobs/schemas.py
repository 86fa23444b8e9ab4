"""Marshmallow schemas of the classification endpoints."""

from flask import current_app
from marshmallow import RAISE
from marshmallow import Schema
from marshmallow import ValidationError
from marshmallow import fields
from marshmallow import validate
from marshmallow import validates

from app.webhooks.schemas import check_webhook_url
from security.validation import text_problems
from storage.serialize import JobSchema  # noqa: F401  (re-exported)
from storage.serialize import ResultSchema  # noqa: F401  (re-exported)


class SubmitSchema(Schema):
    """Body of a submit: the message and where it came from."""

    class Meta:
        unknown = RAISE

    text = fields.String(required=True)
    source = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=50)
    )
    location = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=200)
    )
    # Where to POST the signed classification.succeeded/failed event.
    callback_url = fields.String(
        load_default=None, allow_none=True, validate=check_webhook_url
    )

    @validates("text")
    def _check_text(self, value, **_kwargs):
        problems = text_problems(
            value,
            min_chars=current_app.config["TEXT_MIN_CHARS"],
            max_chars=current_app.config["TEXT_MAX_CHARS"],
        )
        if problems:
            raise ValidationError(problems)
