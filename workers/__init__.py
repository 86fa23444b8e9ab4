"""The Celery worker entry: queues, routing, reliability, per-process setup."""
