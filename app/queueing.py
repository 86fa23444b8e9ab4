"""The Celery app bound to Flask, and publishing jobs to the broker.

The web process publishes by task name, so it never imports the task
modules (nor torch through them).
"""

import logging
from contextlib import contextmanager
from urllib.parse import urlsplit

import kombu.exceptions
import kombu.transport.redis
import redis.exceptions
from celery import Celery
from celery import Task
from flask import current_app

import config
from app.errors import ServiceUnavailable
from monitoring import logs

logger = logging.getLogger(__name__)

CLASSIFY_TASK = "classify.jobs"
# Seconds a client should wait before retrying while the broker is down.
BROKER_RETRY_AFTER_SECONDS = 5
_BROKER_ERRORS = (
    kombu.exceptions.OperationalError,
    redis.exceptions.RedisError,
    ConnectionError,
    OSError,
)


class _Channel(kombu.transport.redis.Channel):
    """kombu's Redis channel, sending every command through one client.

    kombu builds a fresh Redis client for each publish (and each other
    command outside the consumer's loop), which cost about a sixth of a
    submit's enqueue. A client is only a handle on the channel's
    connection pool, safe to share between threads, so one is kept per
    pool and made again when the channel replaces its pool (after a fork
    or a failure).
    """

    _shared_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return

        pool = self.pool
        shared = self._shared_client
        if shared is None or shared.connection_pool is not pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu.transport.redis.Transport):
    """kombu's Redis transport with :class:`_Channel`."""

    Channel = _Channel


def init_celery(app):
    """Create the Celery app from the Flask settings; tasks run in app context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    settings = config.celery_settings(app.config)
    # Only a plain redis:// broker: other schemes (TLS, Sentinel) keep the
    # transport kombu picks for them.
    if urlsplit(app.config["BROKER_URL"]).scheme == "redis":
        settings["broker_transport"] = f"{__name__}:Transport"
    celery.config_from_object(settings)
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


def enqueue(job_ids, queue, *, per_message=None):
    """Publish messages that classify ``job_ids`` on ``queue``.

    With ``per_message``, the ids go in chunks of that many per message,
    all published over one broker connection (one LPUSH per chunk on the
    same socket), so a batch of 1,000 costs 32 publishes rather than
    1,000. Without it, one message carries every id.

    Raises:
        ServiceUnavailable: the broker could not be reached. Chunks sent
            before the fault stay queued: the caller fails every job, and
            the worker skips failed jobs.
    """
    job_ids = list(job_ids)
    size = per_message or len(job_ids)
    chunks = [job_ids[start : start + size] for start in range(0, len(job_ids), size)]
    celery = current_app.extensions["celery"]
    try:
        with celery.producer_or_acquire() as producer:
            for chunk in chunks:
                celery.send_task(
                    CLASSIFY_TASK,
                    args=[chunk],
                    queue=queue,
                    task_id=chunk[0] if len(chunk) == 1 else None,
                    # Given, so Celery does not build them with saferepr.
                    argsrepr=repr([chunk]),
                    kwargsrepr="{}",
                    ignore_result=True,
                    retry=False,
                    producer=producer,
                    # The worker logs the job under the request that
                    # submitted it.
                    headers={logs.TASK_HEADER: logs.current_request_id()},
                )
    except _BROKER_ERRORS as error:
        logger.error(
            "queue: publish failed queue=%s jobs=%d error=%s",
            queue,
            len(job_ids),
            error,
        )
        raise ServiceUnavailable(
            "the job queue is unavailable; try again shortly",
            headers={"Retry-After": str(BROKER_RETRY_AFTER_SECONDS)},
        ) from error
    return len(chunks)
