"""The OpenAPI document of the API, served at ``/openapi.json``."""
