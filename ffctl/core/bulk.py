"""Many rows through the driver, without per-row SQLAlchemy processing.

The set-based writers (allocation, workflow moves, the audit trail) write thousands of rows at a
time; on PostgreSQL they go by COPY in text form, formatted here (psycopg's ``write_row`` costs
about three times as much per row), and key lists go as one array literal. Times are stored as
naive UTC, exactly as ``models.UTCDateTime`` stores them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.store import is_postgresql  # noqa: F401  (re-exported: callers ask bulk or store alike)

_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_BATCH = 2000  # rows per write to the COPY stream


def stored_time(value: datetime) -> datetime:
    """A datetime as ``UTCDateTime`` stores it: naive UTC."""
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo is not None else value


def time_texts() -> Callable[[datetime], str]:
    """datetime -> the text SQLite stores for it (naive UTC, microseconds), remembered: the rows
    of one set-based write repeat a handful of times."""
    memo: dict[datetime, str] = {}

    def text(value: datetime) -> str:
        found = memo.get(value)
        if found is None:
            found = memo[value] = stored_time(value).isoformat(sep=" ", timespec="microseconds")
        return found

    return text


def sqlite_working_set(session: Session, *, cache_mib: int, mmap_mib: int = 0) -> None:
    """Give the session's SQLite connection a page cache of ``cache_mib`` and, with ``mmap_mib``,
    reads through a memory map of up to that much of the file, for one big pass (an import, an
    allocation, a report). The pooled connection keeps them. A default cache (2 MiB) holds a few
    index pages of a 100k-order store: a pass that touches rows all over the tables reads the same
    pages again and again. Mapped pages are file pages the kernel may drop at will, but they count
    in the process's resident size."""
    session.execute(sa.text(f"PRAGMA cache_size = -{cache_mib * 1024}"))
    if mmap_mib:
        session.execute(sa.text(f"PRAGMA mmap_size = {mmap_mib * 1024 * 1024}"))


def sqlite_defer_checkpoints(session: Session, deferred: dict) -> None:
    """Leave the WAL un-checkpointed by this session's commits (SQLite) until ``sqlite_checkpoint``,
    or until it holds SQLITE_DEFERRED_PAGES: a long run of batch transactions (an import) otherwise
    copies the pages it just wrote into the database file at every commit, and its index pages again
    at each, with two fsyncs each time, where the database alone writing the same rows in one
    transaction checkpoints once. ``deferred`` collects the connections it was set on (the pool may
    hand out more than one)."""
    raw: Any = session.connection().connection.driver_connection
    if id(raw) not in deferred:
        raw.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_DEFERRED_PAGES}")
        deferred[id(raw)] = raw


def sqlite_checkpoint(deferred: dict) -> None:
    """Checkpoint once what ``sqlite_defer_checkpoints`` left in the WAL and give its connections
    back their automatic checkpoints (SQLite's default, 1000 pages); the WAL file is truncated
    again (``journal_size_limit``) when it is next reset."""
    import sqlite3

    done = False
    for raw in deferred.values():
        try:
            raw.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_AUTOCHECKPOINT}")
            raw.execute(f"PRAGMA journal_size_limit = {SQLITE_WAL_LIMIT}")
            if not done:
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                done = True
        except sqlite3.Error:  # closed after an error: its settings went with it
            continue
    deferred.clear()


SQLITE_AUTOCHECKPOINT = 1000  # SQLite's default, in pages
SQLITE_DEFERRED_PAGES = 262_144  # a deferred checkpoint still runs at this much WAL (1 GiB of 4 KiB pages)
SQLITE_WAL_LIMIT = 64 * 1024 * 1024  # bytes of WAL file kept once a deferred checkpoint has run


def _copy_text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPE)
    return value


def _cell_writer():
    """A function from a value to its COPY text; datetimes are converted once each (a set-based
    write repeats a handful of them)."""
    times: dict[datetime, str] = {}

    def cell(value) -> str:
        if value is None:
            return "\\N"
        kind = value.__class__
        if kind is str:
            return _copy_text(value)
        if kind is int:
            return str(value)
        if kind is datetime:
            text = times.get(value)
            if text is None:
                text = times[value] = stored_time(value).isoformat(sep=" ")
            return text
        if kind is bool:
            return "t" if value else "f"
        if kind is float:
            return repr(value)
        if kind is date:
            return value.isoformat()
        return _copy_text(str(value))

    return cell


