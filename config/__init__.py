"""Settings: defaults here, then ``AICRISISALERT_*`` variables, then a test mapping.

Values of environment variables are parsed as JSON where they parse (so
``AICRISISALERT_PORT=8001`` is a number), and a double underscore nests
(``AICRISISALERT_CELERY__worker_concurrency=2``); this is Flask's
``from_prefixed_env``. :func:`load` returns the merged mapping for
processes without a Flask app (gunicorn's config, the benchmarks).
"""

import json
import os
from pathlib import Path

ENV_PREFIX = "AICRISISALERT"
ROOT_DIR = Path(__file__).resolve().parents[1]
VAR_DIR = ROOT_DIR / "var"


class ConfigError(RuntimeError):
    """A setting is missing or unsafe for the mode the service runs in."""


class DefaultConfig:
    """Every setting, with a default that works on a fresh machine."""

    # "development" or "production"; production refuses unsafe defaults.
    ENV = "development"
    # Signs sessions and CSRF tokens. Required (and never this) in production.
    SECRET_KEY = "dev-only-secret-key"
    # Server-side pepper of the HMAC that API keys are stored under.
    KEY_PEPPER = "dev-only-key-pepper"
    # Any SQLAlchemy URL; SQLite runs in WAL mode with a busy timeout.
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'aicrisisalert.db'}"
    # Seconds a SQLite writer waits for a lock before giving up.
    SQLITE_BUSY_TIMEOUT_SECONDS = 30
    # SQLite's PRAGMA synchronous. In WAL mode "NORMAL" syncs the log at
    # checkpoints, not at every commit: a committed row survives any
    # process crash (the job row is committed before its 202, always), and
    # only an OS crash or power cut may undo the last commits. "FULL" syncs
    # every commit, a disk flush on the path of each submit.
    SQLITE_SYNCHRONOUS = "NORMAL"
    # The Celery broker; required in production.
    BROKER_URL = "redis://127.0.0.1:6379/0"
    # Where Celery keeps task states (each key expires, see RESULT_EXPIRES).
    RESULT_BACKEND_URL = "redis://127.0.0.1:6379/1"
    # Where the API listens (gunicorn's bind).
    HOST = "127.0.0.1"
    PORT = 8000
    # gunicorn worker processes for the API, and threads in each
    # (config/gunicorn.py says why 2 and 4 on two cores).
    WEB_WORKERS = 2
    WEB_THREADS = 4
    # gunicorn's access log: "-" for stderr, a file path, or None for none
    # (every request is also a request-log row in the database).
    WEB_ACCESS_LOG = "-"
    # Text limits, counted in characters after trimming whitespace.
    TEXT_MIN_CHARS = 3
    TEXT_MAX_CHARS = 10_000
    # Largest request body of a single submit, in bytes (10,000 characters
    # of four-byte UTF-8 escaped as JSON fit with room to spare).
    MAX_BODY_BYTES = 256 * 1024
    # A result whose confidence falls below this is marked needs_review.
    REVIEW_CONFIDENCE_THRESHOLD = 0.5
    # Seconds after which a message taken by a worker that died is handed
    # to another worker. Above the hard time limit, so a live task is
    # never run twice; with UNACKED_RESTORE_INTERVAL_SECONDS it bounds how
    # long a dead worker's job waits (50 + 5: under a minute).
    VISIBILITY_TIMEOUT_SECONDS = 50
    # Seconds between a worker's scans for such messages. Kombu's default
    # scans every 10th tick of 10 s, which adds up to 100 s to the wait.
    UNACKED_RESTORE_INTERVAL_SECONDS = 5
    # Soft and hard limits of one classification task, in seconds.
    TASK_SOFT_TIME_LIMIT_SECONDS = 30
    TASK_TIME_LIMIT_SECONDS = 45
    # Seconds Celery keeps a task's state in Redis.
    RESULT_EXPIRES_SECONDS = 3600
    # Seconds an API call waits on Redis before answering 503.
    BROKER_TIMEOUT_SECONDS = 1.0
    # Texts a worker runs through the model in one forward pass (the jobs
    # a worker gathers, below, are sorted by length and cut into passes of
    # this size). 16, not 32: with one torch thread a pass of 16 costs no
    # more per text than one of 32, and it pads less, because a gather is
    # too few texts for neighbours in length order to be close in length.
    # Measured in-process on the first 2,000 test tweets, one thread, in
    # gathers of 128: 5.10 ms of CPU a text at 16, 5.35 at 32 (sorted as a
    # whole, as the engine benchmark runs: 4.68 and 4.67).
    INFERENCE_BATCH_SIZE = 16
    # Log level of every process.
    LOG_LEVEL = "INFO"
    # Flower's bind address and port; it asks for these credentials.
    FLOWER_ADDRESS = "127.0.0.1"
    FLOWER_PORT = 5555
    FLOWER_BASIC_AUTH = "admin:change-me"
    # Extra Celery settings, merged over those derived in celery_settings().
    CELERY = {}

    # --- Serving: batch submission and worker-side batching ---------------
    # Items one POST /v1/classifications/batch may carry.
    BATCH_MAX_ITEMS = 1000
    # Largest request body of a batch submit, in bytes; every other
    # endpoint keeps MAX_BODY_BYTES. 16 MiB holds 1,000 items of about
    # 16 KB each: a batch of long texts must be sent in smaller batches.
    BATCH_MAX_BODY_BYTES = 16 * 1024 * 1024
    # Job ids per broker message when a batch is enqueued: one message per
    # chunk, all published over one broker connection.
    BATCH_JOBS_PER_MESSAGE = 32
    # For the rate limits a batch counts as one request per this many
    # items, rounded up (1,000 items are 10 requests), so a batch is cheap
    # but not a way round the limit.
    RATELIMIT_BATCH_ITEMS_PER_REQUEST = 100
    # Jobs a classification task gathers for one forward pass: its own
    # message's, then more waiting messages of the worker's queues taken
    # straight from the broker (emergency first), up to about this many.
    # Measured with `make run` on two cores (bench.e2e --n 2000, one run
    # each, passes of 16): stack/engine 0.84 at 128 (315 texts/s), 0.75 at
    # 256 (300 texts/s: 2,000 jobs are only eight gathers, and the last
    # leaves a process idle); at 64 with passes of 32, 0.65 (266 texts/s).
    # bench.priority at 128: idle p99 73 ms, loaded p99 41 ms, no standard
    # job ahead of a waiting emergency.
    WORKER_BATCH_MAX_JOBS = 128
    # A worker that consumes no emergency queue (worker-standard) gathers
    # a deep backlog in bigger sets: a 1/WORKER_BATCH_BACKLOG_SHARE part of
    # the jobs waiting, at least WORKER_BATCH_MAX_JOBS and at most this
    # many (tasks/batching.backlog_target). Sorted by length, a bigger set
    # pads less: on the first 2,000 test tweets in passes of 16, padding
    # adds 8.2% to the tokens run in sets of 128 and 2.3% in sets of 512.
    # 512 jobs are about 2.5 s of one core, far inside the task time limit.
    # Known limit: worker-standard runs under SCHED_IDLE, so if the web tier
    # kept both cores saturated for TASK_SOFT_TIME_LIMIT_SECONDS, a gather
    # would hit the time limit and its jobs would end failed with that
    # reason (not lost, not left running); a bigger gather needs a longer
    # starvation for that (under 9% of a core for 30 s at 512 jobs).
    # Measured end to end (bench.e2e --n 2000, two runs each): stack/engine
    # 0.77 and 0.81 with this gathering and the client's in-order polling,
    # 0.75 and 0.70 before both. Sets of at least 256 did no better than
    # at least 128 (stack 350 against 346 texts/s, mean of four and two).
    WORKER_BATCH_BACKLOG_MAX_JOBS = 512
    WORKER_BATCH_BACKLOG_SHARE = 4
    # Milliseconds a standard task waits for more messages when it has
    # fewer than WORKER_BATCH_MAX_JOBS, so that a lone job is never held
    # back longer than this. Emergency jobs never wait, and an emergency
    # that arrives during the wait ends it.
    WORKER_BATCH_WAIT_MS = 20
    # Torch threads per worker process (AICRISISALERT_TORCH_THREADS, read by
    # workers/celery_app.py before torch loads; default 1): the classify
    # workers' processes together should use each core once (the Procfile's
    # two classify workers with one process each on two cores).

    # --- Security: keys, rate limits, proxies, headers -----------------------
    # Seconds a rotated key keeps working beside its replacement, so clients
    # can switch over without an outage (`flask keys rotate`, POST
    # /v1/keys/<prefix>/rotate). A rotation may ask for less, never more
    # than KEY_MAX_GRACE_SECONDS.
    KEY_ROTATION_GRACE_SECONDS = 24 * 3600
    KEY_MAX_GRACE_SECONDS = 30 * 24 * 3600
    # Seconds a process may authenticate from its cached copy of a key row
    # (security/keycache.py). Any committed change to a key also empties
    # the caches through a counter in the watch's Redis, checked on every
    # request, so this bounds how late a change takes effect only while
    # that Redis is down. 0 reads the row on every request.
    KEY_CACHE_SECONDS = 5.0
    # Rate limits (app/limits.py; limit strings in the notation of the limits
    # library: https://limits.readthedocs.io/en/stable/quickstart.html).
    # On by default; the test config turns them off and the tests of limits
    # turn them back on.
    RATELIMIT_ENABLED = True
    # Where the counters, strikes and bans live, shared by every gunicorn
    # worker. A Redis database of its own, apart from the broker's.
    RATELIMIT_STORAGE_URL = "redis://127.0.0.1:6379/2"
    # Seconds a limiter call waits on Redis before the request goes on
    # without it (classification endpoints) or gets a 503 (key management).
    RATELIMIT_STORAGE_TIMEOUT_SECONDS = 0.3
    # The seed's standard limit: 100 requests an hour with a burst of 20 a
    # minute, shared by every standard endpoint. It applies per key to the
    # roles not named in RATELIMIT_BY_ROLE, and per client address to
    # requests without a valid key (on every endpoint, emergency included).
    RATELIMIT_STANDARD = "100/hour;20/minute"
    # Per-role limits on the standard endpoints. Operators and admins are
    # the service's own staff and run `python -m app.client submit ...
    # --limit 500` (500 submits and about 150 bulk polls in a minute or
    # two), which the standard limit would cut off after 20.
    RATELIMIT_BY_ROLE = {
        "admin": "6000/hour;1200/minute",
        "operator": "6000/hour;1200/minute",
    }
    # The emergency endpoint is exempt from the limits above and has its own
    # bucket per key with this ceiling against floods.
    RATELIMIT_EMERGENCY = "1200/minute"
    # Progressive bans: a key or address that gets this many 429s within
    # the window is banned; the first ban lasts BAN_BASE_SECONDS and each
    # further ban within BAN_MEMORY_SECONDS lasts BAN_GROWTH times longer,
    # up to BAN_MAX_SECONDS.
    BAN_AFTER_BREACHES = 10
    BAN_BREACH_WINDOW_SECONDS = 600
    BAN_BASE_SECONDS = 300
    BAN_GROWTH = 2
    BAN_MAX_SECONDS = 24 * 3600
    BAN_MEMORY_SECONDS = 7 * 24 * 3600
    # Reverse proxies in front of the API that append to X-Forwarded-For
    # and set X-Forwarded-Proto/-Host (Werkzeug's ProxyFix). 0 means the
    # client address and scheme come from the socket, and forwarded headers
    # are ignored: a client cannot pick its own rate-limit bucket.
    TRUSTED_PROXY_COUNT = 0
    # Security headers (flask-talisman: https://github.com/wntrblm/flask-talisman).
    # On by default; the test config turns them off.
    TALISMAN_ENABLED = True
    # Redirect plain HTTP to HTTPS with a 308 (the method and body are kept,
    # a POST never turns into a GET); /health and /ready are exempt so
    # probes work. Off in development, where the API listens on plain HTTP
    # on 127.0.0.1; turn it on wherever TLS terminates in front of the API
    # (and set TRUSTED_PROXY_COUNT so the proxy's scheme is believed).
    FORCE_HTTPS = False
    # Strict-Transport-Security max-age, sent only over HTTPS.
    HSTS_MAX_AGE_SECONDS = 365 * 24 * 3600
    # --- Webhooks -------------------------------------------------------
    # Deliver to http:// and to loopback and private (RFC 1918, fc00::/7)
    # addresses. For development and tests only: production refuses it.
    # Link-local, metadata, CGNAT, multicast and the other refused ranges
    # stay refused even when this is on.
    WEBHOOK_ALLOW_PRIVATE = False
    # Attempts per delivery before it is dead-lettered. With the backoff
    # below (60 s doubling to a 4 h cap, 13 waits) the last attempt comes
    # about 24 h after the first.
    WEBHOOK_MAX_ATTEMPTS = 14
    # The wait after the first failed attempt; it doubles after each.
    WEBHOOK_RETRY_BASE_SECONDS = 60.0
    # The longest wait between two attempts (a Retry-After is capped too).
    WEBHOOK_RETRY_MAX_SECONDS = 4 * 3600.0
    # Each wait is scaled by a random factor in [1 - jitter, 1 + jitter].
    WEBHOOK_RETRY_JITTER = 0.2
    # Seconds to open the TCP (and TLS) connection, and to wait for each
    # read of the response.
    WEBHOOK_CONNECT_TIMEOUT_SECONDS = 3.0
    WEBHOOK_READ_TIMEOUT_SECONDS = 10.0
    # Bytes of a response read before the connection is closed; the body
    # is never stored or shown, only the status code.
    WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024
    # A CA bundle to verify receivers' certificates with (None: the system's).
    WEBHOOK_CA_FILE = None
    # How often Beat runs the dispatcher that enqueues due deliveries.
    WEBHOOK_DISPATCH_INTERVAL_SECONDS = 5.0
    # Deliveries the dispatcher enqueues per run at most.
    WEBHOOK_DISPATCH_BATCH = 500
    # Seconds a delivery stays leased to the message that was enqueued for
    # it; after that the dispatcher enqueues it again. Well above the task's
    # hard time limit, so a live attempt is never duplicated.
    WEBHOOK_LEASE_SECONDS = 300
    # Soft and hard limits of one delivery task, in seconds.
    WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS = 30
    WEBHOOK_TASK_TIME_LIMIT_SECONDS = 40
    # Default and largest overlap, in seconds, during which a rotated-out
    # secret still signs deliveries alongside the new one.
    WEBHOOK_SECRET_OVERLAP_SECONDS = 24 * 3600
    WEBHOOK_MAX_SECRET_OVERLAP_SECONDS = 7 * 24 * 3600
    # Endpoints one API key may register.
    WEBHOOK_MAX_ENDPOINTS_PER_KEY = 20
    # --- Monitoring: logs, metrics, retention, anomaly checks, response ---
    # "text" or "json" (one JSON object a line); production defaults to json.
    LOG_FORMAT = None
    # Seconds between writes of the request-log rows and key usage a
    # process holds (monitoring/requestlog.py): one transaction for all
    # of them instead of two commits per request. A process killed
    # outright loses at most this much of them. 0 writes each at once.
    REQUESTLOG_FLUSH_SECONDS = 1.0
    # Redis holding the blocklist, the detailed-logging switch and the
    # metric counters; None means the broker's Redis (keys are prefixed).
    MONITOR_REDIS_URL = None
    # Days each kind of record is kept. Classifications are the job rows;
    # request logs the per-request rows (never the text); metrics the
    # per-batch inference rows; audit records the security events, alerts,
    # response actions, evidence and retention runs.
    RETENTION_CLASSIFICATIONS_DAYS = 365
    RETENTION_REQUEST_LOGS_DAYS = 90
    RETENTION_METRICS_DAYS = 30
    RETENTION_AUDIT_DAYS = 2555
    # Rows deleted per statement and commit, so a backlog never holds the
    # database lock for long.
    RETENTION_BATCH_SIZE = 1000
    # Seconds between retention runs (Beat).
    RETENTION_INTERVAL_SECONDS = 86400
    # Seconds between anomaly checks (Beat).
    ANOMALY_CHECK_INTERVAL_SECONDS = 60
    # Thresholds of the seed's alert rules: an alert is raised above each.
    ALERT_FAILED_AUTH_PER_MINUTE = 10
    ALERT_RATE_LIMITED_PER_HOUR = 5
    ALERT_SUSPICIOUS_INPUT_PER_HOUR = 20
    ALERT_ANOMALY_SCORE = 0.8
    # A key or address raises an anomaly alert when at least this many of
    # its requests in the window score above ALERT_ANOMALY_SCORE (a single
    # odd request is not an incident).
    ALERT_ANOMALY_MIN_REQUESTS = 5
    # Seconds of recent requests each anomaly check scores (the seed's 5).
    ANOMALY_WINDOW_SECONDS = 300
    # An alert stays open while its condition is seen again within this
    # many seconds; only after that quiet time does a new alert start.
    ALERT_QUIET_SECONDS = 900
    # The IsolationForest file, its baseline and how often it is re-fitted.
    ANOMALY_MODEL_PATH = str(VAR_DIR / "anomaly-model.joblib")
    ANOMALY_BASELINE_DAYS = 14
    ANOMALY_BASELINE_MAX_ROWS = 50_000
    ANOMALY_BASELINE_MIN_ROWS = 200
    ANOMALY_REFIT_INTERVAL_SECONDS = 86400
    # Baseline score quantile mapped to 0.8: about 1 % of ordinary requests
    # score above the default threshold, one at a time.
    ANOMALY_CALIBRATION_QUANTILE = 0.99
    # Automatic response per alert type, in order. Actions: revoke_key,
    # block_address, detailed_logging, collect_evidence. An action that
    # does not fit the alert's subject (revoking with no key) is skipped.
    RESPONSE_ACTIONS = {
        "failed_auth_rate": ["block_address", "collect_evidence"],
        "rate_limit_violations": ["detailed_logging", "collect_evidence"],
        "suspicious_input_rate": ["revoke_key", "collect_evidence"],
        "anomalous_requests": ["detailed_logging", "collect_evidence"],
    }
    # Seconds an automatic block and detailed logging last.
    RESPONSE_BLOCK_SECONDS = 3600
    RESPONSE_DETAILED_LOGGING_SECONDS = 3600
    # Requests and security events an evidence record keeps, at most each.
    EVIDENCE_MAX_ROWS = 200
    # Soft and hard limits of a retention run or a re-fit, in seconds.
    MAINTENANCE_SOFT_TIME_LIMIT_SECONDS = 1800
    MAINTENANCE_TIME_LIMIT_SECONDS = 1900
    # --- Faults: recycling, the queued-job sweeper, test-only hooks ------
    # A worker process is replaced after this many tasks, or after a task
    # that leaves it above this resident size (KiB; a process holding the
    # model is about 450 MB). Both take effect between tasks, so no job in
    # flight is lost.
    WORKER_MAX_TASKS_PER_CHILD = 10_000
    WORKER_MAX_MEMORY_PER_CHILD_KB = 1_200_000
    # Beat runs the sweeper this often. A job still unfinished (queued, or
    # running with no live task) this long after it was created may have
    # lost its message (Redis restarted without its append-only file, or a
    # task ran out of retries on a locked database): it is published again,
    # at most once per SWEEP_QUEUED_AFTER_SECONDS. Well above the time a
    # 10,000-job backlog takes to drain, so a message still waiting is
    # rarely duplicated (and a duplicate finds the job finished).
    SWEEP_INTERVAL_SECONDS = 300
    SWEEP_QUEUED_AFTER_SECONDS = 900
    # A job still unfinished this long is failed with a reason instead.
    SWEEP_QUEUED_FAIL_AFTER_SECONDS = 6 * 3600
    # Jobs the sweeper handles per run at most.
    SWEEP_BATCH = 1000
    # Test-only hooks, off by default; production refuses them. The first
    # makes a classification sleep this long after claiming its jobs, so a
    # test can kill the worker mid-job; the second makes the worker process
    # SIGKILL itself on a job whose text contains the marker.
    FAULT_DELAY_BEFORE_INFERENCE_MS = 0
    FAULT_KILL_MARKER = None


