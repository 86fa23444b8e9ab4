"""The OpenAPI document, and a short schemathesis run against it.

The long run is ``make fuzz`` against a running service, or this test
in-process with ``AICRISISALERT_FUZZ_EXAMPLES`` set: 360 sent 9,362
requests over 28 operations (hypothesis stops early on operations with few
distinct inputs), so ask for about 400 to pass 10,000.
"""

import os

import schemathesis

from app.auth import ENDPOINT_PERMISSIONS
from bench import fuzz

# Generated cases per operation in the suite's run (about 25 operations).
SUITE_EXAMPLES_PER_OPERATION = int(os.environ.get("AICRISISALERT_FUZZ_EXAMPLES", "12"))


def test_openapi_lists_every_endpoint_with_its_security(client):
    """Every endpoint appears once; all but the public ones need a bearer key."""
    response = client.get("/openapi.json")

    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    operations = {
        operation["operationId"]: operation
        for methods in document["paths"].values()
        for operation in methods.values()
    }
    routed = {rule.endpoint for rule in client.application.url_map.iter_rules()}
    assert set(operations) == routed - {"static"}
    assert set(operations) <= set(ENDPOINT_PERMISSIONS)
    for endpoint, operation in operations.items():
        permission = ENDPOINT_PERMISSIONS[endpoint]
        secured = "security" in operation
        assert secured == (permission is not None), endpoint
    submit = operations["jobs.submit"]["requestBody"]["content"]["application/json"]
    assert submit["schema"] == {"$ref": "#/components/schemas/Submit"}
    assert "text" in document["components"]["schemas"]["Submit"]["required"]


def test_fuzzed_requests_get_no_5xx_and_match_the_schema(app, make_key):
    """Generated requests with a valid admin key: no 5xx, responses match the spec."""
    document = schemathesis.openapi.from_wsgi("/openapi.json", app)

    counts = fuzz.run(
        document,
        make_key.headers("admin"),
        examples=SUITE_EXAMPLES_PER_OPERATION,
    )

    assert [label for label, _message in counts["failures"]] == [], counts["failures"]
    assert counts["server_errors"] == 0
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    # Every operation but the document's own, which schemathesis leaves out.
    total = sum(len(methods) for methods in paths.values())
    assert counts["operations"] == total - 1
    assert counts["requests"] >= 200
    print(f"fuzz: {counts['requests']} requests, {counts['operations']} operations")
