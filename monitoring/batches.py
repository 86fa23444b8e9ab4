"""Recording each forward pass of the model: a metrics row and histograms."""

import logging

from sqlalchemy.exc import SQLAlchemyError

from monitoring import metrics
from storage.monitoring import InferenceBatch

logger = logging.getLogger(__name__)


def record(session, client, *, queue, batch_size, inference_ms):
    """Store one batch's size and latency; a fault is logged, never raised.

    The classification is already committed when this runs: losing a
    metric must not fail the job.
    """
    try:
        session.add(
            InferenceBatch(
                queue=queue, batch_size=batch_size, inference_ms=inference_ms
            )
        )
        session.commit()
    except SQLAlchemyError as error:
        session.rollback()
        logger.warning("batches: row not written error=%s", type(error).__name__)
    labels = {"queue": queue}
    metrics.safely(
        metrics.observe,
        client,
        "inference_latency_seconds",
        labels,
        inference_ms / 1000,
    )
    metrics.safely(metrics.observe, client, "inference_batch_size", labels, batch_size)
