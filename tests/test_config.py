import pytest

import config


def production_env(**values):
    env = {
        "AICRISISALERT_ENV": "production",
        "AICRISISALERT_SECRET_KEY": "s" * 40,
        "AICRISISALERT_KEY_PEPPER": "p" * 40,
        "AICRISISALERT_BROKER_URL": "redis://10.0.0.5:6379/0",
    }
    env.update(values)
    return {k: v for k, v in env.items() if v is not None}


@pytest.mark.parametrize("missing", ["SECRET_KEY", "KEY_PEPPER", "BROKER_URL"])
def test_production_refuses_to_start_without_required_setting(missing):
    """Production names the variable it lacks."""
    env = production_env(**{f"AICRISISALERT_{missing}": None})

    with pytest.raises(
        config.ConfigError, match=f"AICRISISALERT_{missing} must be set"
    ):
        config.load(env)


def test_production_starts_with_every_required_setting():
    """With all three set, production settings load and keep the values."""
    settings = config.load(production_env())

    assert settings["ENV"] == "production"
    assert settings["BROKER_URL"] == "redis://10.0.0.5:6379/0"


def test_defaults_work_on_a_fresh_machine():
    """Development defaults: SQLite under var/, Redis and the API on loopback."""
    settings = config.load({})

    assert settings["DATABASE_URL"].startswith("sqlite:///")
    assert settings["DATABASE_URL"].endswith("var/aicrisisalert.db")
    assert settings["BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert (settings["HOST"], settings["PORT"]) == ("127.0.0.1", 8000)


def test_environment_values_parse_as_json():
    """Numbers and nested Celery keys come through typed."""
    settings = config.load(
        {"AICRISISALERT_PORT": "8123", "AICRISISALERT_TEXT_MAX_CHARS": "500"}
    )

    assert settings["PORT"] == 8123
    assert settings["TEXT_MAX_CHARS"] == 500
    celery = config.celery_settings(settings)
    assert celery["broker_transport_options"]["queue_order_strategy"] == "priority"
    assert celery["task_acks_late"] and celery["task_reject_on_worker_lost"]
    assert celery["worker_prefetch_multiplier"] == 1
    assert celery["accept_content"] == ["json"]


def test_production_refuses_webhooks_to_private_addresses():
    """AICRISISALERT_WEBHOOK_ALLOW_PRIVATE is for development and tests only."""
    env = production_env(AICRISISALERT_WEBHOOK_ALLOW_PRIVATE="1")

    with pytest.raises(
        config.ConfigError, match="AICRISISALERT_WEBHOOK_ALLOW_PRIVATE is refused"
    ):
        config.load(env)
    assert config.load({"AICRISISALERT_WEBHOOK_ALLOW_PRIVATE": "1"})[
        "WEBHOOK_ALLOW_PRIVATE"
    ]
    assert config.load(production_env())["WEBHOOK_ALLOW_PRIVATE"] is False


def test_webhook_deliveries_have_their_queue_and_a_beat_dispatcher():
    """webhooks.* route to the webhooks queue; Beat runs the dispatcher."""
    celery = config.celery_settings(
        config.load({"AICRISISALERT_WEBHOOK_DISPATCH_INTERVAL_SECONDS": "2"})
    )

    assert celery["task_routes"]["webhooks.*"] == {"queue": "webhooks"}
    entry = celery["beat_schedule"]["webhooks.dispatch"]
    assert (entry["task"], entry["schedule"]) == ("webhooks.dispatch", 2.0)
    assert entry["options"]["queue"] == "webhooks"
    limits = celery["task_annotations"]["webhooks.deliver"]
    assert limits["soft_time_limit"] < limits["time_limit"]
    settings = config.load({})
    assert (
        settings["WEBHOOK_LEASE_SECONDS"] > settings["WEBHOOK_TASK_TIME_LIMIT_SECONDS"]
    )
