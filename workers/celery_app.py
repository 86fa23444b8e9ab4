"""The Celery application the workers and Beat run: ``celery -A workers.celery_app``.

Queues: ``emergency``, ``standard`` and ``webhooks`` (deliveries, served
by a worker of their own so a slow receiver never holds up a
classification). A worker started with
``-Q emergency,standard`` serves every waiting emergency job first: the
broker is polled with the ``priority`` queue order strategy (one BRPOP
over the queues in the listed order), and each worker process holds at
most one unacknowledged message (prefetch 1 with late acks), so nothing
standard sits reserved ahead of an emergency that arrives later.
"""

import logging
import os

# Set before torch or tokenizers are imported by any task module: the
# tokenizer's own thread pool does not survive a fork, and torch threads
# are sized per process (see AICRISISALERT_TORCH_THREADS).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("AICRISISALERT_TORCH_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", os.environ["AICRISISALERT_TORCH_THREADS"])

from celery._state import get_current_task  # noqa: E402
from celery.app.log import TaskFormatter  # noqa: E402
from celery.signals import after_setup_task_logger  # noqa: E402
from celery.signals import task_postrun  # noqa: E402
from celery.signals import task_prerun  # noqa: E402
from celery.signals import worker_process_init  # noqa: E402
from kombu import Exchange  # noqa: E402
from kombu import Queue  # noqa: E402

from app import create_app  # noqa: E402
from monitoring import logs  # noqa: E402
from storage import db  # noqa: E402

_TASK_TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(task_name)s[%(task_id)s] [%(request_id)s] %(message)s"
)

# "maintenance" carries the Beat tasks (retention, anomaly checks) and has
# its own worker, so the watch keeps time during a classification flood.
QUEUES = ("emergency", "standard", "webhooks", "maintenance")

flask_app = create_app()
celery = flask_app.extensions["celery"]
# The Beat schedule and the routes of these modules' tasks are in
# config.celery_settings().
celery.conf.update(
    task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
    include=["tasks.classify", "tasks.webhooks", "tasks.maintenance", "tasks.anomaly"],
)


@worker_process_init.connect
def _after_fork(**_kwargs):
    """Drop inherited database connections; start loading the model.

    The load runs in a thread so this handler returns at once (Celery
    kills a pool process whose start-up signal takes too long). Workers
    that never classify (webhook delivery) set AICRISISALERT_PRELOAD_MODEL=0.
    """
    db.dispose_after_fork()
    if os.environ.get("AICRISISALERT_PRELOAD_MODEL", "1") == "1":
        from classifier.engine import preload_in_background

        preload_in_background()


@task_prerun.connect
def _take_request_id(task=None, **_kwargs):
    """Log the task's lines under the request id that came in its headers."""
    request_id = getattr(task.request, logs.TASK_HEADER, None)
    task.request._request_id_token = logs.set_request_id(request_id)


@task_postrun.connect
def _drop_request_id(task=None, **_kwargs):
    token = getattr(task.request, "_request_id_token", None)
    if token is not None:
        logs.reset_request_id(token)


class _TaskFields(logging.Filter):
    """Put the running task's name and id on a record (for the JSON lines)."""

    def filter(self, record):
        """Add ``task_name`` and ``task_id``; keep every record."""
        task = get_current_task()
        record.task_name = task.name if task and task.request.id else None
        record.task_id = task.request.id if task and task.request.id else None
        return True


@after_setup_task_logger.connect
def _format_task_logs(logger=None, **_kwargs):
    """Give task log lines the service's format and the request id.

    Celery gives its task logger handlers of its own that do not reach
    the root logger, so they are re-formatted here.
    """
    json_lines = logs.log_format(flask_app.config) == "json"
    for handler in logger.handlers:
        handler.addFilter(logs.RequestIdFilter())
        handler.addFilter(_TaskFields())
        handler.setFormatter(
            logs.JsonFormatter() if json_lines else TaskFormatter(_TASK_TEXT_FORMAT)
        )
