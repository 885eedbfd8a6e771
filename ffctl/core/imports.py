"""CSV imports (SPEC §4): every kind through one pipeline.

    file --parse+validate--> staging --cross-row checks--> [plan] --batches of whole records--> store

1. Stage. Each row is parsed and validated once (precompiled cell parsers; SKUs, customers and
   suppliers looked up in dicts loaded at the start) and written with its line number, raw cells
   and parsed values to a staging table keyed ``(group, sub, seq)``: the rows of one record (an
   order's lines, a shipment's pick lines) sort together wherever they are in the file. The
   staging table lives in SQLite's private temporary database, on disk, so memory stays bounded;
   the OS removes it even when the import is killed.
2. Check across rows, in SQL on the staging table: duplicate keys (an order's line twice, a SKU
   twice) and rows of one record that disagree (two customers for one order). A record with
   any bad row is rejected whole: an order's lines are all in or all out.
3. Plan, when the store itself may refuse a record (a shipment for an order that cannot ship,
   `--update` of a shipped order, a count below what is allocated) and the mode is abort, or
   for --dry-run: the records are classified (or applied in a transaction that is rolled
   back), so that "nothing is written" holds before the first batch commits.
4. Write in batches of whole records, each batch one transaction. Re-importing classifies each
   record against the store (new / unchanged / changed, one lookup per batch), so a killed
   import leaves whole batches and rerunning the same command writes only the rest. Orders on
   PostgreSQL are written by a second thread while the next batch is prepared
   (``_run_pipelined``). Tables the import grew by a large share are then analyzed.

Kinds are rows of ``KINDS``: their columns, cell parsers, key, and a handler that classifies and
writes a batch of records. Adding a kind is adding a row.
"""

from __future__ import annotations

import gc
import hashlib
import marshal
import operator
import queue
import sqlite3
import threading
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit, csvio
from ffctl.core.bulk import CopyRows, among, insert_rows, sqlite_analyze_stale, sqlite_working_set
from ffctl.core.csvio import CsvFileError
from ffctl.core.errors import FfctlError, UsageError
from ffctl.core.models import (
    Allocation,
    Customer,
    Order,
    OrderLine,
    Product,
    QcBatch,
    Receipt,
    Stock,
    Supplier,
)
from ffctl.core.workflow.entry import EntryPlanner
from ffctl.core.workflow.routing import routing_facts
from ffctl.i18n import _

MAX_ERRORS_SHOWN = 50
BATCH_ROWS = 10_000
MEMO_CELLS = 4096  # parsed cell values remembered per column (compile_row_parser)
# SQLite page cache of the connection that writes an import's batches (the default is 2 MiB): the
# random inserts into order_line's sku index and orders' customer index outgrow that at about
# 200k orders; with 32 MiB a 1M-line import spends a fifth less time in the driver.
SQLITE_CACHE_MIB = 32
DELIVERY_ISSUES = ("wrong_item", "short", "late", "damaged", "wrong_address", "documents")
IGNORED_COLUMNS = frozenset({"error"})  # a rejects file imports as it is

NEW, UPDATED, UNCHANGED, SKIPPED, REJECTED = "new", "updated", "unchanged", "skipped", "rejected"


# --- the report ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowError:
    line: int | None
    column: str | None
    value: str | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        if self.column:
            return f"{where}: {self.column} {csvio.shown(self.value or '')}: {self.reason}"
        return f"{where}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did (or, with --dry-run, would do). Counts are of records (``unit``)."""

    kind: str
    unit: str
    path: str
    unit_one: str = ""  # one record, for "1 order"
    encoding: str = ""
    encoding_detected: bool = False  # chosen by detection from non-ASCII text (not given, not plain ASCII)
    delimiter: str = ","
    delimiter_detected: bool = False
    on_error: str = "abort"
    dry_run: bool = False
    update: bool = False
    read: int = 0  # data rows in the file
    written: int = 0  # new records
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0  # changed records left as they are (orders without --update)
    rejected: int = 0  # records not imported because of errors
    rejected_rows: int = 0
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first MAX_ERRORS_SHOWN, by line
    changed: list[str] = field(default_factory=list)  # keys of skipped (changed) records, first 50
    notes: list[str] = field(default_factory=list)
    rejects_path: str | None = None
    rejects_written: int = 0
    rejects_formulas: int = 0  # rejected rows with a cell a spreadsheet would run as a formula
    batches: int = 0  # transactions committed
    aborted: bool = False  # abort mode found errors: nothing was written
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "unit": self.unit, "path": self.path, "encoding": self.encoding,
            "delimiter": self.delimiter,
            "dry_run": self.dry_run, "read": self.read, "written": self.written, "updated": self.updated,
            "unchanged": self.unchanged, "skipped": self.skipped, "rejected": self.rejected,
            "rejected_rows": self.rejected_rows, "error_count": self.error_count,
            "errors": [e.__dict__ for e in self.errors], "changed": self.changed, "notes": self.notes,
            "rejects_path": self.rejects_path, "aborted": self.aborted, "seconds": round(self.seconds, 3),
        }


Progress = Callable[[str, int, "int | None", int], None]  # (phase, done, total, rows)


# --- what every handler gets ----------------------------------------------------------------

@dataclass
class Context:
    cfg: object
    tz: str
    now: datetime
    actor: str
    update: bool
    dialect: str
    present: frozenset[str]  # columns the file has
    skus: dict[str, tuple[str | None, bool]]  # sku -> (category, custom)
    customers: dict[str, tuple[str | None, str | None, str | None]]  # -> (tier, region, sales_rep)
    suppliers: set[str]
    spellings: dict[str, dict[str, str]] = field(default_factory=dict)  # column -> casefolded -> as stored
    backfill: bool = False  # import orders --backfill: new orders get their SLA history up to ``now``

    @property
    def now_text(self) -> str:
        return csvio.stored_time(self.now)


@dataclass
class Record:
    """The rows of one record (an order and its lines; one product), in (sub, file) order."""

    key: str
    rows: list[tuple[int, int, tuple]]  # (seq, line, values aligned with Kind.columns)

    @property
    def line(self) -> int:
        return min(r[1] for r in self.rows)

    @property
    def first(self) -> tuple:
        return self.rows[0][2]


Outcome = tuple  # (action, reason or None)


@dataclass(frozen=True)
class Kind:
    name: str
    unit: str  # what one record is called in the summary
    required: tuple[str, ...]
    optional: tuple[str, ...]
    parsers: Callable[[Context], dict[str, Callable[[str], object]]]
    handler: Callable[[], "Handler"]
    key: tuple[str, ...]  # the columns naming a record
    sub: str | None = None  # numbers the rows of one record (line_no)
    shared: tuple[str, ...] = ()  # every row of one record must agree on these
    # a row's checks across its cells: (ctx) -> (values aligned with columns) -> [(column, reason)] or None
    row_check: Callable[[Context], Callable[[tuple], list[tuple[str, str]] | None]] | None = None
    refusable: Callable[[Context], bool] = lambda ctx: False  # may the store refuse a valid record?
    plan_by_rollback: bool = False  # plan by applying in a rolled-back transaction
    spelled: tuple[str, ...] = ()  # columns compared without case and stored as first seen (SPELLED_IN)
    one: str = ""  # one record, when not ``unit`` less its last letter
    # the record a row belongs to, when that is not its key's values: (values) -> group or None
    group: Callable[[tuple], str | None] | None = None
    example: tuple[tuple[str, ...], ...] = ()  # rows for ``import KIND --template --example``, by column

    @property
    def unit_one(self) -> str:
        return self.one or self.unit[:-1]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    def index(self, column: str) -> int:
        return self.columns.index(column)


class Handler:
    """Classifies a batch of records against the store and (``write=True``) writes it."""

    def apply(self, session: Session, ctx: Context, kind: Kind, records: list[Record], write: bool) -> list[Outcome]:
        raise NotImplementedError


# --- the pipeline ----------------------------------------------------------------------------

def import_file(
    store,
    cfg,
    kind: str,
    path: str | Path,
    *,
    now: datetime,
    actor: str,
    on_error: str = "abort",
    dry_run: bool = False,
    update: bool = False,
    ignore_unknown: bool = False,
    encoding: str | None = None,
    rejects: str | Path | None = None,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
    delimiter: str | None = None,
    backfill: bool = False,
    profile=None,
) -> ImportReport:
    """Import one CSV file of ``kind`` into ``store``; returns what happened (never raises for
    bad rows: they are in the report). Raises CsvFileError for a file that cannot be read as
    a whole (encoding, header) and UsageError for bad arguments.

    ``backfill`` (orders): each new order's SLA history up to ``now`` is applied as it is
    written, in the same transaction, telling nobody (``sla.backfill``).

    ``profile`` (a config.ImportProfile): the file is another system's export, read through
    core/profiles.py's row mapping in front of this pipeline."""
    started = time.perf_counter()
    spec = KINDS.get(kind)
    if spec is None:
        raise UsageError(f"unknown import kind {kind!r}: use one of {', '.join(KINDS)}")
    if on_error not in ("abort", "skip"):
        raise UsageError(f"--on-error {on_error!r}: use abort or skip")
    if rejects is not None and on_error != "skip":
        raise UsageError("--rejects goes with --on-error skip (in abort mode nothing is imported)")
    if rejects is not None and str(path) != "-" and Path(rejects).resolve() == Path(path).resolve():
        raise UsageError("--rejects must not be the file being imported")
    if backfill and kind != "orders":
        raise UsageError("--backfill goes with `import orders` (it records the SLA history of new orders)")
    if encoding is not None:
        encoding = csvio.check_encoding(encoding)
    if delimiter is not None:
        delimiter = csvio.check_delimiter(delimiter)
    progress = progress or (lambda phase, done, total, rows: None)
    with _cyclic_gc_paused():
        return _import(spec, store, cfg, kind, path, now=now, actor=actor, on_error=on_error, dry_run=dry_run,
                       update=update, ignore_unknown=ignore_unknown, encoding=encoding, rejects=rejects,
                       progress=progress, batch_rows=batch_rows, started=started, delimiter=delimiter,
                       backfill=backfill, profile=profile)


