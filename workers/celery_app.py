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

import os

# Set before torch or tokenizers are imported by any task module: the
# tokenizer's own thread pool does not survive a fork, and torch threads
# are sized per process (see AICRISISALERT_TORCH_THREADS).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("AICRISISALERT_TORCH_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", os.environ["AICRISISALERT_TORCH_THREADS"])

from celery.signals import worker_process_init  # noqa: E402
from kombu import Exchange  # noqa: E402
from kombu import Queue  # noqa: E402

from app import create_app  # noqa: E402
from storage import db  # noqa: E402

QUEUES = ("emergency", "standard", "webhooks")

flask_app = create_app()
celery = flask_app.extensions["celery"]
celery.conf.update(
    task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
    include=["tasks.classify", "tasks.webhooks"],
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