def _blocks(rows: Iterable[Sequence], fixed: Sequence = ()) -> Iterable[str]:
    """The rows' COPY text, a few thousand lines at a time; ``fixed`` values end every line."""
    cell = _cell_writer()
    tail = "".join("\t" + cell(v) for v in fixed)
    lines: list[str] = []
    for row in rows:
        lines.append("\t".join(map(cell, row)) + tail)
        if len(lines) >= _BATCH:
            lines.append("")
            yield "\n".join(lines)
            lines = []
    if lines:
        lines.append("")
        yield "\n".join(lines)


def _copy(session: Session, table: str, columns: Sequence[str], blocks: Iterable[str]) -> None:
    session.flush()
    raw: Any = session.connection().connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for block in blocks:
                copy.write(block)


def copy_rows(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence],
    fixed: Mapping[str, object] | None = None,
) -> None:
    """``COPY table (columns) FROM STDIN`` of the rows (PostgreSQL, in the session's transaction);
    the server takes each block while the next is formatted. ``fixed``: columns with one value
    for every row, given once."""
    fixed = fixed or {}
    _copy(session, table, (*columns, *fixed), _blocks(rows, tuple(fixed.values())))


class CopyRows:
    """Rows formatted for COPY now, written later: a planner formats them while another thread
    writes what it planned before (``allocate``, ``import orders``), so the writing thread only
    sends. ``len`` is the number of rows."""

    def __init__(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence], fixed: Mapping[str, object] | None = None
    ) -> None:
        fixed = fixed or {}
        self.table, self.columns = table, (*columns, *fixed)
        self.blocks = list(_blocks(rows, tuple(fixed.values())))
        self.rows = sum(block.count("\n") for block in self.blocks)  # newlines in values are escaped

    def __len__(self) -> int:
        return self.rows

    def write(self, session: Session) -> None:
        if self.blocks:
            _copy(session, self.table, self.columns, self.blocks)


class Rows:
    """Rows of one table for ``insert_rows``, with the columns they give and the values they all
    share; ``formatted()`` is their COPY text made now, to be written later."""

    def __init__(self, table: str, columns: Sequence[str], fixed: Mapping[str, object] | None = None) -> None:
        self.table, self.columns, self.fixed = table, tuple(columns), dict(fixed or {})
        self.rows: list[tuple] = []

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, session: Session) -> None:
        insert_rows(session, self.table, self.columns, self.rows, self.fixed)

    def formatted(self) -> CopyRows:
        return CopyRows(self.table, self.columns, self.rows, self.fixed)


def insert_rows(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence] | CopyRows,
    fixed: Mapping[str, object] | None = None,
) -> None:
    """Insert many rows in the caller's transaction: COPY on PostgreSQL (``rows`` may be
    ``CopyRows`` formatted ahead), the driver's executemany on SQLite, where the values must
    already be what SQLite stores (times as ``time_texts`` gives them). ``fixed``: columns with
    one value for every row (a status, a NULL, the batch's actor), given once instead of in each
    row: on SQLite they are literals in the statement, since binding is most of the driver's cost.
    On SQLite the columns whose value is the same in every row are found and given once too. An
    empty list writes nothing."""
    if isinstance(rows, CopyRows):
        rows.write(session)
    elif not rows:
        return
    elif is_postgresql(session):
        copy_rows(session, table, columns, rows, fixed)
    else:
        session.flush()
        columns, rows, shared = _shared_columns(columns, rows)
        fixed = {**shared, **(fixed or {})}
        names, values = list(columns), ["?"] * len(columns)
        bound = []
        for name, value in fixed.items():
            literal = _sqlite_literal(value)
            if literal is None:  # no safe literal: bound in every row after all
                bound.append(value)
                literal = "?"
            names.append(name)
            values.append(literal)
        if bound:
            extra = tuple(bound)
            rows = [tuple(r) + extra for r in rows]
        raw: Any = session.connection().connection.driver_connection
        if session.info.get(_ONE_STATEMENT) and _insert_in_one_statement(raw, table, names, values, rows):
            return
        raw.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(values)})", rows)


_ONE_STATEMENT = "ffctl_one_statement_inserts"