@contextmanager
def _cyclic_gc_paused():
    """Rows are millions of short-lived, acyclic objects that reference counting frees; the
    cyclic collector's passes over them cost about a third of an import's time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _import(spec, store, cfg, kind, path, *, now, actor, on_error, dry_run, update, ignore_unknown, encoding,
            rejects, progress, batch_rows, started, delimiter, backfill=False, profile=None) -> ImportReport:
    report = ImportReport(kind=kind, unit=spec.unit, unit_one=spec.unit_one, path=str(path), on_error=on_error,
                          dry_run=dry_run, update=update)
    ctx = _context(store, cfg, now=now, actor=actor, update=update, spelled=spec.spelled)
    ctx.backfill = backfill

    source = csvio.open_csv(path, encoding, delimiter)
    if profile is not None:  # another system's export: mapped row by row into this kind's columns
        from ffctl.core.profiles import ProfileReader

        try:
            source = ProfileReader(profile, source)
        except BaseException:
            source.close()
            raise
    staging = Staging()
    try:
        columns = _resolve_header(spec, source.header, ignore_unknown, source.delimiter)
        ctx.present = frozenset(c for _, c in columns.known)
        _stage(spec, ctx, source, columns, staging, progress)
    except BaseException:
        staging.close()
        raise
    finally:
        source.close()
    report.encoding, report.encoding_detected = source.encoding, source.detected
    report.delimiter, report.delimiter_detected = source.delimiter, source.delimiter_detected

    try:
        report.read = staging.rows
        progress("checking", 0, None, report.read)
        _check_across_rows(spec, staging, columns)
        staging.close_bad_groups()
        must_plan = dry_run or (on_error == "abort" and spec.refusable(ctx))
        if must_plan and (dry_run or not staging.error_count()):
            _run(spec, ctx, store, staging, report, progress, batch_rows, write=False)
            staging.close_bad_groups()
        if staging.error_count() and on_error == "abort":
            report.aborted = True
        elif not dry_run:
            _zero_counts(report)
            handler = _run(spec, ctx, store, staging, report, progress, batch_rows, write=True)
            if backfill:
                report.notes.append(_backfill_note(ctx, handler.backfilled))
            refresh_statistics(store, getattr(handler, "grown", {}), progress)
            staging.close_bad_groups()
        _finish(report, staging, source.header, rejects)
        if profile is not None:
            source.name_columns(report)
    finally:
        staging.close()
    report.seconds = time.perf_counter() - started
    return report


def _zero_counts(report: ImportReport) -> None:
    report.written = report.updated = report.unchanged = report.skipped = 0
    report.changed.clear()
    report.notes.clear()


def _context(store, cfg, *, now: datetime, actor: str, update: bool, spelled: tuple[str, ...] = ()) -> Context:
    with store.session() as s:
        skus = {r[0]: (r[1], bool(r[2])) for r in s.execute(sa.select(Product.sku, Product.category, Product.custom))}
        customers = {
            r[0]: (r[1], r[2], r[3])
            for r in s.execute(sa.select(Customer.customer, Customer.tier, Customer.region, Customer.sales_rep))
        }
        suppliers = set(s.scalars(sa.select(Supplier.supplier)))
        spellings = {column: stored_spellings(s, column) for column in spelled}
    return Context(cfg=cfg, tz=cfg.timezone, now=now, actor=actor, update=update, dialect=store.dialect,
                   present=frozenset(), skus=skus, customers=customers, suppliers=suppliers, spellings=spellings)


# Where each case-insensitive column's values are stored: orders' region falls back to its customer's
SPELLED_IN = {"channel": (("orders", "channel"),), "region": (("customer", "region"), ("orders", "region"))}


def stored_spellings(session: Session, column: str) -> dict[str, str]:
    """casefolded value -> the spelling stored first, of ``column`` (channel or region): a value
    that differs only in case from a stored one is stored as that one (``WEB`` joins ``web``)."""
    found: dict[str, tuple] = {}
    for table, col in SPELLED_IN[column]:
        when = "MIN(created_at)" if table == "orders" else "NULL"
        rows = session.execute(sa.text(f"SELECT {col}, {when} FROM {table} WHERE {col} IS NOT NULL GROUP BY {col}"))
        for value, first in rows:
            key = value.casefold()
            rank = (table != "customer", first is None, first or datetime.min, value)
            if key not in found or rank < found[key]:
                found[key] = rank
    return {key: rank[-1] for key, rank in found.items()}


@dataclass
class Columns:
    names: list[str]  # normalised header
    known: list[tuple[int, str]]  # (position in the file, column) for the kind's columns present
    unnamed: list[int]  # positions with an empty header cell
    width: int  # cells a row may carry


def _resolve_header(spec: Kind, header: list[str], ignore_unknown: bool, delimiter: str = ",") -> Columns:
    names = [csvio.normalise_column(h) for h in header]
    seen: dict[str, int] = {}
    for pos, name in enumerate(names):
        if name and name in seen:
            raise CsvFileError(f"column {csvio.shown(name)} appears twice in the header "
                               f"(columns {seen[name] + 1} and {pos + 1})")
        seen[name] = pos
    allowed = set(spec.columns)
    unknown = [n for n in names if n and n not in allowed and n not in IGNORED_COLUMNS]
    if unknown and not ignore_unknown:
        hints = [_did_you_mean(n, spec.columns) for n in unknown]
        listed = ", ".join(f"{csvio.shown(n)}{h}" for n, h in zip(unknown, hints))
        hint = _("Rename the column, or pass --ignore-unknown to skip columns ffctl does not use.")
        other = next((d for d in ";\t|" if d != delimiter and any(d in n for n in unknown)), None)
        if other is not None:
            hint = _("The header looks separated by {seen} rather than {used}: pass --delimiter {flag}.").format(
                seen=csvio.delimiter_name(other), used=csvio.delimiter_name(delimiter),
                flag="tab" if other == "\t" else repr(other))
        raise CsvFileError(
            f"unknown column{'s' if len(unknown) > 1 else ''} {listed}: {spec.name} takes "
            f"{', '.join(spec.required)} (required) and {', '.join(spec.optional) or 'nothing else'}",
            hint=hint,
        )
    missing = [c for c in spec.required if c not in seen]
    if missing:
        raise CsvFileError(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(the header has {', '.join(csvio.shown(n) for n in names if n) or 'nothing'})",
            hint=f"{spec.name} needs {', '.join(spec.required)}; optional: {', '.join(spec.optional) or '-'}.",
        )
    known = [(pos, name) for pos, name in enumerate(names) if name in allowed]
    unnamed = [pos for pos, name in enumerate(names) if not name] if not ignore_unknown else []
    return Columns(names=names, known=known, unnamed=unnamed, width=len(names) if not ignore_unknown else 1 << 30)


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- 1. stage ----------------------------------------------------------------------------------

def compile_row_parser(spec: Kind, columns: Columns, parsers: dict) -> Callable:
    """A function ``cells -> (values, problems)`` for this file's header, generated once.

    Straight-line code per present column (no loop, no per-cell dispatch): this runs a million
    times per import. A parsed cell is remembered by its text (up to MEMO_CELLS per column), so a
    repeated quantity, time or date costs a dict lookup. ``values`` is aligned with ``spec.columns`` (None where the file has no
    such column or the cell is empty); ``problems`` is None or a list of (column, value, reason).
    """
    required = set(spec.required)
    env: dict = {}
    body = ["def parse_row(cells):", "    problems = None"]
    at_of = {name: pos for pos, name in columns.known}
    out = []
    for i, name in enumerate(spec.columns):
        pos = at_of.get(name)
        if pos is None:
            out.append("None")
            continue
        var = f"v{i}"
        out.append(var)
        parse = parsers[name]
        env[f"p{i}"] = parse
        body.append(f"    t = cells[{pos}].strip()")
        body.append("    if t:")
        if parse is csvio.text_value:
            body.append(f"        {var} = t")
        elif hasattr(parse, "members"):  # csvio.known: a set lookup, inlined
            env[f"m{i}"] = parse.members
            body += [
                f"        if t in m{i}:",
                f"            {var} = t",
                "        else:",
                f"            {var} = None",
                "            problems = (problems or [])",
                f"            problems.append(({name!r}, t, {parse.reason!r}))",
            ]
        else:  # remembered per cell text: exports repeat quantities, times, dates, priorities
            env[f"c{i}"] = {}
            body += [
                f"        {var} = c{i}.get(t)",
                f"        if {var} is None:",
                "            try:",
                f"                {var} = p{i}(t)",
                f"                if len(c{i}) >= {MEMO_CELLS}:",
                f"                    c{i}.clear()",
                f"                c{i}[t] = {var}",
                "            except ValueError as exc:",
                "                problems = (problems or [])",
                f"                problems.append(({name!r}, t, str(exc)))",
            ]
        body.append("    else:")
        body.append(f"        {var} = None")
        if name in required:
            body.append("        problems = (problems or [])")
            body.append(f"        problems.append(({name!r}, '', 'missing required value'))")
    body.append(f"    return ({', '.join(out)},), problems")
    exec("\n".join(body), env)  # noqa: S102 - generated from the kind's own column names
    return env["parse_row"]


def _stage(spec: Kind, ctx: Context, source: csvio.CsvSource, columns: Columns, staging: "Staging",
           progress: Progress) -> None:
    parsers = spec.parsers(ctx)
    parse_row = compile_row_parser(spec, columns, parsers)
    # text cells (keys, names, channel, ...) are checked for control characters; others fail their parser
    text_at = [(pos, name) for pos, name in columns.known if getattr(parsers[name], "text", False)]
    key_at = [spec.index(c) for c in spec.key]
    k0 = key_at[0] if len(key_at) == 1 else None
    sub_at = spec.index(spec.sub) if spec.sub else None
    sub_required = spec.sub in spec.required
    shared_at = [spec.index(c) for c in spec.shared]
    shared = (operator.itemgetter(*shared_at) if len(shared_at) > 1
              else (lambda values, i=shared_at[0]: (values[i],)) if shared_at else None)
    header_width = len(columns.names)
    width, unnamed = columns.width, columns.unnamed
    row_check = spec.row_check(ctx) if spec.row_check is not None else None
    names = spec.columns
    dumps = marshal.dumps
    batch: list[tuple] = []
    errors: list[tuple] = []
    seq = 0
    for line, cells, flaw in source.rows:
        seq += 1
        if len(cells) < header_width:
            cells = cells + [""] * (header_width - len(cells))
        if flaw is not None and flaw.garbled:  # its cells are not text: report the row, parse nothing
            values = (None,) * len(names)
            problems = [(None, None, flaw.reason)]
        else:
            values, problems = parse_row(cells)
            if len(cells) > width or unnamed:
                problems = _shape_problems(cells, problems, width, unnamed)
            if not "".join(cells).isprintable():  # C speed; the rare row that is not looks closer
                problems = _control_problems(cells, problems, text_at, columns.names)
            if flaw is not None:
                problems = [*(problems or ()), (None, None, flaw.reason)]
        if row_check is not None and not problems:
            found = row_check(values)
            if found:
                problems = [(c, None, reason) for c, reason in found]
        if spec.group is not None:
            grp = spec.group(values)
        elif k0 is not None:
            grp = values[k0]
        else:
            key = [values[i] for i in key_at]
            grp = None if None in key else "\x1f".join(map(str, key))
        if grp is None:
            grp = f" {seq:012d}"  # a row without its key is rejected alone (real keys are stripped)
        if sub_at is None:
            sub = 0
        else:
            sub = values[sub_at]
            if sub is None:
                sub = -seq if sub_required else 0
        batch.append((grp, sub, seq, line, problems is not None, dumps(shared(values)) if shared else None,
                      dumps(values), dumps(cells)))
        if problems:
            for column, value, reason in problems:
                if column is not None and value is None:
                    value = cells[columns.names.index(column)].strip() if column in columns.names else ""
                errors.append((seq, line, grp, column, value, reason))
        if len(batch) >= 5000:
            staging.add_rows(batch)
            batch = []
            if errors:
                staging.add_errors(errors)
                errors = []
            progress("reading", source.bytes_read, source.size, seq)
    staging.add_rows(batch)
    staging.add_errors(errors)
    progress("reading", source.bytes_read, source.size, seq)


def _shape_problems(cells, problems, width, unnamed):
    """Problems with a row as a whole: cells beyond the header, values under no column name."""
    problems = list(problems or [])
    if len(cells) > width and any(c.strip() for c in cells[width:]):
        problems.append((None, None, f"{len(cells)} cells but the header has {width} columns"))
    for pos in unnamed:
        if cells[pos].strip():
            problems.append((None, cells[pos].strip(), f"a value in column {pos + 1}, which has no header"))
    return problems or None


def _control_problems(cells, problems, text_at, names):
    """Control characters inside a text cell (after trimming), and NUL in any cell (SQLite would
    keep a truncated value, PostgreSQL refuse the whole batch)."""
    problems = list(problems or [])
    checked = set()
    for pos, name in text_at:
        text = cells[pos].strip()
        what = csvio.control_name(text)
        if what is not None:
            checked.add(pos)
            problems.append((name, text, _("contains {what}: keys and names must be one line of printable "
                                           "text").format(what=what)))
    for pos, cell in enumerate(cells):
        if "\x00" in cell and pos not in checked:
            name = names[pos] if pos < len(names) and names[pos] else None
            if name is not None:
                problems.append((name, cell.strip(), _("contains a NUL byte, which cannot be stored")))
            else:
                problems.append((None, None, _("column {position} contains a NUL byte, which cannot be stored").format(
                    position=pos + 1)))
    return problems or None


class Staging:
    """Rows and errors of one import, in SQLite's private temporary database (on disk)."""

    def __init__(self) -> None:
        # "" = a private temporary database, deleted when closed (or when the process dies)
        self.db = sqlite3.connect("", isolation_level=None)
        for pragma in ("page_size = 32768", "cache_size = -16384", "journal_mode = OFF",
                       "synchronous = OFF", "temp_store = FILE", "locking_mode = EXCLUSIVE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(
            """
            CREATE TABLE rec (grp TEXT NOT NULL, sub NOT NULL, seq INTEGER NOT NULL, line INTEGER,
                              bad INTEGER, hdr BLOB, data BLOB, raw BLOB,
                              PRIMARY KEY (grp, sub, seq)) WITHOUT ROWID;
            CREATE TABLE err (id INTEGER PRIMARY KEY, seq INTEGER, line INTEGER, grp TEXT,
                              col TEXT, value TEXT, reason TEXT);
            CREATE TABLE badgrp (grp TEXT PRIMARY KEY) WITHOUT ROWID;
            """
        )
        self.rows = 0

    def add_rows(self, rows: list[tuple]) -> None:
        if rows:
            with self._transaction():
                self.db.executemany("INSERT INTO rec VALUES (?,?,?,?,?,?,?,?)", rows)
            self.rows += len(rows)

    def add_errors(self, errors: Iterable[tuple]) -> None:
        """Errors as (seq or None, line, grp, column, value, reason)."""
        with self._transaction():
            self.db.executemany("INSERT INTO err (seq, line, grp, col, value, reason) VALUES (?,?,?,?,?,?)", errors)

    @contextmanager
    def _transaction(self):
        """One transaction per executemany: in autocommit each row would be its own (a third of
        the staging insert's time)."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def close_bad_groups(self) -> None:
        """A record with any error is rejected whole."""
        self.db.execute("INSERT OR IGNORE INTO badgrp SELECT DISTINCT grp FROM err")

    def error_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM err").fetchone()[0]

    def good_rows(self) -> int:
        return self.db.execute("SELECT count(*) FROM rec WHERE grp NOT IN (SELECT grp FROM badgrp)").fetchone()[0]

    def records(self, batch_rows: int) -> Iterator[list[Record]]:
        """The good records in batches of about ``batch_rows`` rows, whole records only."""
        cur = self.db.execute(
            "SELECT grp, seq, line, data FROM rec WHERE grp NOT IN (SELECT grp FROM badgrp) ORDER BY grp, sub, seq"
        )
        loads = marshal.loads
        batch: list[Record] = []
        size = 0
        key, rows = None, []
        for grp, seq, line, data in cur:
            if grp != key:
                if rows:
                    batch.append(Record(key, rows))
                    size += len(rows)
                    if size >= batch_rows:
                        yield batch
                        batch, size = [], 0
                key, rows = grp, []
            rows.append((seq, line, loads(data)))
        if rows:
            batch.append(Record(key, rows))
        if batch:
            yield batch

    def close(self) -> None:
        self.db.close()


# --- 2. cross-row checks ---------------------------------------------------------------------

def _check_across_rows(spec: Kind, staging: Staging, columns: Columns) -> None:
    db = staging.db
    errors: list[tuple] = []
    what = " ".join(spec.key) if len(spec.key) == 1 else "(" + ", ".join(spec.key) + ")"
    dups = db.execute(
        "SELECT grp, sub, group_concat(seq || ':' || line) FROM rec WHERE substr(grp, 1, 1) != ' ' "
        "GROUP BY grp, sub HAVING count(*) > 1"
    ).fetchall()
    for grp, sub, pairs in dups:
        rows = sorted(tuple(map(int, p.split(":"))) for p in pairs.split(","))
        first_line = rows[0][1]
        key = grp.replace("\x1f", ", ")
        shown = csvio.plain(key)
        if spec.sub and sub != 0:
            column, value = spec.sub, str(sub)
            reason = f"duplicate line: {spec.key[0]} {shown} {spec.sub} {sub} is also on line {first_line}"
        elif spec.sub:
            column, value = spec.sub, ""
            reason = (f"duplicate {spec.key[0]} {shown}: also on line {first_line} "
                      f"(give each row of one {spec.unit_one} its own {spec.sub})")
        else:
            column, value = spec.key[0], key
            reason = f"duplicate {what}: also on line {first_line}"
        errors.extend((seq, line, grp, column, value, reason) for seq, line in rows[1:])
    if spec.shared:
        names = columns.names
        conflicting = db.execute(
            "SELECT grp FROM rec WHERE bad = 0 GROUP BY grp HAVING count(DISTINCT hdr) > 1"
        ).fetchall()
        for (grp,) in conflicting:
            rows = db.execute("SELECT seq, line, hdr, raw FROM rec WHERE grp = ? AND bad = 0 ORDER BY seq", (grp,)).fetchall()
            _, ref_line, ref_hdr, ref_raw = rows[0]
            ref_values, ref_cells = marshal.loads(ref_hdr), marshal.loads(ref_raw)
            for seq, line, hdr, raw in rows[1:]:
                if hdr == ref_hdr:
                    continue
                values, cells = marshal.loads(hdr), marshal.loads(raw)
                for col, mine, theirs in zip(spec.shared, values, ref_values):
                    if mine != theirs:
                        pos = names.index(col) if col in names else None
                        text = cells[pos].strip() if pos is not None else ""
                        ref_text = ref_cells[pos].strip() if pos is not None else ""
                        errors.append((seq, line, grp, col, text,
                                       f"differs from line {ref_line} ({csvio.shown(ref_text)}): every row of one "
                                       f"{spec.unit_one} must have the same {col}"))
    staging.add_errors(errors)


# --- 3 and 4. plan and write -----------------------------------------------------------------

class _Rollback(Exception):
    """Raised inside a planning transaction so that it rolls back."""


def _lock_kind(session: Session, ctx: Context, kind: str) -> None:
    """Serialise imports of one kind across processes on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already does): two imports of the same file never both insert one order."""
    if ctx.dialect == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(f"ffctl:import:{kind}".encode())})


def _run(spec: Kind, ctx: Context, store, staging: Staging, report: ImportReport, progress: Progress,
         batch_rows: int, *, write: bool) -> Handler:
    """Classify (write=False) or write every good record, batch by batch; returns the handler."""
    handler = spec.handler()
    total = staging.good_rows()
    refusals: list[tuple] = []
    phase = "writing" if write else "planning"
    progress(phase, 0, total, 0)
    if write and ctx.dialect == "postgresql" and hasattr(handler, "prepare"):
        _run_pipelined(spec, ctx, store, staging, report, progress, batch_rows, handler, total, refusals)
        staging.add_errors(refusals)
        return handler
    done = 0
    for batch in staging.records(batch_rows):
        if write:
            with store.session(write=True) as s:
                _lock_kind(s, ctx, spec.name)
                if ctx.dialect == "sqlite":  # the pooled connection keeps it, and its pages, batch to batch
                    sqlite_working_set(s, cache_mib=SQLITE_CACHE_MIB)
                outcomes = handler.apply(s, ctx, spec, batch, True)
            report.batches += 1
        elif spec.plan_by_rollback:
            try:
                with store.session(write=True) as s:
                    outcomes = handler.apply(s, ctx, spec, batch, True)
                    raise _Rollback
            except _Rollback:
                pass
        else:
            with store.session() as s:
                outcomes = handler.apply(s, ctx, spec, batch, False)
        done += _account(report, batch, outcomes, refusals)
        progress(phase, done, total, done)
        batch = outcomes = None  # freed first, so the collection does not walk them
        gc.collect(1)  # the batch's cyclic garbage (sessions, results): young, so this is cheap
    staging.add_errors(refusals)
    return handler


def _account(report: ImportReport, batch: list[Record], outcomes: list[Outcome], refusals: list[tuple]) -> int:
    """Count a batch's outcomes in the report; returns its rows."""
    for record, (action, reason) in zip(batch, outcomes):
        if action == REJECTED:
            refusals.append((None, record.line, record.key, None, None, reason))
            continue
        if action == NEW:
            report.written += 1
        elif action == UPDATED:
            report.updated += 1
        elif action == UNCHANGED:
            report.unchanged += 1
        elif action == SKIPPED:
            report.skipped += 1
            if len(report.changed) < MAX_ERRORS_SHOWN:
                report.changed.append(record.key.replace("\x1f", ", "))
        if reason and action != SKIPPED and len(report.notes) < MAX_ERRORS_SHOWN:
            report.notes.append(f"line {record.line}: {reason}")
    return sum(len(r.rows) for r in batch)


