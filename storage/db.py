"""The SQLAlchemy engine and the scoped session every process uses."""

import logging

from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import scoped_session
from sqlalchemy.orm import sessionmaker

logger = logging.getLogger(__name__)

# One session per thread; the API removes it after each request and the
# workers after each task.
session = scoped_session(sessionmaker(expire_on_commit=False))
_state = {"engine": None, "url": None}


class Base(DeclarativeBase):
    """Declarative base of every model."""


_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


def _configure_sqlite(dbapi_connection, busy_timeout_seconds, synchronous):
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; the busy timeout makes a
    # writer wait for the lock instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def init_engine(url, *, busy_timeout_seconds=30, synchronous="FULL"):
    """Create (or reuse) the engine for ``url`` and bind the session to it.

    ``synchronous`` is SQLite's PRAGMA of that name (other databases
    ignore it).
    """
    if _state["url"] == url:
        return _state["engine"]

    synchronous = str(synchronous).upper()
    if synchronous not in _SYNCHRONOUS_LEVELS:
        raise ValueError(f"storage: synchronous must be one of {_SYNCHRONOUS_LEVELS}")
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": busy_timeout_seconds, "check_same_thread": False},
        )
        event.listen(
            engine,
            "connect",
            lambda conn, _record: _configure_sqlite(
                conn, busy_timeout_seconds, synchronous
            ),
        )
    else:
        engine = create_engine(url, pool_pre_ping=True)
    session.remove()
    session.configure(bind=engine)
    _state.update(engine=engine, url=url)
    return engine


def get_engine():
    """Return the bound engine; raise if :func:`init_engine` was not called."""
    if _state["engine"] is None:
        raise RuntimeError("storage: init_engine() has not been called")
    return _state["engine"]


def create_all():
    """Create every table that does not exist yet.

    TODO: there are no migrations, so columns added to an existing table
    (the key rotation columns, ``jobs.input_flags``) are missing from a
    database made by an older checkout. Acceptable while every deployment
    starts from a fresh database; add Alembic before the first upgrade that
    must keep its data.
    """
    from storage import models  # noqa: F401  (registers the tables)
    from storage import monitoring  # noqa: F401  (registers the tables)

    Base.metadata.create_all(get_engine())


def dispose_after_fork():
    """Drop connections inherited from the parent process (never reuse them)."""
    if _state["engine"] is not None:
        _state["engine"].dispose(close=False)
