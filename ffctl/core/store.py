"""Engine, sessions and migrations for both backends.

Transactions: ``store.session(write=True)`` takes SQLite's write lock up front (``BEGIN
IMMEDIATE``) so that concurrent ffctl processes queue on the busy timeout instead of failing
half way; on PostgreSQL it is an ordinary READ COMMITTED transaction and writers lock rows
(``FOR UPDATE`` / ``SKIP LOCKED``) where they need to.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from ffctl.core.errors import StoreError, mask_url

SQLITE_BUSY_TIMEOUT_MS = 60_000
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:
    write = conn.get_execution_options().get("ffctl_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """One database: an engine plus the way ffctl opens transactions on it."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                f"unsupported database URL {mask_url(url)!r}: use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST/DB"
            )
        kwargs: dict = {"echo": echo}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            path = self.url.split("///", 1)[1] if "///" in self.url else ""
            if path and path != ":memory:" and not Path(path).parent.exists():
                raise StoreError(f"cannot open {mask_url(url)}: folder {Path(path).parent} does not exist")
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on success and rolled back on error."""
        try:
            conn = self.engine.connect()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot connect to {mask_url(self.url)}: {_first_line(exc)}") from None
        with conn:
            conn = conn.execution_options(ffctl_write=write)
            with Session(bind=conn, expire_on_commit=False, autoflush=True) as session:
                with session.begin():
                    yield session

    # --- migrations --------------------------------------------------------------------------
    def _alembic_config(self):
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["ffctl_engine"] = self.engine
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        try:
            command.upgrade(self._alembic_config(), revision)
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot upgrade {mask_url(self.url)}: {_first_line(exc)}") from None

    def current_revision(self) -> str | None:
        """The store's schema revision (None for an empty store), read without loading Alembic."""
        try:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot connect to {mask_url(self.url)}: {_first_line(exc)}") from None

    def head_revision(self) -> str:
        """The revision this ffctl's migrations end at (``migrations.HEAD``; a test keeps it true)."""
        from ffctl.migrations import HEAD

        return HEAD

    def check_schema(self) -> None:
        """Refuse to work on a store that is empty or behind this version of ffctl."""
        current, head = self.current_revision(), self.head_revision()
        if current == head:
            return
        if current is None:
            raise StoreError(
                f"the store at {mask_url(self.url)} is empty",
                hint="Run `ffctl init` (or `ffctl db upgrade`) to create it.",
            )
        raise StoreError(
            f"the store at {mask_url(self.url)} is at schema {current}, this ffctl needs {head}",
            hint="Run `ffctl db upgrade`.",
        )

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc)) or exc.__class__.__name__
    return text.strip().splitlines()[0]


def insert_or_ignore(session: Session, table, rows: list[dict], conflict: list[str] | None = None) -> int:
    """INSERT rows, silently skipping those that hit a unique key (both backends).

    Returns how many rows were inserted. ``conflict`` names the unique columns (PostgreSQL needs
    them only for partial unique indexes; None means any conflict).
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = getattr(table, "__table__", table)
    stmt = insert(table).on_conflict_do_nothing(index_elements=conflict) if conflict else insert(table).on_conflict_do_nothing()
    inserted = 0
    for row in rows:  # rowcount per statement is reliable on both drivers once preserved
        # (psycopg 3.3 resets rowcount when SQLAlchemy closes an INSERT's cursor: -1 without this)
        inserted += session.execute(stmt.values(**row), execution_options={"preserve_rowcount": True}).rowcount or 0
    return inserted