def _run_pipelined(spec: Kind, ctx: Context, store, staging: Staging, report: ImportReport, progress: Progress,
                   batch_rows: int, handler: Handler, total: int, refusals: list[tuple]) -> None:
    """Write batches on PostgreSQL with the server's work overlapping ours.

    Most of a PostgreSQL batch is the server's (foreign-key checks and index entries for every
    row COPY sends), during which this process would only wait. So one writer thread runs each
    batch's transaction (lock, classify, COPY, commit; one batch at a time, in file order, so a
    killed import still leaves whole batches), while this thread reads the next batch from
    staging and prepares its rows (``handler.prepare``); two batches in memory at most.
    """
    jobs: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()

    def write() -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            batch, prepared = job
            try:
                with store.session(write=True) as s:
                    _lock_kind(s, ctx, spec.name)
                    outcomes = handler.apply(s, ctx, spec, batch, True, prepared=prepared)
            except BaseException as exc:  # handed to the main thread, which raises it
                results.put((batch, None, exc))
                return
            results.put((batch, outcomes, None))

    done = 0
    pending = 0

    def collect(keep: int) -> None:
        """Account finished batches until at most ``keep`` are still with the writer."""
        nonlocal done, pending
        while pending > keep or (pending and not results.empty()):
            batch, outcomes, exc = results.get()
            pending -= 1
            if exc is not None:
                raise exc
            report.batches += 1
            done += _account(report, batch, outcomes, refusals)
            progress("writing", done, total, done)

    writer = threading.Thread(target=write, name="ffctl-import-writer", daemon=True)
    writer.start()
    try:
        for batch in staging.records(batch_rows):
            with store.session() as s:
                prepared = handler.prepare(s, ctx, spec, batch)
            collect(PIPELINE_AHEAD - 1)  # raises the writer's error, if any
            jobs.put((batch, prepared))
            pending += 1
            batch = prepared = None
            gc.collect(1)
        collect(0)
    finally:
        while True:  # stop the writer after the batch it is on, whatever happened here
            try:
                jobs.get_nowait()
                pending -= 1
            except queue.Empty:
                break
        jobs.put(None)
        writer.join()


