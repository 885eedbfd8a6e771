"""Engine, sessions and migrations for both backends.

Transactions: ``store.session(write=True)`` takes SQLite's write lock up front (``BEGIN
IMMEDIATE``) so that concurrent ffctl processes queue on the busy timeout instead of failing
half way; on PostgreSQL it is an ordinary READ COMMITTED transaction and writers lock rows
(``FOR UPDATE`` / ``SKIP LOCKED``) where they need to.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from ffctl.core.errors import StoreError, UsageError
from ffctl.core.secrets import mask_url, mask_urls_in, normalise_url, url_problem, url_secrets
from ffctl.i18n import _

SQLITE_BUSY_TIMEOUT_MS = 60_000
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


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

    def __init__(self, url: str, *, echo: bool = False, create: bool = True) -> None:
        """``create=False``: a SQLite file that does not exist is refused (NoStore), not made."""
        problem = url_problem(url)
        if problem is not None:
            raise UsageError(_("{mask_url}: {problem}").format(mask_url=mask_url(url), problem=problem))
        self.url = normalise_url(url)
        self._secrets = url_secrets(url)
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        self._file: Path | None = None
        self._identity: tuple[int, int] | None = None
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                _(
                    "unsupported database URL {mask_url!r}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
                ).format(mask_url=mask_url(url))
            )
        kwargs: dict = {"echo": echo}
        if not is_postgresql(self):
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            path = sqlite_path(self.url)
            if path is not None and not path.exists():
                if not create:
                    raise NoStore(
                        _("there is no store at {url}").format(url=mask_url(url)),
                        hint=_("Run `ffctl init` to create one, or point --db / FFCTL_DB at your store."),
                    )
                if not path.parent.exists():
                    raise StoreError(
                        _("cannot open {mask_url}: folder {parent} does not exist").format(
                            mask_url=mask_url(url), parent=path.parent
                        )
                    )
                _create_private(path)
            self._file = path
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except (ValueError, sa.exc.ArgumentError) as exc:
            raise UsageError(
                _("{mask_url}: {scrub}").format(mask_url=mask_url(url), scrub=self.scrub(_first_line(exc)))
            ) from None
        if is_postgresql(self) and "ffctl.core.models" in sys.modules:  # else the models' import adds them
            sys.modules["ffctl.core.models"].postgresql_predicates()
        if not is_postgresql(self):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "connect", self._remember_file)
            event.listen(self.engine, "begin", _sqlite_begin)

    def _remember_file(self, _dbapi_conn, _record) -> None:
        """The SQLite file this store opened first: a writer checks it is still the one at the path."""
        if self._file is not None and self._identity is None:
            try:
                st = self._file.stat()
            except OSError:
                return
            self._identity = (st.st_dev, st.st_ino)

    def _check_same_file(self) -> None:
        """Refuse to commit into a SQLite file that was deleted or replaced since it was opened:
        the rows would go to a file no one will open again (or the new file would miss them)."""
        if self._file is None or self._identity is None:
            return
        try:
            st = self._file.stat()
            same = (st.st_dev, st.st_ino) == self._identity
        except OSError:
            same = False
        if not same:
            raise StoreError(
                _(
                    "the store file {path} was deleted or replaced while this command was writing to it; "
                    "nothing more was written, and what it wrote before went to the old file"
                ).format(path=self._file),
                hint=_("Restore the store from its backup, then run the command again."),
            )

    def scrub(self, text: str) -> str:
        """A driver's message with this store's password (as typed or URL-escaped) taken out."""
        for secret in self._secrets:
            for form in (secret, quote(secret, safe="")):
                text = text.replace(form, "***")
        return mask_urls_in(text)

    @property
    def is_sqlite(self) -> bool:
        return not is_postgresql(self)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction, committed on success and rolled back on error."""
        try:
            conn = self.engine.connect()
        except sa.exc.OperationalError as exc:
            raise StoreError(
                _("cannot connect to {mask_url}: {scrub}").format(
                    mask_url=mask_url(self.url), scrub=self.scrub(_first_line(exc))
                )
            ) from None
        with conn:
            conn = conn.execution_options(ffctl_write=write)
            with Session(bind=conn, expire_on_commit=False, autoflush=True) as session:
                try:
                    with session.begin():
                        yield session
                        if session.in_transaction() and write:
                            self._check_same_file()
                except sa.exc.DBAPIError as exc:
                    if is_read_only_error(exc):
                        raise ReadOnlyStore(
                            _("the store at {url} is read-only: this command writes to it").format(
                                url=mask_url(self.url)
                            ),
                            hint=_(
                                "Run it against a store you may write to (the primary, or a file with write permission)."
                            ),
                        ) from None
                    raise

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
            raise StoreError(
                _("cannot upgrade {mask_url}: {scrub}").format(
                    mask_url=mask_url(self.url), scrub=self.scrub(_first_line(exc))
                )
            ) from None

    def current_revision(self) -> str | None:
        """The store's schema revision (None for an empty store), read without loading Alembic."""
        try:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table("alembic_version"):
                    return None
                return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.OperationalError as exc:
            raise StoreError(
                _("cannot connect to {mask_url}: {scrub}").format(
                    mask_url=mask_url(self.url), scrub=self.scrub(_first_line(exc))
                )
            ) from None

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
                _("the store at {mask_url} is empty").format(mask_url=mask_url(self.url)),
                hint=_("Run `ffctl init` (or `ffctl db upgrade`) to create it."),
            )
        raise StoreError(
            _("the store at {mask_url} is at schema {current}, this ffctl needs {head}").format(
                mask_url=mask_url(self.url), current=current, head=head
            ),
            hint=_("Run `ffctl db upgrade`."),
        )

    def dispose(self) -> None:
        self.engine.dispose()


