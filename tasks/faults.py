"""Test-only fault hooks of the classification task; off unless configured.

``FAULT_DELAY_BEFORE_INFERENCE_MS`` holds a claimed job long enough for a
test to kill its worker mid-job; ``FAULT_KILL_MARKER`` makes the worker
process SIGKILL itself on a job whose text contains the marker, as a
message that crashes its worker every time would. Production refuses
both settings (config.check), so these are no-ops there.
"""

import os
import signal
import time

from celery.utils.log import get_task_logger

logger = get_task_logger(__name__)


def before_inference(jobs, settings):
    """Sleep, or kill this process, as the test hooks in ``settings`` ask."""
    delay_ms = settings.get("FAULT_DELAY_BEFORE_INFERENCE_MS") or 0
    if delay_ms:
        time.sleep(delay_ms / 1000)
    marker = settings.get("FAULT_KILL_MARKER")
    if marker and any(marker in job.text for job in jobs):
        logger.warning("faults: kill marker found, killing pid=%d", os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)
