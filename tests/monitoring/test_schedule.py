"""The Beat schedule and routes in the Celery settings."""

import config


def test_beat_schedule_runs_each_watch_task_at_its_interval():
    """Retention daily, checks every minute, re-fit daily, all on maintenance.

    The webhook dispatcher shares the schedule, on its own queue.
    """
    settings = config.load({})
    celery = config.celery_settings(settings)

    schedule = {
        name: entry["schedule"] for name, entry in celery["beat_schedule"].items()
    }
    assert schedule == {
        "maintenance.retention": 86400,
        "anomaly.check": 60,
        "anomaly.refit": 86400,
        "webhooks.dispatch": 5.0,
        "maintenance.sweep_queued": 300.0,
    }
    assert all(name == e["task"] for name, e in celery["beat_schedule"].items())
    assert celery["task_routes"] == {
        "webhooks.*": {"queue": "webhooks"},
        "maintenance.*": {"queue": "maintenance"},
        "anomaly.*": {"queue": "maintenance"},
    }
    for limits in celery["task_annotations"].values():
        assert limits["soft_time_limit"] < limits["time_limit"]


def test_intervals_and_thresholds_are_settings():
    """Environment variables change the schedule and the thresholds."""
    settings = config.load(
        {
            "AICRISISALERT_ANOMALY_CHECK_INTERVAL_SECONDS": "5",
            "AICRISISALERT_ALERT_FAILED_AUTH_PER_MINUTE": "3",
        }
    )

    celery = config.celery_settings(settings)

    assert celery["beat_schedule"]["anomaly.check"]["schedule"] == 5
    assert settings["ALERT_FAILED_AUTH_PER_MINUTE"] == 3