class NoStore(StoreError):
    """The store a command would read does not exist (exit 1); nothing was created."""


class ReadOnlyStore(StoreError):
    """A write to a store that takes none: a read-only SQLite file, a PostgreSQL standby (exit 1)."""


def is_read_only_error(exc: BaseException) -> bool:
    """Whether a driver error says the store takes no writes (SQLite's SQLITE_READONLY family;
    PostgreSQL's read_only_sql_transaction, as on a hot standby or with default_transaction_read_only)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == "25006":
        return True
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF == 8  # SQLITE_READONLY and its extended codes
    return "readonly database" in str(orig)


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL; None for :memory:, URI file names and other backends."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def _create_private(path: Path) -> None:
    """An empty store file only its owner can read (it holds customer data), whatever the umask;
    SQLite gives the -wal and -shm files beside it the same mode. Never through a symlink."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        if path.is_symlink() and not path.exists():
            raise StoreError(
                _(
                    "{path} is a symbolic link to a file that does not exist; ffctl does not create "
                    "a store through a link"
                ).format(path=path)
            ) from None
        return  # created meanwhile by another process
    os.close(fd)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc)) or exc.__class__.__name__
    return text.strip().splitlines()[0]


def is_postgresql(where) -> bool:
    """The one dialect question: is this session, connection, engine, ``Store`` or import context
    (anything with a ``dialect`` name) on PostgreSQL? Otherwise it is SQLite."""
    dialect = getattr(where, "dialect", None)
    if dialect is None:  # a Session
        dialect = where.get_bind().dialect
    return (dialect if isinstance(dialect, str) else dialect.name) == "postgresql"


def dialect_insert(session: Session):
    """The session's dialect's ``insert``, which has ON CONFLICT DO NOTHING on both backends."""
    if is_postgresql(session):
        from sqlalchemy.dialects.postgresql import insert

        return insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def insert_or_ignore(session: Session, table, rows: list[dict], conflict: list[str] | None = None) -> int:
    """INSERT rows, silently skipping those that hit a unique key (both backends).

    Returns how many rows were inserted. ``conflict`` names the unique columns (PostgreSQL needs
    them only for partial unique indexes; None means any conflict).
    """
    if not rows:
        return 0
    insert = dialect_insert(session)
    table = getattr(table, "__table__", table)
    stmt = (
        insert(table).on_conflict_do_nothing(index_elements=conflict)
        if conflict
        else insert(table).on_conflict_do_nothing()
    )
    inserted = 0
    for row in rows:  # rowcount per statement is reliable on both drivers once preserved
        # (psycopg 3.3 resets rowcount when SQLAlchemy closes an INSERT's cursor: -1 without this)
        inserted += session.execute(stmt.values(**row), execution_options={"preserve_rowcount": True}).rowcount or 0  # type: ignore[attr-defined]  # an UPDATE/INSERT gives a CursorResult; Session.execute is typed Result
    return inserted
