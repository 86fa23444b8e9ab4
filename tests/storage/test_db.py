"""The engine's SQLite settings."""

import pytest
from sqlalchemy import text

from storage import db


def test_sqlite_runs_in_wal_with_the_configured_synchronous(app):
    """Every connection is in WAL mode with synchronous NORMAL (the default)."""
    assert app.config["SQLITE_SYNCHRONOUS"] == "NORMAL"

    with db.get_engine().connect() as connection:
        mode = connection.execute(text("PRAGMA journal_mode")).scalar()
        synchronous = connection.execute(text("PRAGMA synchronous")).scalar()

    assert (mode, synchronous) == ("wal", 1)


def test_unknown_synchronous_level_is_refused(tmp_path):
    """A typo in SQLITE_SYNCHRONOUS stops start-up instead of being ignored."""
    with pytest.raises(ValueError, match="synchronous must be one of"):
        db.init_engine(f"sqlite:///{tmp_path / 'x.db'}", synchronous="fast")