PIPELINE_AHEAD = 1  # batches handed to the writer and not yet written, besides the one being prepared

ANALYZE_MIN_ROWS = 1000


def refresh_statistics(store, grown: dict[str, int], progress: Progress) -> None:
    """ANALYZE the tables an import grew by a large share, so that the commands after it are planned
    for the rows it wrote.

    Right after a bulk load the planner knows nothing of the new rows (SQLite never gathers
    statistics on its own; PostgreSQL's autovacuum gets to it within a minute or so), and key
    lookups planned blind become scans (``allocate`` took 592 s instead of 24 s on PostgreSQL).
    SQLite: a table whose rows are more than twice what its statistics say (or that has none);
    a full ANALYZE, ~0.2 s per 100k orders with their lines, tasks and events. PostgreSQL: a
    table the import added more than a fifth of its estimated rows to (a sample: well under a
    second), on an autocommit connection.
    """
    tables = sorted(t for t, n in grown.items() if n >= ANALYZE_MIN_ROWS)
    if not tables:
        return
    progress("analyzing", 0, None, 0)
    if store.dialect == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            known = dict(conn.exec_driver_sql(
                "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%(names)s) "
                "AND relnamespace = to_regnamespace(current_schema())::oid", {"names": tables}).all())
            stale = [t for t in tables if t in known and (known[t] < 0 or grown[t] > 0.2 * known[t])]
            if stale:
                conn.exec_driver_sql("ANALYZE " + ", ".join(stale))
        return
    with store.session(write=True) as s:
        sqlite_analyze_stale(s, tables)


def _finish(report: ImportReport, staging: Staging, header: list[str], rejects: str | Path | None) -> None:
    db = staging.db
    report.error_count = staging.error_count()
    report.errors = [
        RowError(line, col, value, reason)
        for line, col, value, reason in db.execute(
            "SELECT line, col, value, reason FROM err ORDER BY line, id LIMIT ?", (MAX_ERRORS_SHOWN,)
        )
    ]
    report.rejected = db.execute("SELECT count(*) FROM badgrp").fetchone()[0]
    report.rejected_rows = db.execute(
        "SELECT count(*) FROM rec WHERE grp IN (SELECT grp FROM badgrp)"
    ).fetchone()[0]
    if rejects is None:
        return
    if not report.rejected_rows:  # a header-only file: no stale rejects from an earlier run
        report.rejects_path = str(rejects)
        report.rejects_written = csvio.write_rejects(rejects, header, iter(())).rows
        return
    unit = KINDS[report.kind].unit_one
    # one streaming query, so that even a file of nothing but bad rows stays in bounded memory
    cursor = db.execute(
        """
        SELECT r.raw, own.text, wide.text, first.line, first.reason
        FROM rec r
        LEFT JOIN (SELECT seq, group_concat(CASE WHEN col IS NULL THEN reason ELSE col || ': ' || reason END, '; ')
                          AS text FROM err WHERE seq IS NOT NULL GROUP BY seq) own ON own.seq = r.seq
        LEFT JOIN (SELECT grp, group_concat(reason, '; ') AS text FROM err WHERE seq IS NULL GROUP BY grp) wide
               ON wide.grp = r.grp
        LEFT JOIN (SELECT grp, min(line) AS line, reason FROM err GROUP BY grp) first ON first.grp = r.grp
        WHERE r.grp IN (SELECT grp FROM badgrp)
        ORDER BY r.seq
        """
    )

    def rows():
        for raw, own, wide, line, reason in cursor:
            yield marshal.loads(raw), own or wide or f"not imported: this {unit} has an error on line {line} ({reason})"

    report.rejects_path = str(rejects)
    written = csvio.write_rejects(rejects, header, rows())
    report.rejects_written, report.rejects_formulas = written.rows, written.formulas