class TestingConfig(DefaultConfig):
    """Settings the suite starts from; tests override the URLs."""

    TESTING = True
    SECRET_KEY = "testing-secret-key"
    KEY_PEPPER = "testing-key-pepper"
    # Off unless a test is about them (those tests turn them on).
    RATELIMIT_ENABLED = False
    TALISMAN_ENABLED = False
    # Rows are in the database as soon as the request is answered; the
    # tests of batching set a flush interval of their own.
    REQUESTLOG_FLUSH_SECONDS = 0


# Settings production will not run without, and the variable that sets each.
_REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "KEY_PEPPER", "BROKER_URL")


def check(settings, environ=None):
    """Refuse to run production on a missing or default secret or broker.

    Raises:
        ConfigError: naming the environment variable to set.
    """
    environ = os.environ if environ is None else environ
    if settings.get("ENV") != "production":
        return

    for key in _REQUIRED_IN_PRODUCTION:
        variable = f"{ENV_PREFIX}_{key}"
        value = settings.get(key)
        if not value or value == getattr(DefaultConfig, key) or variable not in environ:
            raise ConfigError(f"{variable} must be set in production")
    for hook in ("FAULT_DELAY_BEFORE_INFERENCE_MS", "FAULT_KILL_MARKER"):
        if settings.get(hook):
            raise ConfigError(
                f"{ENV_PREFIX}_{hook} is a test hook, refused in production"
            )
    if settings.get("WEBHOOK_ALLOW_PRIVATE"):
        raise ConfigError(
            f"{ENV_PREFIX}_WEBHOOK_ALLOW_PRIVATE is refused in production: "
            "webhooks must not reach private addresses"
        )


