"""Per-request bookkeeping: request logs, key usage and metrics, in batches.

Every API request leaves a request-log row (never the message's text),
and every authenticated one adds to its key's ``use_count`` and sets its
``last_used_at``. Written one by one, that was two commits per request,
each waiting on the database's write lock and its sync to disk, on the
path of every submit. Each request also adds to the metrics in Redis
(:mod:`monitoring.metrics`), a round trip of its own.

With ``REQUESTLOG_FLUSH_SECONDS`` above 0 the process keeps them in memory
and a background thread writes them every that many seconds: the rows in
one multi-row insert and the usage as one update per key, in one
transaction, and the metrics' counts summed, in one Redis round trip.
What a process held when it was killed outright (SIGKILL, a power cut) is
lost: at most that many seconds of request logs, key usage and request
counts, which are monitoring data; jobs are never written this way. A process
that exits normally writes what it holds first (``atexit``; gunicorn's
``worker_exit`` hook calls :func:`flush` too). With 0 (the test config)
each is written at once, on a connection of its own.

The request's own session may hold a failed transaction (the request that
errored), so the bookkeeping never uses it. A database fault is logged and
swallowed: bookkeeping must never fail a request.
"""

import atexit
import logging
import os
import threading
import time

from sqlalchemy import case
from sqlalchemy import insert
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from monitoring import metrics
from storage.db import get_engine
from storage.models import ApiKey
from storage.models import utcnow
from storage.monitoring import RequestLog

logger = logging.getLogger(__name__)


class _Buffer:
    """What this process has yet to write, and the thread that writes it."""

    def __init__(self):
        self.interval_seconds = 0.0
        self.rows = []
        self.usage = {}
        # {(hash, field): amount} for the metrics, and the Redis they go to.
        self.counts = {}
        self.metrics_client = None
        self.lock = threading.Lock()
        self.thread = None
        self.pid = None

    def take(self):
        with self.lock:
            rows, usage, counts = self.rows, self.usage, self.counts
            self.rows, self.usage, self.counts = [], {}, {}
        return rows, usage, counts

    def ensure_thread(self):
        # A forked child (a gunicorn or Celery worker) inherits neither the
        # thread nor, usefully, the parent's pending rows.
        if self.pid == os.getpid() and self.thread is not None:
            return
        with self.lock:
            if self.pid != os.getpid() or self.thread is None:
                if self.pid != os.getpid():
                    self.rows, self.usage, self.counts = [], {}, {}
                self.pid = os.getpid()
                self.thread = threading.Thread(
                    target=self._run, name="requestlog-flusher", daemon=True
                )
                self.thread.start()

    def _run(self):
        # Runs until the process is set to write at once (a test app built
        # after a batching one), then hands back what it holds.
        while self.interval_seconds > 0:
            time.sleep(self.interval_seconds)
            flush()
        with self.lock:
            self.thread = None
        flush()


_buffer = _Buffer()


def configure(*, flush_seconds):
    """Write every ``flush_seconds`` (0: write each row and use at once)."""
    _buffer.interval_seconds = float(flush_seconds)


def record(**values):
    """Log one request (``RequestLog`` columns as keyword arguments)."""
    values.setdefault("created_at", utcnow())
    if _buffer.interval_seconds <= 0:
        _write([values], {})
        return

    _buffer.ensure_thread()
    with _buffer.lock:
        _buffer.rows.append(values)


def count_key_use(key_id, when=None):
    """Add one use of key ``key_id``, made at ``when`` (default now)."""
    when = when or utcnow()
    if _buffer.interval_seconds <= 0:
        _write([], {key_id: (1, when)})
        return

    _buffer.ensure_thread()
    with _buffer.lock:
        count, _last = _buffer.usage.get(key_id, (0, when))
        _buffer.usage[key_id] = (count + 1, when)


def count_request(client, *, endpoint, status, submit_seconds=None):
    """Count one request in the metrics kept in ``client`` (Redis).

    A Redis fault is logged, never raised.
    """
    if _buffer.interval_seconds <= 0:
        metrics.safely(
            metrics.count_request,
            client,
            endpoint=endpoint,
            status=status,
            submit_seconds=submit_seconds,
        )
        return

    increments = metrics.request_increments(
        endpoint=endpoint, status=status, submit_seconds=submit_seconds
    )
    _buffer.ensure_thread()
    with _buffer.lock:
        counts = _buffer.counts
        for field, amount in increments.items():
            counts[field] = counts.get(field, 0) + amount
        _buffer.metrics_client = client


def flush():
    """Write what this process holds now; return the number of rows written."""
    rows, usage, counts = _buffer.take()
    if rows or usage:
        _write(rows, usage)
    if counts and _buffer.metrics_client is not None:
        metrics.safely(metrics.add_increments, _buffer.metrics_client, counts)
    return len(rows)


def _write(rows, usage):
    try:
        with get_engine().begin() as connection:
            if rows:
                connection.execute(insert(RequestLog), rows)
            for key_id, (count, last_used) in usage.items():
                connection.execute(_usage_update(key_id, count, last_used))
    except SQLAlchemyError as error:
        logger.warning(
            "requestlog: not written rows=%d keys=%d error=%s",
            len(rows),
            len(usage),
            type(error).__name__,
        )


def _usage_update(key_id, count, last_used):
    # Processes flush in any order: last_used_at only ever moves forward.
    newest = case(
        (ApiKey.last_used_at.is_(None), last_used),
        (ApiKey.last_used_at < last_used, last_used),
        else_=ApiKey.last_used_at,
    )
    return (
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(last_used_at=newest, use_count=ApiKey.use_count + count)
    )


def _flush_at_exit():
    if _buffer.pid == os.getpid():
        flush()


atexit.register(_flush_at_exit)