# --- stored rows by key ------------------------------------------------------------------------

def _existing(session: Session, table, key_cols: Sequence[str], keys: list, *, lock: bool = False) -> dict:
    """Rows of ``table`` whose key is in ``keys`` (a key is a value, or a tuple for composite keys)."""
    found: dict = {}
    cols = [table.c[c] for c in key_cols]
    for start in range(0, len(keys), 2000):
        chunk = keys[start:start + 2000]
        cond = among(session, cols[0] if len(cols) == 1 else cols, chunk)
        stmt = sa.select(table).where(cond)
        if lock and session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        for row in session.execute(stmt).mappings():
            key = row[key_cols[0]] if len(cols) == 1 else tuple(row[c] for c in key_cols)
            found[key] = row
    return found


# --- orders ------------------------------------------------------------------------------------

ORDER_COLUMNS = ("order_id", "line_no", "customer", "sku", "qty")
ORDER_OPTIONAL = ("channel", "region", "unit_price", "created_at", "promised_ship_date", "priority", "sales_rep")
ORDER_SHARED = ("customer", "channel", "region", "created_at", "promised_ship_date", "priority", "sales_rep")
O_ID, O_LINE, O_CUSTOMER, O_SKU, O_QTY, O_CHANNEL, O_REGION, O_PRICE, O_CREATED, O_PROMISED, O_PRIORITY, O_REP = range(12)
ORDER_INSERT = ("order_id", "customer", "channel", "region", "sales_rep", "priority", "created_at",
                "promised_ship_date", "promise_source", "status", "has_custom_items", "content_hash")
# the rows of new orders and their lines; what every one of them has is given once (bulk.insert_rows)
NEW_ORDER = ("order_id", "customer", "channel", "region", "sales_rep", "priority", "created_at",
             "promised_ship_date", "promise_source", "has_custom_items", "content_hash", "workflow", "node")
NEW_ORDER_FIXED = {"status": "open"}
LINE_INSERT = ("order_id", "line_no", "sku", "qty", "unit_price")
LINE_FIXED = {"allocated": 0}
OPEN_STATUSES = ("open", "on_hold")


def _order_parsers(ctx: Context) -> dict:
    return {
        "order_id": csvio.text_value,
        "line_no": csvio.positive_int,
        "customer": csvio.known(ctx.customers, "customer", "not in customers; import customers first"),
        "sku": csvio.known(ctx.skus, "SKU", "not in products; import products first"),
        "qty": csvio.positive_int,
        "channel": csvio.first_seen(ctx.spellings["channel"]),
        "region": csvio.first_seen(ctx.spellings["region"]),
        "unit_price": csvio.non_negative_number,
        "created_at": csvio.time_parser(ctx.tz, latest=ctx.now + CREATED_AHEAD, latest_reason=_(
            "is more than a day after the command clock ({now}): an order cannot come from the future; "
            "check the date, or give the clock with --now").format(now=_shown_time(ctx.now, ctx.tz))),
        "promised_ship_date": csvio.date_value,
        "priority": csvio.priority,
        "sales_rep": csvio.text_value,
    }


CREATED_AHEAD = timedelta(days=1)  # how far past the command clock a created_at may be (clocks disagree)


def _shown_time(moment: datetime, tz: str) -> str:
    return moment.astimezone(csvio.zone(tz)).isoformat(" ", "minutes")


def _order_check(ctx: Context):
    """A promise before the order was created (both as given) is a typing slip, not a late order:
    created_at (stored UTC text) at or after the local midnight that ends the promised day."""
    from ffctl.core.clock import start_of_day

    ends: dict[str, str] = {}  # promised date -> the stored time its day ends (few distinct dates)

    def check(values: tuple):
        promised, created = values[O_PROMISED], values[O_CREATED]
        if promised is None or created is None:
            return None
        end = ends.get(promised)
        if end is None:
            if len(ends) >= MEMO_CELLS:
                ends.clear()
            try:
                end = csvio.stored_time(start_of_day(date.fromisoformat(promised) + timedelta(days=1), ctx.tz))
            except OverflowError:
                end = "~"  # the last day there is: after every stored time
            ends[promised] = end
        if created >= end:
            day = csvio.from_stored(created).astimezone(csvio.zone(ctx.tz)).date().isoformat()
            return [("promised_ship_date", _("is before the order's created_at ({day})").format(day=day))]
        return None

    return check


def order_hash(record: Record) -> str:
    """What an imported order says, as given (a missing created_at or promise is not filled in)."""
    shared = _HASHED_SHARED(record.rows[0][2])
    lines = tuple([_HASHED_LINE(r[2]) for r in record.rows])
    return hashlib.blake2b(repr((shared, lines)).encode(), digest_size=16).hexdigest()


_HASHED_SHARED = operator.itemgetter(O_CUSTOMER, O_CHANNEL, O_REGION, O_CREATED, O_PROMISED, O_PRIORITY, O_REP)
_HASHED_LINE = operator.itemgetter(O_LINE, O_SKU, O_QTY, O_PRICE)


def stored_orders(session: Session, keys: list[str], *, lock: bool = False) -> dict[str, tuple[str, str | None]]:
    """order_id -> (status, content_hash) of the ``keys`` already stored.

    One statement through the driver: an array parameter on PostgreSQL (rows locked with
    ``lock``); on SQLite, where the key order is the index's (BINARY), first one probe of the
    batch's key range, so that new orders (a fresh store, a file of new ids) cost nothing more.
    """
    if not keys:
        return {}
    conn = session.connection()
    if session.bind.dialect.name == "postgresql":
        sql = "SELECT order_id, status, content_hash FROM orders WHERE order_id IN (SELECT unnest(%s::text[]))"
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(sql + (" FOR UPDATE" if lock else ""), (keys,))
            return {r[0]: (r[1], r[2]) for r in cur}
    raw = conn.connection.driver_connection
    if raw.execute("SELECT 1 FROM orders WHERE order_id BETWEEN ? AND ? LIMIT 1", (min(keys), max(keys))).fetchone() is None:
        return {}
    found: dict[str, tuple[str, str | None]] = {}
    for start in range(0, len(keys), 900):
        part = keys[start:start + 900]
        sql = f"SELECT order_id, status, content_hash FROM orders WHERE order_id IN ({','.join('?' * len(part))})"
        found.update((r[0], (r[1], r[2])) for r in raw.execute(sql, part))
    return found