def sqlite_inserts_in_one_statement(session: Session) -> None:
    """Make ``insert_rows`` on this session (SQLite) send each call's rows as one statement over a
    JSON array: the driver's executemany takes the GIL back for every row, one statement runs to
    its end without it, so a writer thread's inserts go on beside a planning thread."""
    session.info[_ONE_STATEMENT] = True


def _insert_in_one_statement(raw, table: str, names: list[str], values: list[str], rows: list) -> bool:
    """``INSERT ... SELECT value->>0, ... FROM json_each(?)`` of the rows, in their order; False
    (nothing written) for values JSON would not carry as SQLite binds them."""
    import json

    try:
        texts = [
            json.dumps(rows[start : start + _JSON_ROWS], ensure_ascii=False, allow_nan=False, check_circular=False)
            for start in range(0, len(rows), _JSON_ROWS)
        ]
    except (TypeError, ValueError):  # bytes, dates, NaN: bound one by one after all
        return False
    if any("\\u0000" in text for text in texts):  # SQLite's JSON text ends at a NUL
        return False
    picks, at = [], 0
    for value in values:
        if value == "?":
            picks.append(f"value->>{at}")
            at += 1
        else:
            picks.append(value)
    sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(picks)} FROM json_each(?)"
    for text in texts:
        raw.execute(sql, (text,))
    return True


_JSON_ROWS = 2000  # rows per statement of ``_insert_in_one_statement``: SQLite parses the whole text at once


