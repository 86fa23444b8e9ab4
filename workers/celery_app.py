"""The Celery application the workers and Beat run: ``celery -A workers.celery_app``.

Queues: ``emergency`` and ``standard``. A worker started with
``-Q emergency,standard`` serves every waiting emergency job first: the
broker is polled with the ``priority`` queue order strategy (one BRPOP
over the queues in the listed order), and each worker process holds at
most one unacknowledged message (prefetch 1 with late acks), so nothing
standard sits reserved ahead of an emergency that arrives later.
"""

import os

# Set before torch or tokenizers are imported by any task module: the
# tokenizer's own thread pool does not survive a fork, and torch threads
# are sized per process (see AICRISISALERT_TORCH_THREADS).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("AICRISISALERT_TORCH_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", os.environ["AICRISISALERT_TORCH_THREADS"])

from celery.signals import task_postrun  # noqa: E402
from celery.signals import task_prerun  # noqa: E402
from celery.signals import worker_process_init  # noqa: E402
from kombu import Queue  # noqa: E402

from app import create_app  # noqa: E402
from monitoring import logs  # noqa: E402
from storage import db  # noqa: E402

# "maintenance" carries the Beat tasks (retention, anomaly checks) and has
# its own worker, so the watch keeps time during a classification flood.
QUEUES = ("emergency", "standard", "maintenance")

flask_app = create_app()
celery = flask_app.extensions["celery"]
# The Beat schedule and the routes of these modules' tasks are in
# config.celery_settings().
celery.conf.update(
    task_queues=[Queue(name, routing_key=name) for name in QUEUES],
    include=["tasks.classify", "tasks.maintenance", "tasks.anomaly"],
)


@worker_process_init.connect
def _after_fork(**_kwargs):
    """Drop the database connections inherited from the parent process."""
    db.dispose_after_fork()


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