class Orders(Handler):
    """New orders are inserted with their lines and enter their workflow; an unchanged order is
    left alone; a changed one is skipped, or with --update replaced while it is open and has no
    stock allocated (allocated or shipped orders are refused: release or cancel first)."""

    def __init__(self) -> None:
        self.ledger: dict = {}  # stock.promise_dates' ATP of the SKUs this run has promised from
        self.planner: EntryPlanner | None = None
        self.grown: Counter[str] = Counter()  # rows written per table (refresh_statistics)
        self.analyzed_at = 0  # order lines written when this run last analyzed (_analyze_before_demand)
        self.backfilled = None  # --backfill: what sla.backfill applied, summed over the batches

    def prepare(self, session, ctx, kind, records) -> tuple:
        """The writer's work that needs no lock, done ahead of it (``_run_pipelined``): every
        record's digest, and the rows of the records not stored yet (the writer checks again)."""
        stored = stored_orders(session, [r.key for r in records])
        digests = [order_hash(r) for r in records]
        new = [(r, d) for r, d in zip(records, digests) if r.key not in stored]
        planned = None
        if new:
            order_rows, line_rows, entries = self._plan(ctx, new, self._planner(ctx))
            # the COPY text too, so that the writer only sends (the orders wait for their promises)
            planned = (order_rows, CopyRows("order_line", LINE_INSERT, line_rows, LINE_FIXED),
                       entries.format(postgresql=True))
        return digests, [r.key for r, _ in new], planned

    def apply(self, session, ctx, kind, records, write, prepared: tuple | None = None):
        existing = stored_orders(session, [r.key for r in records], lock=write)
        digests = prepared[0] if prepared is not None else [order_hash(r) for r in records]
        outcomes: list[Outcome] = []
        new: list[tuple[Record, str]] = []
        changed: list[tuple[Record, str]] = []
        for record, digest in zip(records, digests):
            current = existing.get(record.key)
            if current is None:
                new.append((record, digest))
                outcomes.append((NEW, None))
            elif current[1] == digest:
                outcomes.append((UNCHANGED, None))
            elif not ctx.update:
                outcomes.append((SKIPPED, "changed since it was imported; pass --update to replace it"))
            elif current[0] not in OPEN_STATUSES:
                outcomes.append((REJECTED, f"order {record.key} is {current[0]}: it can no longer change"))
            else:
                changed.append((record, digest))
                outcomes.append((UPDATED, None))
        if changed:
            allocated = set(session.scalars(
                sa.select(Allocation.order_id).where(among(session, Allocation.__table__.c.order_id,
                                                            [r.key for r, _ in changed])).distinct()
            ))
            if allocated:
                position = {r.key: i for i, r in enumerate(records)}
                for record, _ in changed:
                    if record.key in allocated:
                        outcomes[position[record.key]] = (
                            REJECTED, f"order {record.key} has stock allocated: it can no longer change "
                                      "(cancel it and import it under a new order_id)")
                changed = [(r, d) for r, d in changed if r.key not in allocated]
        if changed:  # an order's timeline never runs backwards: no update at a clock before its latest event
            from ffctl.core import audit

            later = audit.later_events(session, [r.key for r, _d in changed], ctx.now)
            if later:
                position = {r.key: i for i, r in enumerate(records)}
                for record, _d in changed:
                    if record.key in later:
                        outcomes[position[record.key]] = (
                            REJECTED, audit.earlier_message(record.key, ctx.now, later[record.key], ctx.tz))
                changed = [(r, d) for r, d in changed if r.key not in later]
        if not write:
            return outcomes
        if new:
            if prepared is None:
                self._insert(session, ctx, new)
            elif prepared[1] == [r.key for r, _ in new]:
                self._insert(session, ctx, new, prepared[2])
            else:  # the store changed since: plan here (with a planner of this thread's own)
                self._insert(session, ctx, new, planner=EntryPlanner(ctx.cfg, ctx.actor))
            if ctx.backfill:
                self._backfill(session, ctx, [r.key for r, _ in new])
        if changed:
            self._replace(session, ctx, changed)
        return outcomes

    def _backfill(self, session, ctx: Context, order_ids: list[str]) -> None:
        """The SLA history of the batch's new orders up to the import's clock, in its transaction:
        the sweep's own steps (sla.backfill), recorded as applied on import, telling nobody."""
        from ffctl.core import sla

        if self.backfilled is None:
            self.backfilled = sla.SweepReport(now=ctx.now)
        sla.backfill(session, ctx.cfg, order_ids, now=ctx.now, report=self.backfilled)

    @staticmethod
    def _facts(ctx: Context, record: Record, created) -> dict:
        """The order's routing facts (``workflow.routing_facts``), as the file gives them."""
        v = record.first
        tier, region, rep = ctx.customers[v[O_CUSTOMER]]
        skus = ctx.skus
        return routing_facts(record.key, created, channel=v[O_CHANNEL], region=v[O_REGION], customer=v[O_CUSTOMER],
                             sales_rep=v[O_REP], priority=v[O_PRIORITY], tier=tier, customer_region=region,
                             customer_rep=rep, lines=[(r[O_SKU], *skus[r[O_SKU]]) for _, _, r in record.rows])

    def _promises(self, session, ctx: Context, records: list[Record], *, ledger: dict | None = None,
                  stored: bool = True) -> dict:
        """ATP promises for the records without a promised_ship_date. With the run's ``ledger``
        every record goes in (one with a date counts as demand), so that each SKU is read from
        the store once per import and a batch costs what it holds, not what the store holds.
        ``stored=False``: the records are new orders, not in the store yet."""
        if not ledger and all(r.first[O_PROMISED] is not None for r in records):
            return {}
        from ffctl.core.stock import promise_dates

        entries = [(r.key, [(row[O_SKU], row[O_QTY]) for _, _, row in r.rows], r.first[O_PROMISED]) for r in records]
        return promise_dates(session, entries, now=ctx.now, tz=ctx.tz, ledger=ledger, stored=stored)

    def _header_row(self, ctx: Context, record: Record, digest: str, facts: dict, promise) -> tuple:
        v = record.first
        if v[O_PROMISED] is not None:
            promised, source = v[O_PROMISED], "import"
        elif promise is not None:
            promised, source = promise[0].isoformat(), promise[1]
        else:
            promised, source = None, None
        return (record.key, v[O_CUSTOMER], v[O_CHANNEL], facts["region"], facts["sales_rep"], facts["priority"],
                v[O_CREATED] or ctx.now_text, promised, source, "open", facts["has_custom_items"], digest)

    @staticmethod
    def _line_rows(record: Record) -> list[tuple]:
        return [(record.key, r[O_LINE], r[O_SKU], r[O_QTY], r[O_PRICE]) for _, _, r in record.rows]

    def _analyze_before_demand(self, session, records: list[Record]) -> None:
        """ANALYZE orders and order_line before the ATP ledger reads open demand of SKUs it has not
        seen, once the import has doubled what it had written at the last ANALYZE: planned without
        statistics on the lines this import just wrote, PostgreSQL's demand query took a second a
        batch at 50k lines (and grows with them); ANALYZE samples, ~0.1 s."""
        written = self.grown["order_line"]
        if written < ANALYZE_MIN_ROWS or written < 2 * self.analyzed_at:
            return
        ledger = self.ledger
        if all(r.first[O_PROMISED] is not None or all(row[O_SKU] in ledger for _, _, row in r.rows) for r in records):
            return
        session.execute(sa.text("ANALYZE orders, order_line"))
        self.analyzed_at = written

    def _planner(self, ctx: Context) -> EntryPlanner:
        if self.planner is None or self.planner.cfg is not ctx.cfg:
            self.planner = EntryPlanner(ctx.cfg, ctx.actor)
        return self.planner

    @classmethod
    def _plan(cls, ctx: Context, new: list[tuple[Record, str]], planner: EntryPlanner) -> tuple:
        """The rows of new orders: (orders, lines, their workflow entry). Pure Python, no store: an
        order without a promised_ship_date has None there until ``_insert`` asks available-to-promise."""
        now_text = ctx.now_text
        order_rows, line_rows = [], []
        entries = planner.begin()
        for record, digest in new:
            v = record.first
            key = record.key
            line_rows.extend([(key, r[O_LINE], r[O_SKU], r[O_QTY], r[O_PRICE]) for _, _, r in record.rows])
            created = v[O_CREATED] or now_text
            facts = cls._facts(ctx, record, created)
            wf, node = entries.enter(key, facts, created)
            given = v[O_PROMISED]
            order_rows.append((key, v[O_CUSTOMER], v[O_CHANNEL], facts["region"], facts["sales_rep"],
                               facts["priority"], created, given, None if given is None else "import",
                               facts["has_custom_items"], digest, wf, node))
        return order_rows, line_rows, entries

    def _insert(self, session, ctx: Context, new: list[tuple[Record, str]], planned: tuple | None = None,
                planner: EntryPlanner | None = None) -> None:
        """The new orders, their lines, and their workflow entry (tasks and events), in bulk."""
        if planned is None:
            planned = self._plan(ctx, new, planner or self._planner(ctx))
        order_rows, line_rows, entries = planned
        if ctx.dialect == "postgresql":
            self._analyze_before_demand(session, [r for r, _ in new])
        promises = self._promises(session, ctx, [r for r, _ in new], ledger=self.ledger, stored=False)
        if promises:
            for i, row in enumerate(order_rows):
                promise = promises.get(row[0])
                if promise is not None and row[7] is None:
                    order_rows[i] = row[:7] + (promise[0].isoformat(), promise[1]) + row[9:]
        insert_rows(session, "orders", NEW_ORDER, order_rows, NEW_ORDER_FIXED)
        insert_rows(session, "order_line", LINE_INSERT, line_rows, LINE_FIXED)
        entries.write(session, move_orders=False)  # the order rows carry their (workflow, node)
        grown = self.grown
        grown["orders"] += len(order_rows)
        grown["order_line"] += len(line_rows)
        grown["task"] += entries.task_count()
        grown["event"] += len(entries.events)

    def _replace(self, session, ctx: Context, changed: list[tuple[Record, str]]) -> None:
        promises = self._promises(session, ctx, [r for r, _ in changed])
        orders, lines = Order.__table__, OrderLine.__table__
        ids = [r.key for r, _ in changed]
        before = dict(session.execute(
            sa.select(lines.c.order_id, sa.func.count()).where(lines.c.order_id.in_(ids)).group_by(lines.c.order_id)
        ).all())
        session.execute(sa.delete(lines).where(lines.c.order_id.in_(ids)))
        line_rows, events = [], []
        for record, digest in changed:
            facts = self._facts(ctx, record, ctx.now)
            row = dict(zip(ORDER_INSERT, self._header_row(ctx, record, digest, facts, promises.get(record.key))))
            values = {k: row[k] for k in ("customer", "channel", "region", "sales_rep", "priority",
                                          "promised_ship_date", "promise_source", "has_custom_items", "content_hash")}
            if record.first[O_CREATED]:
                values["created_at"] = csvio.from_stored(record.first[O_CREATED])
            if values["promised_ship_date"]:
                values["promised_ship_date"] = datetime.fromisoformat(values["promised_ship_date"]).date()
            session.execute(sa.update(orders).where(orders.c.order_id == record.key).values(**values))
            line_rows.extend(self._line_rows(record))
            events.append({"event": "updated", "at": ctx.now, "actor": ctx.actor, "order_id": record.key,
                           "detail": f"replaced by import: {len(record.rows)} line(s), was {before.get(record.key, 0)}"})
        insert_rows(session, "order_line", LINE_INSERT, line_rows, LINE_FIXED)
        audit.record_many(session, events)
        self.grown["order_line"] += len(line_rows)
        self.ledger.clear()  # it counted the replaced lines: read their SKUs afresh next time


def _backfill_note(ctx: Context, done) -> str:
    """What ``import orders --backfill`` recorded, in one line."""
    from ffctl.core.clock import shown

    when = shown(ctx.now, ctx.tz)
    if done is None or not (done.at_risk or done.breached or any(done.actions.values())):
        return _("--backfill: nothing had fallen due by {now}").format(now=when)
    steps = ", ".join(f"{n:,} {what}" for what, n in (
        (_("at risk"), done.at_risk), (_("breached"), done.breached), (_("reminders"), done.actions["remind"]),
        (_("escalations"), done.actions["escalate"]), (_("notify steps"), done.actions["notify"]),
        (_("auto-approved"), done.actions["auto_approve"]), (_("auto-rejected"), done.actions["auto_reject"]))
        if n)
    return _("--backfill: the SLA history up to {now} is recorded as applied on import ({steps}); "
             "nobody was notified").format(now=when, steps=steps)


