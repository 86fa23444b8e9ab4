"""Fuzz the API from its OpenAPI document with schemathesis.

    python -m bench.fuzz --url http://127.0.0.1:8000 --key $KEY --examples 450

Every operation gets ``--examples`` generated requests (the key should be
an admin's, so every endpoint is reached). Each response is checked: no
5xx and a body that matches the document. The last line printed is JSON
with the counts. The suite runs the same loop, shorter, in-process.
"""

import argparse
import json
import os
import sys
import time

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings


def run(schema, headers, *, examples, base_url=None):
    """Send ``examples`` generated cases to each operation; return the counts.

    Returns:
        ``{"requests", "operations", "server_errors", "failures"}``, where
        ``failures`` lists ``(operation, message)`` for each failed check.
    """
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    counts = {"requests": 0, "operations": 0, "server_errors": 0, "failures": []}

    def check(case):
        response = case.call(headers=headers, base_url=base_url)
        counts["requests"] += 1
        if response.status_code >= 500:
            counts["server_errors"] += 1
        case.validate_response(
            response, checks=[not_a_server_error, response_schema_conformance]
        )

    policy = settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1
        try:
            policy(given(case=operation.as_strategy())(check))()
        except Exception as error:  # noqa: BLE001  (report every operation's failure)
            counts["failures"].append((operation.label, str(error)[:2000]))
    return counts


def main(argv=None):
    """Fuzz a running service; print the failures and a JSON summary line."""
    import schemathesis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("AICRISISALERT_URL"))
    parser.add_argument("--key", default=os.environ.get("AICRISISALERT_KEY"))
    parser.add_argument("--examples", type=int, default=450)
    args = parser.parse_args(argv)
    if not args.url or not args.key:
        parser.error("give --url and --key (or AICRISISALERT_URL/AICRISISALERT_KEY)")

    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{args.url.rstrip('/')}/openapi.json")
    counts = run(
        schema,
        {"Authorization": f"Bearer {args.key}"},
        examples=args.examples,
        base_url=args.url.rstrip("/"),
    )
    for label, message in counts["failures"]:
        print(f"FAILED {label}: {message}", file=sys.stderr)
    summary = {
        "requests": counts["requests"],
        "operations": counts["operations"],
        "server_errors": counts["server_errors"],
        "failed_operations": len(counts["failures"]),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary))
    return 1 if counts["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
