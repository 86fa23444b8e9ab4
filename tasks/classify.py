"""Classification tasks.

``classify.jobs`` runs the model over one or more job ids in a single
forward pass and stores each result on its job row.

Idempotent: finished jobs are skipped, so a message redelivered after a
worker died (late acks with reject-on-worker-lost) does no work twice.
On failure the jobs are marked failed with the reason; a soft time limit
marks them failed and re-raises.
"""

import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from flask import current_app
from sqlalchemy.exc import OperationalError

from monitoring import batches
from monitoring import state
from storage import jobs as job_states
from storage.db import session

logger = get_task_logger(__name__)

_TIMED_OUT = "classification took longer than its time limit"


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
    """Classify the unfinished jobs among ``job_ids``; return a summary."""
    from classifier.engine import get_engine

    jobs = job_states.claim(session, job_ids)
    if not jobs:
        logger.info("classify: nothing to do jobs=%d", len(job_ids))
        return {"classified": 0}

    try:
        engine = get_engine()
        started = time.perf_counter()
        results = engine.classify(
            [job.text for job in jobs],
            batch_size=current_app.config["INFERENCE_BATCH_SIZE"],
        )
        inference_ms = (time.perf_counter() - started) * 1000
    except SoftTimeLimitExceeded:
        logger.warning("classify: soft time limit jobs=%d", len(jobs))
        job_states.fail(session, jobs, _TIMED_OUT)
        raise
    except Exception as error:
        # Record why before Celery logs the traceback, so no job is left
        # "running" by a fault of the model.
        session.rollback()
        job_states.fail(session, jobs, f"classification failed: {type(error).__name__}")
        raise

    job_states.complete(
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
    logger.info(
        "classify: done jobs=%d inference_ms=%.1f queue=%s",
        len(jobs),
        inference_ms,
        jobs[0].queue,
    )
    return {"classified": len(jobs)}