# --- master data and other keyed rows ---------------------------------------------------------

class Upsert(Handler):
    """Rows keyed by ``key`` are inserted, or updated with the values the file gives (an empty
    cell, or a column the file lacks, leaves the stored value as it is)."""

    def __init__(self, model, defaults: dict, times: Sequence[str] = (), guard=None) -> None:
        self.table = model.__table__
        self.defaults = defaults
        self.times = frozenset(times)
        self.guard = guard  # (stored row, changes) -> (changes, reason or None, refused)
        self.grown: Counter[str] = Counter()  # rows inserted per table (refresh_statistics)

    def apply(self, session, ctx, kind, records, write):
        key_cols = kind.key
        values_of = []
        for record in records:
            row = dict(zip(kind.columns, record.first))
            for col in self.times:
                if row.get(col) is not None:
                    row[col] = csvio.from_stored(row[col])
            values_of.append(row)
        keys = [row[key_cols[0]] if len(key_cols) == 1 else tuple(row[c] for c in key_cols) for row in values_of]
        existing = _existing(session, self.table, key_cols, keys, lock=write)
        inserts, updates, outcomes = [], [], []
        fields = [c for c in kind.columns if c not in key_cols and c in ctx.present]
        for key, row in zip(keys, values_of):
            given = {c: row[c] for c in fields if row[c] is not None}
            current = existing.get(key)
            if current is None:
                # every dict has every column: executemany needs one shape
                inserts.append({**{c: None for c in kind.columns}, **self.defaults,
                                **{c: row[c] for c in key_cols}, **given})
                outcomes.append((NEW, None))
                continue
            changes = {c: v for c, v in given.items() if current[c] != v}
            note = None
            if self.guard and changes:
                changes, note, refused = self.guard(current, changes)
                if refused:
                    outcomes.append((REJECTED, note))
                    continue
            if not changes:
                outcomes.append((UNCHANGED, note))
                continue
            updates.append((key, changes))
            outcomes.append((UPDATED, note))
        if write:
            if inserts:
                session.execute(sa.insert(self.table), inserts)
                self.grown[self.table.name] += len(inserts)
            cols = [self.table.c[c] for c in key_cols]
            for key, changes in updates:
                key_values = (key,) if len(key_cols) == 1 else key
                cond = sa.and_(*[col == value for col, value in zip(cols, key_values)])
                session.execute(sa.update(self.table).where(cond).values(**changes))
        return outcomes


def _supplier_guard(current, changes):
    if changes.get("inspection_exempt") is True and current["exempt_frozen_at"] is not None:
        changes = {k: v for k, v in changes.items() if k != "inspection_exempt"}
        reason = current["exempt_frozen_reason"] or "quality rule"
        return changes, (f"supplier {current['supplier']}: inspection exemption stays frozen "
                         f"({reason}); it was not set back"), False
    return changes, None, False


def _receipt_guard(current, changes):
    if current["status"] == "received":
        return changes, (f"receipt {current['receipt_id']} ({current['sku']}, {current['warehouse']}) "
                         f"was already received: it can no longer change"), True
    return changes, None, False


def _product_parsers(ctx: Context) -> dict:
    return {
        "sku": csvio.text_value, "name": csvio.text_value, "category": csvio.text_value,
        "safety_stock": csvio.non_negative_int, "reorder_qty": csvio.positive_int,
        "supplier": csvio.known(ctx.suppliers, "supplier", "not in suppliers; import suppliers first"),
        "lead_time_days": csvio.non_negative_int, "custom": csvio.boolean,
    }


def _customer_parsers(ctx: Context) -> dict:
    return {
        "customer": csvio.text_value, "name": csvio.text_value, "tier": csvio.text_value,
        "region": csvio.first_seen(ctx.spellings["region"]), "credit_limit": csvio.non_negative_number, "sales_rep": csvio.text_value,
    }


def _supplier_parsers(ctx: Context) -> dict:
    return {"supplier": csvio.text_value, "name": csvio.text_value, "inspection_exempt": csvio.boolean}


def _receipt_parsers(ctx: Context) -> dict:
    return {
        "receipt_id": csvio.text_value,
        "sku": csvio.known(ctx.skus, "SKU", "not in products; import products first"),
        "warehouse": csvio.text_value, "qty": csvio.positive_int, "expected_at": csvio.time_parser(ctx.tz),
        "supplier": csvio.known(ctx.suppliers, "supplier", "not in suppliers; import suppliers first"),
    }


def _qc_parsers(ctx: Context) -> dict:
    when = csvio.time_parser(ctx.tz)
    return {
        "supplier": csvio.known(ctx.suppliers, "supplier", "not in suppliers; import suppliers first"),
        "batch_id": csvio.text_value, "inspected_at": when, "passed": csvio.non_negative_int,
        "total": csvio.positive_int, "promised_at": when, "received_at": when,
        "sku": csvio.known(ctx.skus, "SKU", "not in products; import products first"),
    }


Q_PASSED, Q_TOTAL = 3, 4


def _qc_check(ctx: Context):
    def check(values: tuple):
        if values[Q_PASSED] > values[Q_TOTAL]:
            return [("passed", f"is more than total ({values[Q_TOTAL]})")]
        return None

    return check


# --- stock counts, shipments, deliveries -------------------------------------------------------

class StockCounts(Handler):
    """A counted on_hand per (sku, warehouse), applied through the stock module as an adjustment."""

    def apply(self, session, ctx, kind, records, write):
        rows = [record.first for record in records]
        keys = [(r[0], r[1]) for r in rows]
        existing = _existing(session, Stock.__table__, ("sku", "warehouse"), keys, lock=write)
        outcomes, counts = [], []
        for key, row in zip(keys, rows):
            current = existing.get(key)
            on_hand = row[2]
            if current is None:
                outcomes.append((NEW, None))
            elif current["on_hand"] == on_hand:
                outcomes.append((UNCHANGED, None))
                continue
            elif on_hand < current["allocated"]:
                outcomes.append((REJECTED, f"count {on_hand} for {key[0]} in {key[1]} is below the "
                                           f"{current['allocated']} allocated to orders; release them first"))
                continue
            else:
                outcomes.append((UPDATED, None))
            counts.append((key[0], key[1], on_hand))
        if write and counts:
            from ffctl.core import stock

            stock.apply_counts(session, counts, at=ctx.now, actor=ctx.actor)
        return outcomes


class _PerOrder(Handler):
    """Records applied one order at a time through the stock module (which owns the rules: what
    may ship, what counts as the same shipment again), each in a savepoint, so that a refused
    order is rejected alone and the rest of the batch goes in."""

    @staticmethod
    def order_of(record: Record) -> str:
        return record.key

    def apply(self, session, ctx, kind, records, write):
        ids = [self.order_of(r) for r in records]
        known = set(session.scalars(
            sa.select(Order.order_id).where(among(session, Order.__table__.c.order_id, sorted(set(ids))))
        ))
        outcomes = []
        if write and self.locks_stock:  # take the batch's orders and stock rows at once: no deadlock cycles
            from ffctl.core import stock

            stock.lock_for_orders(session, [o for o in ids if o in known])
        for record, order_id in zip(records, ids):
            if order_id not in known:
                outcomes.append((REJECTED, f"unknown order {order_id!r} (not in orders; import orders first)"))
                continue
            if not write:
                outcomes.append((NEW, None))
                continue
            try:
                with session.begin_nested():
                    recorded = self.do(session, ctx, record)
                outcomes.append((NEW, None) if recorded else (UNCHANGED, None))
            except FfctlError as exc:
                outcomes.append((REJECTED, exc.message))
        return outcomes

    locks_stock = False  # whether ``do`` moves stock (shipments consume reservations)

    def do(self, session, ctx, record: Record) -> bool:
        raise NotImplementedError


S_ORDER, S_SHIPPED, S_CARRIER, S_TRACKING, S_LINE, S_SKU, S_QTY, S_SHIPMENT = range(8)


def _shipment_group(values: tuple) -> str | None:
    """A row's shipment: its shipment_id, else its order, time, carrier and tracking (SPEC 9.2)."""
    order_id = values[S_ORDER]
    if order_id is None:
        return None
    if values[S_SHIPMENT] is not None:
        return f"{order_id}\x1f{values[S_SHIPMENT]}"
    return "\x1f".join((order_id, "", *("" if values[i] is None else str(values[i])
                                         for i in (S_SHIPPED, S_CARRIER, S_TRACKING))))


class Shipments(_PerOrder):
    """One record per shipment; what its rows say left moves stock (``shipping.ship``)."""

    locks_stock = True

    @staticmethod
    def order_of(record: Record) -> str:
        return record.first[S_ORDER]

    def do(self, session, ctx, record):
        from ffctl.core import shipping

        v = record.first
        picks = [(r[S_LINE], r[S_SKU], r[S_QTY]) for _, _, r in record.rows if r[S_LINE] is not None]
        if picks and not any(q for _l, _s, q in picks):
            raise FfctlError(f"shipment of order {v[S_ORDER]}: every row ships 0 units; nothing left")
        at = csvio.from_stored(v[S_SHIPPED]) if v[S_SHIPPED] is not None else ctx.now
        done = shipping.ship(session, ctx.cfg, v[S_ORDER], at=at, actor=ctx.actor, carrier=v[S_CARRIER],
                             tracking=v[S_TRACKING], picks=picks or None, shipment_id=v[S_SHIPMENT])
        return done is not None


