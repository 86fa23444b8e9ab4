"""Helpers of the watch's tests: run a check, make events, read rows."""

import pytest
from sqlalchemy import select

from monitoring import checks
from monitoring import state
from storage.db import session
from storage.models import SecurityEvent

# Source addresses of test requests (TEST-NET-1, RFC 5737): they only fill
# REMOTE_ADDR in the test client's environ; nothing is sent anywhere.
ATTACKER = "192.0.2.66"
BYSTANDER = "192.0.2.10"


class Watch:
    """Runs the anomaly check in-process and keeps what it announced."""

    def __init__(self, app):
        self.app = app
        self.notified = []

    @property
    def redis(self):
        return state.client_for(self.app.config)

    def check(self, now=None):
        with self.app.app_context():
            return checks.run_check(
                session,
                self.redis,
                self.app.config,
                notify=self.notified.append,
                now=now,
            )

    def events(self, kind):
        with self.app.app_context():
            return session.scalars(
                select(SecurityEvent)
                .where(SecurityEvent.kind == kind)
                .order_by(SecurityEvent.id)
            ).all()


@pytest.fixture
def watch(app):
    """The watch of the test app."""
    return Watch(app)


def fail_logins(client, count, *, address=ATTACKER):
    """Send ``count`` requests with a wrong key from ``address``; return statuses."""
    statuses = []
    for n in range(count):
        response = client.get(
            "/v1/classifications?ids=x",
            headers={"Authorization": f"Bearer aca_deadbee{n % 10}_" + "x" * 43},
            environ_base={"REMOTE_ADDR": address},
        )
        statuses.append(response.status_code)
    return statuses
