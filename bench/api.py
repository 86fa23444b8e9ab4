"""Submit latency at a steady request rate: ``python -m bench.api``.

    python -m bench.api --url http://127.0.0.1:8000 --key $KEY --rate 200 --seconds 20

Sends real HumAID test tweets to ``POST /v1/classifications`` on an open
schedule (request i is due at start + i / rate, whatever earlier ones
did), and measures each submit from the moment it was due to its answer,
so a stall shows up in the percentiles instead of slowing the load. Goal:
p99 <= 20 ms and no errors. The last line printed is JSON.

The load comes from one asyncio loop speaking HTTP/1.1 over keep-alive
connections it opens as needed (one per request in flight, at most
``--connections``), with the request bytes built before the clock starts:
about 0.1 ms of CPU a request, so the generator is not what limits the
figure on a small machine. A request that finds every connection busy
waits for one, and that wait counts in its latency. ``late_starts`` counts
requests sent more than 1 ms after they were due (the loop itself fell
behind); ``client_cpu_ms_per_request`` is the generator's own CPU.

The service's per-key limits must allow the rate: with the defaults an
operator key may make 1,200 requests a minute (20 a second); run the
service for this benchmark with, for instance,
``AICRISISALERT_RATELIMIT_BY_ROLE='{"operator": "100000/hour;20000/minute"}'``.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

from classifier.data import data_dir
from classifier.data import read_tsv

GOAL_P99_MS = 20.0
_PATH = "/v1/classifications"
# A request sent later than this after it was due counts as a late start.
_LATE_START_MS = 1.0
_TIMEOUT_SECONDS = 10.0


def percentile(values, fraction):
    """Return the nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def build_requests(url, key, texts, total):
    """Return the ``total`` raw HTTP requests, built before any is timed."""
    parts = urlsplit(url)
    host = parts.netloc
    built = []
    for index in range(total):
        body = json.dumps(
            {"text": texts[index % len(texts)], "source": "bench"}
        ).encode("utf-8")
        head = (
            f"POST {_PATH} HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            f"Authorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n"
        ).encode("ascii")
        built.append(head + body)
    return built


async def _read_response(reader):
    """Read one HTTP/1.1 response; return ``(status, keep_alive)``."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length, keep_alive = 0, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
        elif name == b"transfer-encoding":
            raise ValueError("chunked responses are not read by this client")
    if length:
        await reader.readexactly(length)
    return status, keep_alive


class _Connections:
    """Idle keep-alive connections to the server, opened on demand."""

    def __init__(self, host, port, limit):
        self.host, self.port = host, port
        self.idle = []
        self.opened = 0
        self.made = 0
        self.limit = limit
        self.freed = asyncio.Condition()

    async def take(self):
        """Return ``(connection, reused)``: an idle one if any, else a new one."""
        async with self.freed:
            while not self.idle and self.opened >= self.limit:
                await self.freed.wait()
            while self.idle:
                connection = self.idle.pop()
                if not connection[0].at_eof():
                    return connection, True
                # The server closed it while idle (its keep-alive timeout).
                connection[1].close()
                self.opened -= 1
            self.opened += 1
            self.made += 1
        try:
            return await asyncio.open_connection(self.host, self.port), False
        except OSError:
            await self.drop()
            raise

    async def give_back(self, connection):
        async with self.freed:
            self.idle.append(connection)
            self.freed.notify()

    async def drop(self, connection=None):
        if connection is not None:
            connection[1].close()
        async with self.freed:
            self.opened -= 1
            self.freed.notify()

    def close(self):
        for _reader, writer in self.idle:
            writer.close()


async def _drive(url, raw_requests, *, rate, connections):
    parts = urlsplit(url)
    pool = _Connections(parts.hostname, parts.port or 80, connections)
    total = len(raw_requests)
    latencies, statuses = [None] * total, [None] * total
    late = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def exchange(index):
        connection, reused = await pool.take()
        try:
            reader, writer = connection
            writer.write(raw_requests[index])
            status, keep_alive = await asyncio.wait_for(
                _read_response(reader), _TIMEOUT_SECONDS
            )
        except BaseException as error:
            await pool.drop(connection)
            # A kept-alive connection the server closed just as it was
            # reused: the request never arrived, so send it again (on another).
            if reused and isinstance(error, ConnectionError):
                return await exchange(index)
            raise
        if keep_alive:
            await pool.give_back(connection)
        else:
            await pool.drop(connection)
        return status

    async def send(index, due):
        try:
            statuses[index] = await exchange(index)
        except (TimeoutError, OSError, ValueError, IndexError) as error:
            statuses[index] = type(error).__name__
        latencies[index] = (loop.time() - due) * 1000

    tasks = []
    for index in range(total):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if (loop.time() - due) * 1000 > _LATE_START_MS:
            late += 1
        tasks.append(asyncio.ensure_future(send(index, due)))
    await asyncio.gather(*tasks)
    pool.close()
    return latencies, statuses, late, pool.made


def run(url, key, *, rate, seconds, connections, texts):
    """Drive the load; return ``(latencies_ms, statuses, late_starts, opened)``."""
    raw = build_requests(url, key, texts, int(rate * seconds))
    return asyncio.run(_drive(url, raw, rate=rate, connections=connections))


def main(argv=None):
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("AICRISISALERT_URL", "http://127.0.0.1:8000")
    )
    parser.add_argument("--key", default=os.environ.get("AICRISISALERT_KEY"))
    parser.add_argument("--rate", type=float, default=200.0, help="requests a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="keep-alive connections open at most (requests in flight)",
    )
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("give --key or set AICRISISALERT_KEY")
    if urlsplit(args.url).scheme != "http":
        parser.error("the load generator speaks plain HTTP: give an http:// URL")

    texts = [row[1] for row in read_tsv(data_dir() / "test.tsv", limit=2000)]
    cpu_started, started = time.process_time(), time.perf_counter()
    latencies, statuses, late, opened = run(
        args.url.rstrip("/"),
        args.key,
        rate=args.rate,
        seconds=args.seconds,
        connections=args.connections,
        texts=texts,
    )
    elapsed = time.perf_counter() - started - 0.5
    client_cpu = time.process_time() - cpu_started
    ok = [lat for lat, status in zip(latencies, statuses, strict=True) if status == 202]
    counts = {}
    for status in statuses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    summary = {
        "requests": len(statuses),
        "rate_asked": args.rate,
        "rate_achieved": round(len(statuses) / elapsed, 1),
        "statuses": counts,
        "errors": len(statuses) - len(ok),
        "p50_ms": round(percentile(ok, 0.50), 2) if ok else None,
        "p95_ms": round(percentile(ok, 0.95), 2) if ok else None,
        "p99_ms": round(percentile(ok, 0.99), 2) if ok else None,
        "max_ms": round(max(ok), 2) if ok else None,
        "late_starts": late,
        "connections_opened": opened,
        "client_cpu_ms_per_request": round(1000 * client_cpu / len(statuses), 3),
        "goal_p99_ms": GOAL_P99_MS,
    }
    summary["goal_met"] = bool(
        ok and summary["errors"] == 0 and summary["p99_ms"] <= GOAL_P99_MS
    )
    print(
        f"submits={summary['requests']} at {summary['rate_achieved']}/s "
        f"statuses={counts} p50={summary['p50_ms']}ms p95={summary['p95_ms']}ms "
        f"p99={summary['p99_ms']}ms max={summary['max_ms']}ms late_starts={late}"
    )
    print(json.dumps(summary))
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