def _shipment_parsers(ctx: Context) -> dict:
    return {
        "order_id": csvio.text_value, "shipped_at": csvio.time_parser(ctx.tz), "carrier": csvio.text_value,
        "tracking": csvio.text_value, "line_no": csvio.positive_int,
        "sku": csvio.text_value,  # a wrong SKU picked is what pick accuracy measures: not checked
        "qty": csvio.non_negative_int, "shipment_id": csvio.text_value,
    }


def _shipment_check(ctx: Context):
    def check(values: tuple):
        if values[S_LINE] is None and (values[S_QTY] is not None or values[S_SKU] is not None):
            return [("line_no", "missing: a row with sku or qty names the order line it ships (line_no)")]
        if values[S_LINE] is not None and values[S_QTY] is None:
            return [("qty", "missing: how many units of the line left in this shipment")]
        return None

    return check


class Deliveries(_PerOrder):
    def do(self, session, ctx, record):
        from ffctl.core import stock

        v = record.first
        return stock.deliver(session, ctx.cfg, record.key, at=csvio.from_stored(v[1]), actor=ctx.actor, issue=v[2])


def _delivery_parsers(ctx: Context) -> dict:
    return {"order_id": csvio.text_value, "delivered_at": csvio.time_parser(ctx.tz),
            "issue": csvio.one_of(DELIVERY_ISSUES)}


R_ORDER, R_LINE, R_QTY, R_REASON, R_AT, R_WAREHOUSE = range(6)


class Returns(_PerOrder):
    """One record per return line (order, line, time, reason: the natural key), recorded through
    ``returns.record_return``, which refuses more than the line shipped less what came back."""

    locks_stock = True

    @staticmethod
    def order_of(record: Record) -> str:
        return record.first[R_ORDER]

    def do(self, session, ctx, record):
        from ffctl.core import returns

        v = record.first
        done = returns.record_return(session, ctx.cfg, v[R_ORDER], [(v[R_LINE], v[R_QTY])], reason=v[R_REASON],
                                     at=csvio.from_stored(v[R_AT]), actor=ctx.actor, restock=v[R_WAREHOUSE])
        return done is not None


def _return_parsers(ctx: Context) -> dict:
    return {"order_id": csvio.text_value, "line_no": csvio.positive_int, "qty": csvio.positive_int,
            "reason": csvio.text_value, "returned_at": csvio.time_parser(ctx.tz), "warehouse": csvio.text_value}


# --- the kinds ---------------------------------------------------------------------------------

# Examples (``import KIND --template --example``): one small business, each kind's rows naming the
# rows of the kinds before it, so that importing them in this order works (tests do it).
EXAMPLES = {
    "suppliers": (("SUP-01", "华东五金有限公司", "yes"), ("SUP-02", "Acme Components", "no"), ("SUP-03", "深圳电子", "否")),
    "products": (
        ("SKU-001", "27 inch monitor", "electronics", "10", "50", "SUP-02", "7", "no"),
        ("SKU-002", "不锈钢螺丝 M6", "hardware", "500", "2000", "SUP-01", "3", ""),
        ("SKU-003", "定制机柜", "custom", "0", "", "SUP-03", "20", "是"),
    ),
    "customers": (
        ("CUST-01", "北京科技有限公司", "gold", "华北", "500000", "oscar"),
        ("CUST-02", "Pacific Trading Ltd", "silver", "east", "80,000", ""),
        ("CUST-03", "广州贸易", "", "华南", "", "oscar"),
    ),
    "stock": (("SKU-001", "WH-SH", "40"), ("SKU-002", "WH-SH", "3000"), ("SKU-003", "WH-GZ", "2")),
    "receipts": (
        ("PO-1001", "SKU-001", "WH-SH", "100", "2026-03-10", "SUP-02"),
        ("PO-1002", "SKU-002", "WH-SH", "5000", "2026/03/10 14:00", "SUP-01"),
        ("PO-1003", "SKU-003", "WH-GZ", "5", "2026-03-20T09:00:00+08:00", "SUP-03"),
    ),
    "orders": (
        ("SO-1001", "1", "CUST-01", "SKU-001", "2", "b2b", "", "1299.00", "2026-03-02 09:30", "2026-03-05", "high", ""),
        ("SO-1002", "1", "CUST-02", "SKU-002", "200", "web", "east", "0.35", "2026/03/02 10:15", "", "normal", "oscar"),
        ("SO-1003", "1", "CUST-03", "SKU-003", "1", "b2b", "", "8,800.00", "2026-03-03T08:00:00+08:00", "2026-03-20",
         "2", ""),
    ),
    "shipments": (
        ("SO-1001", "2026-03-04 16:00", "SF Express", "SF1234567890", "1", "SKU-001", "2", "SHP-1"),
        ("SO-1002", "2026/03/05 11:20", "顺丰速运", "SF1234567891", "", "", "", ""),
        ("SO-1003", "2026-03-18 09:00", "", "", "1", "SKU-003", "1", ""),
    ),
    "deliveries": (("SO-1001", "2026-03-06 10:00", ""), ("SO-1002", "2026-03-07 15:30", "damaged"),
                   ("SO-1003", "2026/03/19", "")),
    "returns": (("SO-1001", "1", "1", "damaged", "2026-03-09 11:00", ""),
                ("SO-1002", "1", "20", "wrong_size", "2026/03/10 09:30", "WH-SH")),
    "qc": (
        ("SUP-01", "B-2026-031", "2026-03-11 09:00", "4980", "5000", "2026-03-10", "2026-03-10 15:00", "SKU-002"),
        ("SUP-02", "B-2026-032", "2026-03-12 10:00", "98", "100", "2026-03-10", "2026-03-12 08:30", "SKU-001"),
        ("SUP-03", "B-2026-033", "2026-03-21 14:00", "5", "5", "2026-03-20", "2026-03-21 11:00", ""),
    ),
}

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("products", "products", ("sku", "name"),
             ("category", "safety_stock", "reorder_qty", "supplier", "lead_time_days", "custom"),
             _product_parsers, lambda: Upsert(Product, {"safety_stock": 0, "custom": False}), key=("sku",),
             example=EXAMPLES["products"]),
        Kind("customers", "customers", ("customer", "name"), ("tier", "region", "credit_limit", "sales_rep"),
             _customer_parsers, lambda: Upsert(Customer, {}), key=("customer",), spelled=("region",),
             example=EXAMPLES["customers"]),
        Kind("suppliers", "suppliers", ("supplier", "name"), ("inspection_exempt",),
             _supplier_parsers, lambda: Upsert(Supplier, {"inspection_exempt": False}, guard=_supplier_guard),
             key=("supplier",), example=EXAMPLES["suppliers"]),
        Kind("stock", "counts", ("sku", "warehouse", "on_hand"), (),
             lambda ctx: {"sku": csvio.known(ctx.skus, "SKU", "not in products; import products first"),
                          "warehouse": csvio.text_value, "on_hand": csvio.non_negative_int},
             StockCounts, key=("sku", "warehouse"), refusable=lambda ctx: True, example=EXAMPLES["stock"]),
        Kind("receipts", "receipt lines", ("receipt_id", "sku", "warehouse", "qty", "expected_at"), ("supplier",),
             _receipt_parsers,
             lambda: Upsert(Receipt, {"status": "open"}, times=("expected_at",), guard=_receipt_guard),
             key=("receipt_id", "sku", "warehouse"), refusable=lambda ctx: True, example=EXAMPLES["receipts"]),
        Kind("orders", "orders", ORDER_COLUMNS, ORDER_OPTIONAL, _order_parsers, Orders,
             key=("order_id",), sub="line_no", shared=ORDER_SHARED, row_check=_order_check,
             refusable=lambda ctx: ctx.update, spelled=("channel", "region"), example=EXAMPLES["orders"]),
        Kind("shipments", "shipments", ("order_id",),
             ("shipped_at", "carrier", "tracking", "line_no", "sku", "qty", "shipment_id"),
             _shipment_parsers, Shipments, key=("order_id",), sub="line_no", group=_shipment_group,
             shared=("shipped_at", "carrier", "tracking"), row_check=_shipment_check,
             refusable=lambda ctx: True, plan_by_rollback=True, example=EXAMPLES["shipments"]),
        Kind("deliveries", "deliveries", ("order_id", "delivered_at"), ("issue",), _delivery_parsers, Deliveries,
             key=("order_id",), refusable=lambda ctx: True, plan_by_rollback=True, one="delivery",
             example=EXAMPLES["deliveries"]),
        Kind("returns", "return lines", ("order_id", "line_no", "qty", "reason", "returned_at"), ("warehouse",),
             _return_parsers, Returns, key=("order_id", "line_no", "returned_at", "reason"), refusable=lambda ctx: True,
             plan_by_rollback=True, example=EXAMPLES["returns"]),
        Kind("qc", "qc batches",
             ("supplier", "batch_id", "inspected_at", "passed", "total", "promised_at", "received_at"), ("sku",),
             _qc_parsers, lambda: Upsert(QcBatch, {}, times=("inspected_at", "promised_at", "received_at")),
             key=("supplier", "batch_id"), row_check=_qc_check, one="qc batch", example=EXAMPLES["qc"]),
    )
}


def template(kind: str, *, example: bool = False) -> Iterator[list[str]]:
    """The rows of a CSV template for ``kind``: its header (required columns first), and with
    ``example`` three example rows."""
    spec = KINDS[kind]
    yield list(spec.columns)
    if example:
        for row in spec.example:
            yield list(row)
