"""Prometheus metrics kept in Redis, so every process adds to one set.

The API runs several gunicorn workers and the model runs in separate
Celery processes, so an in-process registry would show one process's
share on each scrape. prometheus-client's multiprocess mode shares files
on one host only; counting in Redis hashes (``HINCRBY``) works across
hosts. The API adds each request's counts to a per-process tally that
:mod:`monitoring.requestlog` writes with its rows, in one pipelined round
trip a second, not one per request. ``/metrics`` reads
the hashes and renders them with prometheus-client. Counters start again
from zero only if Redis loses its data, which Prometheus reads as a
counter reset.

Histograms store one count per bucket (not cumulative) plus a sum and a
count; the collector makes them cumulative when it renders.
"""

import json
import logging
import math

import redis
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import HistogramMetricFamily

from monitoring.state import KEY_PREFIX

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAMESPACE = "aicrisisalert"
_HASH = KEY_PREFIX + "metrics:"
_LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# name: (help, label names)
COUNTERS = {
    "requests": ("API requests by endpoint and status", ("endpoint", "status")),
    "webhook_attempts": ("Webhook delivery attempts by outcome", ("outcome",)),
    "alerts": ("Alerts raised by type (de-duplicated)", ("type",)),
}
# name: (help, label names, bucket upper bounds)
HISTOGRAMS = {
    "submit_latency_seconds": (
        "Time the API took to accept a submit",
        ("endpoint",),
        _LATENCY_BUCKETS_SECONDS,
    ),
    "inference_latency_seconds": (
        "Time of one forward pass of the model",
        ("queue",),
        _LATENCY_BUCKETS_SECONDS,
    ),
    "inference_batch_size": (
        "Texts in one forward pass of the model",
        ("queue",),
        (1, 2, 4, 8, 16, 32, 64, 128),
    ),
}


def increment(client, name, labels, amount=1):
    """Add ``amount`` to counter ``name`` with ``labels`` (a dict)."""
    _check_labels(COUNTERS[name][1], labels)
    field = json.dumps([str(labels[label]) for label in COUNTERS[name][1]])
    client.hincrby(_HASH + name, field, amount)


def observe(client, name, labels, value):
    """Record one observation of ``value`` in histogram ``name``."""
    add_increments(
        client,
        {
            (_HASH + name, field): amount
            for field, amount in _observation(name, labels, value)
        },
    )


def _observation(name, labels, value):
    """Return the ``(field, amount)`` pairs one observation adds (a float: the sum)."""
    _help, label_names, buckets = HISTOGRAMS[name]
    _check_labels(label_names, labels)
    values = [str(labels[label]) for label in label_names]
    index = next((i for i, bound in enumerate(buckets) if value <= bound), "inf")
    return [
        (json.dumps([*values, index]), 1),
        (json.dumps([*values, "sum"]), float(value)),
    ]


def request_increments(*, endpoint, status, submit_seconds=None):
    """Return ``{(hash, field): amount}``: what one API request adds.

    A float amount is a histogram's sum (``HINCRBYFLOAT``), an int a count.
    """
    _check_labels(COUNTERS["requests"][1], {"endpoint": endpoint, "status": status})
    increments = {(_HASH + "requests", json.dumps([str(endpoint), str(status)])): 1}
    if submit_seconds is not None:
        name = "submit_latency_seconds"
        for field, amount in _observation(name, {"endpoint": endpoint}, submit_seconds):
            increments[(_HASH + name, field)] = amount
    return increments


def add_increments(client, increments):
    """Add ``{(hash, field): amount}`` (see :func:`request_increments`) in one trip."""
    pipe = client.pipeline(transaction=False)
    for (name, field), amount in increments.items():
        if isinstance(amount, float):
            pipe.hincrbyfloat(name, field, amount)
        else:
            pipe.hincrby(name, field, amount)
    pipe.execute()


def count_request(client, *, endpoint, status, submit_seconds=None):
    """Count one API request and, for a submit, its latency: one round trip."""
    add_increments(
        client,
        request_increments(
            endpoint=endpoint, status=status, submit_seconds=submit_seconds
        ),
    )


def count_webhook_attempt(client, outcome):
    """Count one webhook delivery attempt: "delivered", "failed", "retrying"...

    The webhook delivery task calls this once per attempt.
    """
    increment(client, "webhook_attempts", {"outcome": outcome})


def safely(function, *args, **kwargs):
    """Call a metrics function; a Redis fault is logged, never raised."""
    try:
        function(*args, **kwargs)
    except redis.RedisError as error:
        logger.warning("metrics: not recorded error=%s", type(error).__name__)


def _check_labels(expected, labels):
    if set(labels) != set(expected):
        raise ValueError(f"metrics: labels {sorted(labels)} != {sorted(expected)}")


def _read(client, name):
    return {
        tuple(json.loads(field)): value
        for field, value in client.hgetall(_HASH + name).items()
    }


def _counter_family(client, name):
    help_text, label_names = COUNTERS[name]
    family = CounterMetricFamily(f"{NAMESPACE}_{name}", help_text, labels=label_names)
    for values, count in sorted(_read(client, name).items()):
        family.add_metric(list(values), int(count))
    return family


def _histogram_family(client, name):
    help_text, label_names, bounds = HISTOGRAMS[name]
    series = {}
    for key, raw in _read(client, name).items():
        values, slot = key[:-1], key[-1]
        entry = series.setdefault(values, {"sum": 0.0, "counts": {}})
        if slot == "sum":
            entry["sum"] = float(raw)
        else:
            entry["counts"][slot] = int(raw)
    family = HistogramMetricFamily(f"{NAMESPACE}_{name}", help_text, labels=label_names)
    for values, entry in sorted(series.items()):
        cumulative, buckets = 0, []
        for index, bound in enumerate(bounds):
            cumulative += entry["counts"].get(index, 0)
            buckets.append((_bound_text(bound), cumulative))
        cumulative += entry["counts"].get("inf", 0)
        buckets.append(("+Inf", cumulative))
        family.add_metric(list(values), buckets, entry["sum"])
    return family


def _bound_text(bound):
    return str(float(bound)) if not math.isinf(bound) else "+Inf"


class _Collector:
    def __init__(self, client, *, queues, jobs_by_status):
        self.client = client
        self.queues = queues
        self.jobs_by_status = jobs_by_status

    def collect(self):
        for name in COUNTERS:
            yield _counter_family(self.client, name)
        for name in HISTOGRAMS:
            yield _histogram_family(self.client, name)

        depth = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth", "Messages waiting per queue", labels=["queue"]
        )
        pipe = self.client.pipeline(transaction=False)
        for queue in self.queues:
            pipe.llen(queue)
        for queue, length in zip(self.queues, pipe.execute(), strict=True):
            depth.add_metric([queue], length)
        yield depth

        jobs = GaugeMetricFamily(
            f"{NAMESPACE}_jobs", "Classification jobs by status", labels=["status"]
        )
        for status, count in sorted(self.jobs_by_status.items()):
            jobs.add_metric([status], count)
        yield jobs


def render(client, *, queues, jobs_by_status):
    """Return the metrics page (Prometheus text format) as bytes.

    Args:
        client: the watch's Redis client.
        queues: names of the broker queues whose depth is reported.
        jobs_by_status: ``{status: count}`` read from the database.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(client, queues=queues, jobs_by_status=jobs_by_status))
    return generate_latest(registry)
