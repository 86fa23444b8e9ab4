"""Fixtures: a real Redis, a fresh database, the app, keys and real workers."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from app import create_app
from app.keys import service as key_service
from storage import db

ROOT = Path(__file__).resolve().parents[1]
HUMAID_DIR = ROOT.parent / "shared" / "data" / "humaid"


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, *, timeout, interval=0.1, message="condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class RedisServer:
    """A redis-server process owned by the suite, on its own port and folder."""

    def __init__(self, folder, *, appendonly=False):
        self.folder = Path(folder)
        self.port = free_port()
        self.appendonly = appendonly
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed (scripts/start-redis installs it)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: _pings(client), timeout=10, message="redis to start")
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _pings(client):
    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """URL of a real Redis: CI's (``AICRISISALERT_TEST_REDIS_URL``) or our own."""
    given = os.environ.get("AICRISISALERT_TEST_REDIS_URL")
    if given:
        yield given.rstrip("/")
        return

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(autouse=True)
def _restore_environment():
    """Give every test the environment it started with."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def make_test_config(redis_url, database_url, **overrides):
    """Return the mapping the factory gets in tests."""
    config = {
        "DATABASE_URL": database_url,
        "BROKER_URL": f"{redis_url}/0",
        "RESULT_BACKEND_URL": f"{redis_url}/1",
        "RATELIMIT_STORAGE_URL": f"{redis_url}/2",
    }
    config.update(overrides)
    return config


@pytest.fixture
def database_url(tmp_path):
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'test.db'}"


def build_app(redis_url, database_url, **overrides):
    """Return the API app on a flushed Redis and a fresh database.

    ``overrides`` are settings over the test config; the caller removes
    the database session when done (the fixtures below do).
    """
    for database in (0, 2):
        redis.Redis.from_url(f"{redis_url}/{database}").flushdb()
    application = create_app(make_test_config(redis_url, database_url, **overrides))
    db.create_all()
    return application


@pytest.fixture
def app(redis_url, database_url):
    """The API app on a fresh database and a flushed Redis."""
    yield build_app(redis_url, database_url)
    db.session.remove()


@pytest.fixture
def client(app):
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A CLI runner of the app."""
    return app.test_cli_runner()


class KeyMaker:
    """Creates API keys of a given role and builds their headers."""

    def __init__(self, app):
        self.app = app

    def __call__(self, role="operator", name="test", *, expires_at=None):
        with self.app.app_context():
            _row, key = key_service.create(
                db.session,
                name=name,
                role=role,
                pepper=self.app.config["KEY_PEPPER"],
                expires_at=expires_at,
            )
        return key

    def headers(self, role="operator"):
        return {"Authorization": f"Bearer {self(role)}"}


@pytest.fixture
def make_key(app):
    """Factory of API keys for the app."""
    return KeyMaker(app)


class LiveServer:
    """A real HTTP server (Werkzeug's, threaded) serving an app on 127.0.0.1."""

    def __init__(self, application):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, application, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.thread.join(timeout=10)


class Worker:
    """A real ``celery worker`` process on the test Redis and database."""

    def __init__(self, env, queues, log_path, *, concurrency=1, extra=()):
        self.env = env
        self.queues = queues
        self.log_path = Path(log_path)
        self.concurrency = concurrency
        self.extra = list(extra)
        self.process = None

    def start(self, *, wait=True):
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "worker",
                "-Q",
                self.queues,
                "--concurrency",
                str(self.concurrency),
                "--hostname",
                f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                *self.extra,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            wait_for(
                lambda: b"ready." in self.log_path.read_bytes() or self._died(),
                timeout=60,
                message="the worker to be ready",
            )
            if self._died():
                raise AssertionError(self.log_path.read_text(errors="replace")[-3000:])
        return self

    def _died(self):
        return self.process.poll() is not None

    def children(self):
        """Return the PIDs of the worker's pool processes."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def kill(self, sig=signal.SIGKILL):
        """Send ``sig`` to the worker's whole process group (ours only)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class Beat:
    """A real ``celery beat`` process, its schedule file in a test folder."""

    def __init__(self, env, folder):
        self.env = env
        self.folder = Path(folder)
        self.log_path = self.folder / "beat.log"
        self.process = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "beat",
                "--schedule",
                str(self.folder / "celerybeat-schedule"),
                "--loglevel",
                "DEBUG",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: (
                b"beat: Starting" in self.log_path.read_bytes()
                or self.process.poll() is not None
            ),
            timeout=60,
            message="beat to start",
        )
        if self.process.poll() is not None:
            raise AssertionError(self.log_path.read_text(errors="replace")[-3000:])
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.log.close()


def service_env(redis_url, database_url, **settings):
    """Environment for a process of ours (a worker, gunicorn, a command).

    It uses the test Redis and database and the test config's secrets, so a
    key made by the ``app`` fixture authenticates there too.
    """
    env = dict(os.environ)
    env.update(
        AICRISISALERT_DATABASE_URL=database_url,
        AICRISISALERT_BROKER_URL=f"{redis_url}/0",
        AICRISISALERT_RESULT_BACKEND_URL=f"{redis_url}/1",
        AICRISISALERT_RATELIMIT_STORAGE_URL=f"{redis_url}/2",
        AICRISISALERT_SECRET_KEY="testing-secret-key",
        AICRISISALERT_KEY_PEPPER="testing-key-pepper",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update({f"AICRISISALERT_{k}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture
def start_worker(redis_url, database_url, tmp_path):
    """Start real workers for a test; all are stopped at teardown."""
    started = []

    def start(queues="emergency,standard", *, wait=True, settings=None, **kwargs):
        env = service_env(redis_url, database_url, **(settings or {}))
        log = tmp_path / f"worker-{len(started)}.log"
        worker = Worker(env, queues, log, **kwargs)
        started.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in started:
        worker.stop()


def _database_backends():
    backends = ["sqlite"]
    if os.environ.get("AICRISISALERT_TEST_POSTGRES_URL"):
        backends.append("postgresql")
    return backends


@pytest.fixture(params=_database_backends())
def any_database_url(request, tmp_path):
    """A fresh database on each backend available: SQLite, and PostgreSQL in CI.

    PostgreSQL runs only where ``AICRISISALERT_TEST_POSTGRES_URL`` names a
    server (``.ci/run`` starts one); its tables are dropped and re-created.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"

    from sqlalchemy import create_engine

    from storage import models  # noqa: F401  (registers the tables)

    url = os.environ["AICRISISALERT_TEST_POSTGRES_URL"]
    engine = create_engine(url)
    db.Base.metadata.drop_all(engine)
    engine.dispose()
    return url
