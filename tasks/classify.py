"""Classification tasks.

``classify.jobs`` runs the model over the job ids of its message and of
the messages waiting behind it (see :mod:`tasks.batching`: emergency
jobs first, as a pass of their own) and stores each result on its job
row.

Idempotent: finished jobs are skipped, so a message redelivered after a
worker died (late acks with reject-on-worker-lost) does no work twice.
On failure the jobs are marked failed with the reason; a soft time limit
marks them failed and re-raises.
"""

import time

from celery import shared_task
from celery.exceptions import Reject
from celery.exceptions import Retry
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy.exc import OperationalError

# Cheap to import: torch and the model load later, in a thread of the
# worker process (see classifier.engine.preload_in_background).
from classifier.engine import engine_loaded
from classifier.engine import get_engine
from classifier.engine import release_free_memory
from monitoring import batches
from monitoring import state
from storage import jobs as job_states
from storage.db import session
from tasks import batching
from tasks import faults
from tasks import webhooks as webhook_tasks

logger = get_task_logger(__name__)

_TIMED_OUT = "classification took longer than its time limit"
# A task whose time limit ran out while the model was still loading is
# tried again this often, this far apart (a minute in all: a busy machine
# can take that long to load the model).
_COLD_START_RETRIES = 30
_COLD_START_RETRY_SECONDS = 2


@shared_task(
    name="classify.jobs",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    # A locked or briefly unreachable database is worth a few retries.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def classify_jobs(self, job_ids):
    """Classify the unfinished jobs among ``job_ids`` and those waiting behind.

    Returns a summary: jobs classified and the messages gathered.
    """
    settings = current_app.config
    queue = (self.request.delivery_info or {}).get("routing_key") or "standard"
    gathered = batching.gather(
        self.app,
        queue=queue,
        job_ids=job_ids,
        max_jobs=settings["WORKER_BATCH_MAX_JOBS"],
        wait_ms=settings["WORKER_BATCH_WAIT_MS"],
        backlog_max_jobs=settings["WORKER_BATCH_BACKLOG_MAX_JOBS"],
        backlog_share=settings["WORKER_BATCH_BACKLOG_SHARE"],
    )
    classified = 0
    own_pending = True
    try:
        for group in gathered.groups:
            # From here on the task's own jobs are settled by this pass
            # (finished, released or failed), whatever it raises.
            own_pending = own_pending and not group.original
            if group.job_ids:
                classified += _classify(self, group.job_ids, gathered)
            gathered.ack(group)
    except (Retry, OperationalError):
        # Both publish the task's own ids again (a retry); the messages
        # gathered go back to their queues in the finally below.
        raise
    except Exception:
        if own_pending:
            # The task's own jobs never ran (an earlier emergency pass
            # failed, and failed its jobs): put its message back rather
            # than let Celery ack it with those jobs still queued.
            logger.warning("classify: own jobs not run, message put back")
            raise Reject("an earlier pass of the batch failed", requeue=True) from None
        raise
    finally:
        gathered.give_back()
    return {"classified": classified, "messages": 1 + gathered.messages_taken}


def _classify(self, job_ids, gathered):
    """Run one pass over ``job_ids`` (one queue's); return the jobs classified."""
    jobs = job_states.claim(session, job_ids, retries=self.request.retries)
    if not jobs:
        logger.info("classify: nothing to do jobs=%d", len(job_ids))
        return 0

    faults.before_inference(jobs, current_app.config)

    cold = not engine_loaded()
    try:
        engine = get_engine()
        started = time.perf_counter()
        results = engine.classify(
            [job.text for job in jobs],
            batch_size=current_app.config["INFERENCE_BATCH_SIZE"],
        )
        inference_ms = (time.perf_counter() - started) * 1000
        release_free_memory()
    except SoftTimeLimitExceeded:
        if cold and self.request.retries < _COLD_START_RETRIES:
            # The time went on loading the model, not on these jobs: put
            # them back and run them again, now that the model is warm.
            logger.warning("classify: soft time limit on cold start, retrying")
            job_states.release(session, jobs)
            raise self.retry(
                countdown=_COLD_START_RETRY_SECONDS, max_retries=_COLD_START_RETRIES
            ) from None
        logger.warning("classify: soft time limit jobs=%d", len(jobs))
        webhook_tasks.enqueue(job_states.fail(session, jobs, _TIMED_OUT))
        raise
    except Exception as error:
        # Record why before Celery logs the traceback, so no job is left
        # "running" by a fault of the model.
        session.rollback()
        reason = f"classification failed: {type(error).__name__}"
        webhook_tasks.enqueue(job_states.fail(session, jobs, reason))
        raise

    delivery_ids = job_states.complete(
        session,
        jobs,
        results,
        inference_ms=inference_ms,
        review_threshold=current_app.config["REVIEW_CONFIDENCE_THRESHOLD"],
    )
    batches.record(
        session,
        state.client_for(current_app.config),
        queue=jobs[0].queue,
        batch_size=len(jobs),
        inference_ms=inference_ms,
    )
    # After the commit above, so a worker never looks for rows not yet there.
    webhook_tasks.enqueue(delivery_ids)
    logger.info(
        "classify: done batch_size=%d messages=%d inference_ms=%.1f queue=%s",
        len(jobs),
        1 + gathered.messages_taken,
        inference_ms,
        jobs[0].queue,
    )
    return len(jobs)
