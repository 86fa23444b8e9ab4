"""The alert hook: announce a new alert to webhook subscribers.

Not a task itself: ``anomaly.check`` calls :func:`notify` once per new
alert. When the webhook module is present (``tasks.webhooks`` with an
``enqueue_event(event_type, payload)`` function) the alert is handed to
it as the event ``alert.<type>``; until then the hook does nothing but
say so at debug level. Wiring it is a matter of providing that function
(or changing ``_WEBHOOK_MODULE``), nothing here.
"""

import importlib
import importlib.util
import logging

logger = logging.getLogger(__name__)

_WEBHOOK_MODULE = "tasks.webhooks"
_WEBHOOK_FUNCTION = "enqueue_event"
EVENT_PREFIX = "alert."


def event_type(alert):
    """Return the webhook event type of an alert dict: ``alert.<type>``."""
    return EVENT_PREFIX + alert["type"]


def _deliverer():
    if importlib.util.find_spec(_WEBHOOK_MODULE) is None:
        return None
    return getattr(importlib.import_module(_WEBHOOK_MODULE), _WEBHOOK_FUNCTION, None)


def notify(alert):
    """Hand a new alert (its dict) to webhook delivery when that exists.

    Returns:
        Whether the alert was handed over.
    """
    deliver = _deliverer()
    if deliver is None:
        logger.debug("alerts: no webhook delivery; alert=%d not sent", alert["id"])
        return False

    deliver(event_type(alert), alert)
    return True