def _shared_columns(columns: Sequence[str], rows) -> tuple[Sequence[str], list, dict]:
    """Split off the columns whose value is the same (same type, equal) in every row, so that
    ``insert_rows`` gives them once: the planned rows of a workflow move or an audit write repeat
    their actor, wall time and a few NULLs in every row."""
    rows = rows if isinstance(rows, list) else list(rows)
    n = len(rows)
    if n < 2 or not columns:
        return columns, rows, {}
    first_row, middle, last = rows[0], rows[n // 2], rows[-1]
    same = {}
    for i, name in enumerate(columns):
        first = first_row[i]
        if middle[i] != first or last[i] != first:  # most columns differ: told apart by three rows
            continue
        values = list(map(itemgetter(i), rows))
        # equal to None or to a str means of that type; 1 == True == 1.0 needs the types checked
        if values.count(first) == n and (first is None or first.__class__ is str or len(set(map(type, values))) == 1):
            same[name] = first
    if not same:
        return columns, rows, {}
    keep = [i for i, name in enumerate(columns) if name not in same]
    if not keep:  # every column shared: rows that differ in nothing still need one bound value each
        keep, same = [0], {k: v for k, v in same.items() if k != columns[0]}
    pick = itemgetter(*keep)
    kept = [(pick(r),) for r in rows] if len(keep) == 1 else list(map(pick, rows))
    return [columns[i] for i in keep], kept, same


def _sqlite_literal(value) -> str | None:
    """``value`` as an SQLite literal, or None when it has no plain one."""
    kind = value.__class__
    if value is None:
        return "NULL"
    if kind is bool:
        return "1" if value else "0"
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    if kind is str and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers (``CAST(:p AS bigint[])``): one string for the driver
    to send instead of a list it would dump element by element."""
    return "{" + ",".join(map(str, values)) + "}"


def text_array(values: Iterable[str | None]) -> str:
    """A PostgreSQL array literal of strings (``CAST(:p AS text[])``); None is NULL."""
    return (
        "{"
        + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


def keyed(session: Session, column, values: Iterable):
    """``column IN values``: on PostgreSQL ``= ANY(...)`` of one array parameter, parsed and planned
    once whatever its length (an IN list renders a cast per element) and sent as one array
    literal; an IN list on SQLite."""
    values = list(values)
    if is_postgresql(session):
        return column == sa.any_(_array(column, values))
    return column.in_(values)


def _array(column, values: list):
    """One array parameter of ``column``'s type, sent as one literal (PostgreSQL)."""
    from sqlalchemy.dialects.postgresql import ARRAY

    literal = int_array(values) if values and isinstance(values[0], int) else text_array(values)
    return sa.cast(sa.bindparam(None, literal, type_=sa.Text), ARRAY(column.type))


def keyed_param(column, name: str, *, postgresql: bool):
    """``keyed`` with the values as the bound parameter ``name`` (given as ``keyed_value`` makes
    it), for a statement built once per process and reused with its compiled form."""
    if postgresql:
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.cast(sa.bindparam(name, type_=sa.Text), ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def keyed_value(values: list, *, postgresql: bool):
    """The value of a ``keyed_param``: one array literal on PostgreSQL, the list on SQLite."""
    if postgresql:
        return int_array(values) if values and isinstance(values[0], int) else text_array(values)
    return values


def among(session: Session, column, values: Iterable):
    """``column IN values`` for a table that may have no statistics yet (one an import is
    filling); ``column`` may be a tuple of columns, each value then a tuple. On PostgreSQL
    ``IN (SELECT ... FROM unnest(arrays))``, a semi-join the planner hashes when it reads the
    table through: ``keyed``'s ``= ANY(array)`` (or an IN list of tuples) under a sequential scan
    compares every row with every key (docs/performance.md, import). SQLite: an IN list."""
    values = list(values)
    columns = tuple(column) if isinstance(column, (tuple, list)) else (column,)
    if not is_postgresql(session):
        return column.in_(values) if len(columns) == 1 else sa.tuple_(*columns).in_(values)
    if len(columns) == 1:
        return columns[0].in_(sa.select(sa.func.unnest(_array(columns[0], values))).scalar_subquery())
    unnest = sa.func.unnest(*[_array(c, [v[i] for v in values]) for i, c in enumerate(columns)])
    keys = unnest.table_valued(*[f"k{i}" for i in range(len(columns))]).render_derived()
    return sa.tuple_(*columns).in_(sa.select(*keys.c))


def keyed_rows(session: Session, sql: str, column: str, keys: Sequence, *, tail: str = "") -> list[tuple]:
    """Rows of ``sql`` whose ``{where}`` is ``column`` among ``keys``, through the driver (no
    per-row SQLAlchemy processing): one array parameter on PostgreSQL (as ``among``), IN lists on SQLite.
    Times come back as the driver gives them (text on SQLite, naive UTC on PostgreSQL). ``tail``
    (ORDER BY, FOR UPDATE) follows each statement."""
    if not keys:
        return []
    raw: Any = session.connection().connection.driver_connection
    if is_postgresql(session):
        ints = isinstance(keys[0], int)  # one array literal: the driver dumps a list element by element
        kind, literal = ("bigint[]", int_array(keys)) if ints else ("text[]", text_array(keys))
        with raw.cursor() as cur:
            # as ``among``: a semi-join the planner can hash, even on a table it has no statistics of
            cur.execute(
                sql.format(where=f"{column} IN (SELECT unnest(CAST(%(keys)s AS {kind})))") + tail, {"keys": literal}
            )
            return cur.fetchall()
    rows: list[tuple] = []
    for start in range(0, len(keys), 900):
        part = list(keys[start : start + 900])
        rows.extend(raw.execute(sql.format(where=f"{column} IN ({', '.join('?' * len(part))})") + tail, part))
    return rows


def sqlite_analyze_stale(session: Session, tables: Iterable[str], *, min_rows: int = 0) -> None:
    """ANALYZE each of ``tables`` (SQLite) that holds more than ``min_rows`` rows and more than
    twice what its statistics say, or has none: SQLite never gathers them by itself, and planned
    blind after a bulk load, key lookups become scans."""
    analyzed: dict[str, int] = {}
    if session.execute(sa.text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")).scalar():
        for tbl, stat in session.execute(sa.text("SELECT tbl, stat FROM sqlite_stat1 WHERE idx IS NOT NULL")):
            analyzed[tbl] = max(analyzed.get(tbl, 0), int(str(stat).split()[0]))
    tables = list(tables)
    tops = session.execute(sa.text("SELECT " + ", ".join(f"(SELECT max(rowid) FROM {t})" for t in tables))).one()
    for table, top in zip(tables, tops, strict=True):
        if (top or 0) <= min_rows or (table in analyzed and top <= 2 * analyzed[table]):
            continue
        # max(rowid) over-counts a table rows are deleted from (allocations): count before analyzing
        rows = session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
        if rows > min_rows and (table not in analyzed or rows > 2 * analyzed[table]):
            session.execute(sa.text(f"ANALYZE {table}"))