def celery_settings(settings):
    """Return the Celery configuration derived from the settings."""
    derived = {
        "broker_url": settings["BROKER_URL"],
        "result_backend": settings["RESULT_BACKEND_URL"],
        "result_expires": settings["RESULT_EXPIRES_SECONDS"],
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": settings["WORKER_MAX_TASKS_PER_CHILD"],
        "worker_max_memory_per_child": settings["WORKER_MAX_MEMORY_PER_CHILD_KB"],
        "task_soft_time_limit": settings["TASK_SOFT_TIME_LIMIT_SECONDS"],
        "task_time_limit": settings["TASK_TIME_LIMIT_SECONDS"],
        "task_default_queue": "standard",
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # Queues are polled in the order the worker lists them (BRPOP
            # over all keys at once, first non-empty wins), instead of
            # round-robin: "-Q emergency,standard" drains emergency first.
            "queue_order_strategy": "priority",
            "visibility_timeout": settings["VISIBILITY_TIMEOUT_SECONDS"],
            "unacked_restore_interval": settings["UNACKED_RESTORE_INTERVAL_SECONDS"],
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": settings["BROKER_TIMEOUT_SECONDS"],
            "socket_timeout": max(5.0, settings["BROKER_TIMEOUT_SECONDS"]),
            # A publisher that cannot reach Redis gives up after one quick
            # retry, so the API answers 503 at once instead of hanging; the
            # worker's consumer reconnects by its own, patient, loop.
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        "result_backend_transport_options": {
            "socket_connect_timeout": settings["BROKER_TIMEOUT_SECONDS"],
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        # No "task-sent" event: it is a second publish on every submit
        # (about half the cost of enqueueing a job). Flower still sees each
        # task from the moment a worker receives it.
        "task_send_sent_event": False,
        # Webhook delivery and the watch have queues and workers of their
        # own, so a slow receiver or a flood of classifications never holds
        # up the others.
        "task_routes": {
            "webhooks.*": {"queue": "webhooks"},
            "maintenance.*": {"queue": "maintenance"},
            "anomaly.*": {"queue": "maintenance"},
        },
        "task_annotations": {
            "webhooks.deliver": {
                "soft_time_limit": settings["WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS"],
                "time_limit": settings["WEBHOOK_TASK_TIME_LIMIT_SECONDS"],
            },
            **{
                name: {
                    "soft_time_limit": settings["MAINTENANCE_SOFT_TIME_LIMIT_SECONDS"],
                    "time_limit": settings["MAINTENANCE_TIME_LIMIT_SECONDS"],
                }
                for name in ("maintenance.retention", "anomaly.refit")
            },
        },
        "beat_schedule": {
            "webhooks.dispatch": {
                "task": "webhooks.dispatch",
                "schedule": float(settings["WEBHOOK_DISPATCH_INTERVAL_SECONDS"]),
                # A dispatch nobody ran in time is dropped: the next one
                # covers the same deliveries.
                "options": {
                    "queue": "webhooks",
                    "expires": float(settings["WEBHOOK_DISPATCH_INTERVAL_SECONDS"]),
                },
            },
            "maintenance.retention": {
                "task": "maintenance.retention",
                "schedule": settings["RETENTION_INTERVAL_SECONDS"],
            },
            "anomaly.check": {
                "task": "anomaly.check",
                "schedule": settings["ANOMALY_CHECK_INTERVAL_SECONDS"],
                # A check that could not start within its interval is
                # superseded by the next one.
                "options": {"expires": settings["ANOMALY_CHECK_INTERVAL_SECONDS"]},
            },
            "anomaly.refit": {
                "task": "anomaly.refit",
                "schedule": settings["ANOMALY_REFIT_INTERVAL_SECONDS"],
            },
            "maintenance.sweep_queued": {
                "task": "maintenance.sweep_queued",
                "schedule": float(settings["SWEEP_INTERVAL_SECONDS"]),
                "options": {
                    "queue": "maintenance",
                    "expires": float(settings["SWEEP_INTERVAL_SECONDS"]),
                },
            },
        },
    }
    derived.update(settings.get("CELERY") or {})
    return derived


def load(environ=None):
    """Return the merged settings as a plain dict, checked for production."""
    from flask import Config

    config = Config(str(ROOT_DIR))
    config.from_object(DefaultConfig)
    if environ is None:
        config.from_prefixed_env(prefix=ENV_PREFIX, loads=_loads)
    else:
        for key, value in environ.items():
            if key.startswith(f"{ENV_PREFIX}_"):
                config[key[len(ENV_PREFIX) + 1 :]] = _loads(value)
    settings = dict(config)
    check(settings, environ)
    return settings


def _loads(value):
    """Parse a variable as JSON when it parses; keep it as text otherwise."""
    try:
        return json.loads(value)
    except ValueError:
        return value
