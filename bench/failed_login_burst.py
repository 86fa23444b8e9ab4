"""Send a burst of failed logins to a running service and show the response.

Usage (against ``make run``, from the repository root, with the service's
environment so that ``flask watch`` reaches the same database and Redis)::

    .venv/bin/python -m bench.failed_login_burst --url http://127.0.0.1:8000 \
        --admin-key "$ADMIN_KEY"

It sends ``--count`` requests with made-up keys, waits for the next
anomaly check (Beat runs one a minute by default), then prints the
alerts and actions through ``flask watch``, shows that the next request
from this address is refused, lifts the block through ``flask watch
reverse`` and reads the alert back through ``GET /v1/alerts``. Only ever
point it at a service of your own on 127.0.0.1.
"""

import argparse
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLASK = [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "watch"]


def _call(url, key, path="/v1/classifications?ids=x"):
    request = urllib.request.Request(url + path)
    request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _watch(*args):
    return subprocess.run(
        [*FLASK, *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def main(argv=None):
    """Run the burst and print what the service did about it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--admin-key", required=True)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--wait-seconds", type=float, default=90)
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        parser.error("only a service on this machine may be attacked")

    started = time.monotonic()
    statuses = {}
    for _ in range(min(args.count, 1000)):
        fake = f"aca_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
        status, _body = _call(args.url, fake)
        statuses[status] = statuses.get(status, 0) + 1
    print(f"burst: {args.count} failed logins in {time.monotonic() - started:.2f}s")
    print(f"burst: statuses {statuses}")

    deadline = time.monotonic() + args.wait_seconds
    while time.monotonic() < deadline:
        status, body = _call(args.url, args.admin_key)
        if status == 403 and body["error"]["code"] == "address_blocked":
            break
        time.sleep(1)
    print(f"after check: next request -> {status} {json.dumps(body)}")
    print(f"detected after {time.monotonic() - started:.1f}s")
    print("flask watch alerts:")
    print(_watch("alerts"), end="")
    actions = _watch("actions")
    print("flask watch actions:")
    print(actions, end="")
    print("flask watch blocks:")
    print(_watch("blocks"), end="")

    block = next(line for line in actions.splitlines() if "block_address" in line)
    print(_watch("reverse", block.split()[0], "--by", "burst-script"), end="")
    status, body = _call(args.url, args.admin_key, "/v1/alerts?limit=5")
    print(f"GET /v1/alerts -> {status}")
    print(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
