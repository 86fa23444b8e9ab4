"""Build the OpenAPI 3 document from the routes and the marshmallow schemas.

Paths come from the app's url_map, so every endpoint is in the document;
``_OPERATIONS`` gives each its request and response schemas. Every
operation also lists the error statuses in the one error envelope.
"""

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema
from marshmallow import fields

from app.auth import ENDPOINT_PERMISSIONS
from app.auth import PUBLIC
from app.jobs.schemas import JobSchema
from app.jobs.schemas import SubmitSchema
from app.keys.schemas import CreateKeySchema
from app.keys.schemas import KeySchema
from app.keys.schemas import RotateKeySchema
from app.webhooks.schemas import DeliverySchema
from app.webhooks.schemas import EndpointCreateSchema
from app.webhooks.schemas import EndpointSchema
from app.webhooks.schemas import EndpointUpdateSchema
from app.webhooks.schemas import RotateSchema

_VERSION = "1.0.0"
_RULE_ARGUMENT = re.compile(
    r"<(?:(?P<converter>[a-z]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>"
)


class _ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    # "fields" would shadow Schema.fields.
    field_errors = fields.Dict(keys=fields.String(), data_key="fields")


class ErrorSchema(Schema):
    """The one error envelope: ``{"error": {"code", "message", "fields"?}}``."""

    error = fields.Nested(_ErrorBodySchema, required=True)


def _ids(name, description):
    return {"in": "query", "name": name, "schema": {"type": "string"}, **description}


_LIMIT = {
    "in": "query",
    "name": "limit",
    "schema": {"type": "integer"},
    "description": "how many to return",
}

# endpoint: (request body schema, success status, response schema, query).
# A response schema of (Schema,) is a list of them under "items".
_OPERATIONS = {
    "jobs.submit": (SubmitSchema, 202, None, ()),
    "jobs.submit_emergency": (SubmitSchema, 202, None, ()),
    "jobs.list_": (
        None,
        200,
        (JobSchema,),
        (_ids("ids", {"required": True, "description": "comma-separated ids"}),),
    ),
    "jobs.get": (None, 200, JobSchema, ()),
    "keys.create": (CreateKeySchema, 201, KeySchema, ()),
    "keys.list_": (None, 200, (KeySchema,), ()),
    "keys.get": (None, 200, KeySchema, ()),
    "keys.rotate": (RotateKeySchema, 200, KeySchema, ()),
    "keys.revoke": (None, 200, KeySchema, ()),
    "webhooks.create": (EndpointCreateSchema, 201, EndpointSchema, ()),
    "webhooks.list_": (None, 200, (EndpointSchema,), ()),
    "webhooks.get": (None, 200, EndpointSchema, ()),
    "webhooks.update": (EndpointUpdateSchema, 200, EndpointSchema, ()),
    "webhooks.delete": (None, 204, None, ()),
    "webhooks.rotate_secret": (RotateSchema, 200, EndpointSchema, ()),
    "webhooks.list_deliveries": (
        None,
        200,
        (DeliverySchema,),
        (_ids("status", {}), _LIMIT),
    ),
    "webhooks.list_all_deliveries": (
        None,
        200,
        (DeliverySchema,),
        (_ids("status", {}), _LIMIT),
    ),
    "webhooks.get_delivery": (None, 200, DeliverySchema, ()),
    "webhooks.redeliver": (None, 202, DeliverySchema, ()),
    "watch.list_alerts": (None, 200, None, (_ids("type", {}), _LIMIT)),
    "watch.list_actions": (None, 200, None, (_LIMIT,)),
}
_ERROR_STATUSES = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503)


def build(app):
    """Return the OpenAPI 3 document of ``app`` as a dict."""
    spec = APISpec(
        title="AICrisisAlert",
        version=_VERSION,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    operations = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in ENDPOINT_PERMISSIONS:
            continue
        path, parameters = _path(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operations.setdefault(path, {})[method.lower()] = _operation(
                rule.endpoint, parameters
            )
    for path, methods in sorted(operations.items()):
        spec.path(path=path, operations=methods)
    document = spec.to_dict()
    # Request schemas refuse unknown fields; a response may carry more than
    # its schema names (links, a key shown once), so theirs stay open.
    requests = {
        body.__name__.removesuffix("Schema")
        for body, *_ in _OPERATIONS.values()
        if body
    }
    for name, component in document["components"]["schemas"].items():
        if name not in requests:
            component.pop("additionalProperties", None)
    return document


def _path(rule):
    parameters = []
    for match in _RULE_ARGUMENT.finditer(rule):
        schema = {"type": "string"}
        if match["converter"] == "int":
            schema = {"type": "integer", "minimum": 0}
            if match["args"] and match["args"].startswith("max="):
                schema["maximum"] = int(match["args"].removeprefix("max="))
        parameters.append(
            {"in": "path", "name": match["name"], "required": True, "schema": schema}
        )
    return _RULE_ARGUMENT.sub(r"{\g<name>}", rule), parameters


def _operation(endpoint, parameters):
    body, status, response, query = _OPERATIONS.get(endpoint, (None, 200, None, ()))
    operation = {
        "operationId": endpoint,
        "parameters": [*parameters, *query],
        "responses": {
            str(code): {
                "description": "error",
                "content": {"application/json": {"schema": "Error"}},
            }
            for code in _ERROR_STATUSES
        },
    }
    operation["responses"][str(status)] = _success(status, response)
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if ENDPOINT_PERMISSIONS[endpoint] is not PUBLIC:
        operation["security"] = [{"bearer": []}]
    return operation


def _success(status, response):
    if status == 204:
        return {"description": "done, no body"}
    if response is None:
        return {"description": "done"}
    if isinstance(response, tuple):
        (item,) = response
        schema = {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": item}},
        }
    else:
        schema = response
    return {"description": "done", "content": {"application/json": {"schema": schema}}}
