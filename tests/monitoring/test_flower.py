"""Flower as the Procfile starts it: loopback only, behind basic auth."""

import base64
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.conftest import free_port
from tests.conftest import service_env
from tests.conftest import wait_for

CREDENTIALS = "watcher:flower-test-pass"


def _listening(port):
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _status(port, credentials=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    if credentials:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def flower(redis_url, database_url, tmp_path):
    """A real Flower process with our config on a free port."""
    port = free_port()
    env = service_env(
        redis_url, database_url, FLOWER_PORT=port, FLOWER_BASIC_AUTH=CREDENTIALS
    )
    log = open(tmp_path / "flower.log", "ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "flower",
            "--conf=config/flower.py",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: _listening(port) or process.poll() is not None,
            timeout=60,
            message="flower to listen",
        )
        assert process.poll() is None, (tmp_path / "flower.log").read_text()
        yield port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        log.close()


def test_flower_refuses_without_credentials_and_admits_with_them(flower):
    """No or wrong credentials get 401; the configured ones get the dashboard."""
    assert _status(flower) == 401
    assert _status(flower, "watcher:wrong") == 401
    assert _status(flower, CREDENTIALS) == 200


def test_flower_config_binds_loopback_with_auth():
    """config/flower.py binds 127.0.0.1 by default and always sets basic auth."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICRISISALERT_")}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import config.flower as f; print(f.address, f.basic_auth)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert out.strip() == "127.0.0.1 ['admin:change-me']"
