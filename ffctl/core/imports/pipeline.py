"""The import pipeline, the same for every kind (the kinds are rows of ``kinds.KINDS``).

    file --parse+validate--> staging --cross-row checks--> [plan] --batches of whole records--> store

See the package's docstring for the steps; a kind brings its columns, cell parsers, key and a
``Handler`` that classifies and writes a batch of records.
"""

from __future__ import annotations

import gc
import marshal
import operator
import queue
import sqlite3
import threading
import time
import zlib
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import sqlalchemy as sa
import sqlmodel
from sqlalchemy.orm import Session

from ffctl.core import csvio
from ffctl.core.bulk import (
    among,
    sqlite_analyze_stale,
    sqlite_checkpoint,
    sqlite_defer_checkpoints,
    sqlite_inserts_in_one_statement,
    sqlite_working_set,
)
from ffctl.core.csvio import CsvFileError
from ffctl.core.errors import UsageError
from ffctl.core.models import Customer, Product, Supplier
from ffctl.core.store import is_postgresql
from ffctl.i18n import N_, _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config
    from ffctl.core.profiles import ProfileReader
    from ffctl.core.store import Store

MAX_ERRORS_SHOWN = 50
BATCH_ROWS = 10_000
MEMO_CELLS = 4096  # parsed cell values remembered per column (compile_row_parser)
# SQLite page cache of the connection writing an import's batches: random index inserts outgrow the
# default 2 MiB (docs/performance.md, import)
SQLITE_CACHE_MIB = 32
# SQLite batches through the writer thread too (_run_pipelined): off until it measures faster than
# one thread, which it did not on a loaded 2-core machine (docs/performance.md, import: importpipe)
SQLITE_WRITER_THREAD = False
IGNORED_COLUMNS = frozenset({"error"})  # a rejects file imports as it is

NEW, UPDATED, UNCHANGED, SKIPPED, REJECTED = "new", "updated", "unchanged", "skipped", "rejected"


# --- the report ---------------------------------------------------------------------------------

# the generated row parser records this English text; RowError translates it when shown
_MISSING_VALUE = N_("missing required value")


@dataclass(frozen=True)
class RowError:
    line: int | None
    column: str | None
    value: str | None
    reason: str

    def __str__(self) -> str:
        where = _("line {line}").format(line=self.line) if self.line else _("file")
        if self.column:
            return _("{where}: {column} {shown}: {reason}").format(
                where=where, column=self.column, shown=csvio.shown(self.value or ""), reason=_(self.reason)
            )
        return f"{where}: {_(self.reason)}"


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
            "kind": self.kind,
            "unit": self.unit,
            "path": self.path,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "dry_run": self.dry_run,
            "read": self.read,
            "written": self.written,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "rejected_rows": self.rejected_rows,
            "error_count": self.error_count,
            "errors": [e.__dict__ for e in self.errors],
            "changed": self.changed,
            "notes": self.notes,
            "rejects_path": self.rejects_path,
            "aborted": self.aborted,
            "seconds": round(self.seconds, 3),
        }


Progress = Callable[[str, int, "int | None", int], None]  # (phase, done, total, rows)


# --- what every handler gets ----------------------------------------------------------------


@dataclass
class Context:
    cfg: Config
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
    handler: Callable[[], Handler]
    key: tuple[str, ...]  # the columns naming a record
    sub: str | None = None  # numbers the rows of one record (line_no)
    shared: tuple[str, ...] = ()  # every row of one record must agree on these
    # a row's checks across its cells: (ctx) -> (values aligned with columns) -> [(column, reason)] or None
    row_check: Callable[[Context], Callable[[tuple], list[tuple[str, str]] | None]] | None = None
    refusable: Callable[[Context], bool] = lambda ctx: False  # may the store refuse a valid record?
    plan_by_rollback: bool = False  # plan by applying in a rolled-back transaction
    # abort mode without a planning pass: every batch in one transaction, rolled back if any was refused
    abort_in_one: bool = False
    spelled: tuple[str, ...] = ()  # columns compared without case and stored as first seen (SPELLED_IN)
    one: str = ""  # one record, when not ``unit`` less its last letter
    # the record a row belongs to, when that is not its key's values: (values) -> group or None
    group: Callable[[tuple], str | None] | None = None
    backfills: bool = False  # takes --backfill (orders: their SLA history up to the import's clock)
    example: tuple[tuple[str, ...], ...] = ()  # rows for ``import KIND --template --example``, by column

    @property
    def unit_one(self) -> str:
        return self.one or self.unit[:-1]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional

    def index(self, column: str) -> int:
        return self.columns.index(column)


def positions(columns: Sequence[str]):
    """Where each column's value stands in a row's values, by name: ``positions(cols).sku``."""
    return namedtuple("Positions", columns)(*range(len(columns)))


class Handler:
    """Classifies a batch of records against the store and (``write=True``) writes it."""

    def apply(self, session: Session, ctx: Context, kind: Kind, records: list[Record], write: bool) -> list[Outcome]:
        raise NotImplementedError

    def notes(self, ctx: Context) -> list[str]:
        """Lines for the report once every batch is written."""
        return []


class PreparingHandler(Protocol):
    """A handler that reads a batch's rows (``prepare``) while the writer thread writes the one before."""

    def prepare(self, session: Session, ctx: Context, kind: Kind, records: list[Record]) -> tuple: ...

    def apply(
        self, session: Session, ctx: Context, kind: Kind, records: list[Record], write: bool, prepared: tuple | None
    ) -> list[Outcome]: ...


# --- the pipeline ----------------------------------------------------------------------------


def import_file(
    store: Store,
    cfg: Config,
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
    from ffctl.core.imports.kinds import KINDS

    started = time.perf_counter()
    spec = KINDS.get(kind)
    if spec is None:
        raise UsageError(
            _("unknown import kind {kind!r}: use one of {names}").format(kind=kind, names=", ".join(KINDS))
        )
    if on_error not in ("abort", "skip"):
        raise UsageError(_("--on-error {on_error!r}: use abort or skip").format(on_error=on_error))
    if rejects is not None and on_error != "skip":
        raise UsageError(_("--rejects goes with --on-error skip (in abort mode nothing is imported)"))
    if rejects is not None and str(path) != "-" and Path(rejects).resolve() == Path(path).resolve():
        raise UsageError(_("--rejects must not be the file being imported"))
    if backfill and not spec.backfills:
        raise UsageError(_("--backfill goes with `import orders` (it records the SLA history of new orders)"))
    if encoding is not None:
        encoding = csvio.check_encoding(encoding)
    if delimiter is not None:
        delimiter = csvio.check_delimiter(delimiter)
    progress = progress or (lambda phase, done, total, rows: None)
    with _cyclic_gc_paused():
        return _import(
            spec,
            store,
            cfg,
            kind,
            path,
            now=now,
            actor=actor,
            on_error=on_error,
            dry_run=dry_run,
            update=update,
            ignore_unknown=ignore_unknown,
            encoding=encoding,
            rejects=rejects,
            progress=progress,
            batch_rows=batch_rows,
            started=started,
            delimiter=delimiter,
            backfill=backfill,
            profile=profile,
        )


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


def _import(
    spec,
    store: Store,
    cfg: Config,
    kind,
    path,
    *,
    now,
    actor,
    on_error,
    dry_run,
    update,
    ignore_unknown,
    encoding,
    rejects,
    progress,
    batch_rows,
    started,
    delimiter,
    backfill=False,
    profile=None,
) -> ImportReport:
    report = ImportReport(
        kind=kind,
        unit=spec.unit,
        unit_one=spec.unit_one,
        path=str(path),
        on_error=on_error,
        dry_run=dry_run,
        update=update,
    )
    ctx = _context(store, cfg, now=now, actor=actor, update=update, spelled=spec.spelled)
    ctx.backfill = backfill

    source: csvio.CsvSource | ProfileReader = csvio.open_csv(path, encoding, delimiter)
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
        refusable = on_error == "abort" and spec.refusable(ctx)
        in_one = refusable and spec.abort_in_one and not dry_run
        if (dry_run or (refusable and not in_one)) and (dry_run or not staging.error_count()):
            _run(spec, ctx, store, staging, report, progress, batch_rows, write=False)
            staging.close_bad_groups()
        if staging.error_count() and on_error == "abort":
            report.aborted = True
        elif in_one:
            handler = _run(spec, ctx, store, staging, report, progress, batch_rows, write=True, all_or_nothing=True)
            staging.close_bad_groups()
            report.aborted = bool(staging.error_count())
            if not report.aborted:
                report.notes.extend(handler.notes(ctx))
                refresh_statistics(store, getattr(handler, "grown", {}), progress)
        elif not dry_run:
            _zero_counts(report)
            handler = _run(spec, ctx, store, staging, report, progress, batch_rows, write=True)
            report.notes.extend(handler.notes(ctx))
            refresh_statistics(store, getattr(handler, "grown", {}), progress)
            staging.close_bad_groups()
        _finish(report, staging, source.header, rejects)
        if profile is not None:
            assert isinstance(source, ProfileReader)  # the profile's reader of the file
            source.name_columns(report)
    finally:
        staging.close()
    report.seconds = time.perf_counter() - started
    return report


def _zero_counts(report: ImportReport) -> None:
    report.written = report.updated = report.unchanged = report.skipped = 0
    report.changed.clear()
    report.notes.clear()


def _context(
    store: Store, cfg: Config, *, now: datetime, actor: str, update: bool, spelled: tuple[str, ...] = ()
) -> Context:
    with store.session() as s:
        skus = {
            r[0]: (r[1], bool(r[2]))
            for r in s.execute(
                sa.select(sqlmodel.col(Product.sku), sqlmodel.col(Product.category), sqlmodel.col(Product.custom))
            )
        }
        customers = {
            r[0]: (r[1], r[2], r[3])
            for r in s.execute(
                sa.select(
                    sqlmodel.col(Customer.customer),
                    sqlmodel.col(Customer.tier),
                    sqlmodel.col(Customer.region),
                    sqlmodel.col(Customer.sales_rep),
                )
            )
        }
        suppliers = set(s.scalars(sa.select(sqlmodel.col(Supplier.supplier))))
        spellings = {column: stored_spellings(s, column) for column in spelled}
    return Context(
        cfg=cfg,
        tz=cfg.timezone,
        now=now,
        actor=actor,
        update=update,
        dialect=store.dialect,
        present=frozenset(),
        skus=skus,
        customers=customers,
        suppliers=suppliers,
        spellings=spellings,
    )


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
            raise CsvFileError(
                _("column {shown} appears twice in the header (columns {value} and {value2})").format(
                    shown=csvio.shown(name), value=seen[name] + 1, value2=pos + 1
                )
            )
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
                seen=csvio.delimiter_name(other),
                used=csvio.delimiter_name(delimiter),
                flag="tab" if other == "\t" else repr(other),
            )
        raise CsvFileError(
            ngettext(
                "unknown column {listed}: {kind} takes {required} (required) and {optional}",
                "unknown columns {listed}: {kind} takes {required} (required) and {optional}",
                len(unknown),
            ).format(
                listed=listed,
                kind=spec.name,
                required=", ".join(spec.required),
                optional=", ".join(spec.optional) or _("nothing else"),
            ),
            hint=hint,
        )
    missing = [c for c in spec.required if c not in seen]
    if missing:
        raise CsvFileError(
            ngettext(
                "missing required column {missing} (the header has {header})",
                "missing required columns {missing} (the header has {header})",
                len(missing),
            ).format(missing=", ".join(missing), header=", ".join(csvio.shown(n) for n in names if n) or _("nothing")),
            hint=_("{name} needs {names}; optional: {value}.").format(
                name=spec.name, names=", ".join(spec.required), value=", ".join(spec.optional) or "-"
            ),
        )
    known = [(pos, name) for pos, name in enumerate(names) if name in allowed]
    unnamed = [pos for pos, name in enumerate(names) if not name] if not ignore_unknown else []
    return Columns(names=names, known=known, unnamed=unnamed, width=len(names) if not ignore_unknown else 1 << 30)


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return _(" (did you mean {value!r}?)").format(value=close[0]) if close else ""


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
            body.append(f"        problems.append(({name!r}, '', {_MISSING_VALUE!r}))")
    body.append(f"    return ({', '.join(out)},), problems")
    exec("\n".join(body), env)  # noqa: S102 - generated from the kind's own column names
    return env["parse_row"]


def _stage(
    spec: Kind,
    ctx: Context,
    source: csvio.CsvSource | ProfileReader,
    columns: Columns,
    staging: Staging,
    progress: Progress,
) -> None:
    parsers = spec.parsers(ctx)
    parse_row = compile_row_parser(spec, columns, parsers)
    # text cells (keys, names, channel, ...) are checked for control characters; others fail their parser
    text_at = [(pos, name) for pos, name in columns.known if getattr(parsers[name], "text", False)]
    key_at = [spec.index(c) for c in spec.key]
    k0 = key_at[0] if len(key_at) == 1 else None
    sub_at = spec.index(spec.sub) if spec.sub else None
    sub_required = spec.sub in spec.required
    shared_at = [spec.index(c) for c in spec.shared]
    shared = (
        operator.itemgetter(*shared_at)
        if len(shared_at) > 1
        else (lambda values, i=shared_at[0]: (values[i],))
        if shared_at
        else None
    )
    header_width = len(columns.names)
    width, unnamed = columns.width, columns.unnamed
    row_check = spec.row_check(ctx) if spec.row_check is not None else None
    names = spec.columns
    dumps = marshal.dumps
    batch: list[tuple] = []
    errors: list[tuple] = []
    seq = 0
    problems: list[tuple[str | None, str | None, str]] | None
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
        sub: int | None
        if sub_at is None:
            sub = 0
        else:
            sub = values[sub_at]
            if sub is None:
                sub = -seq if sub_required else 0
        batch.append(
            (
                grp,
                sub,
                seq,
                line,
                problems is not None,
                dumps(shared(values)) if shared else None,
                dumps(values),
                dumps(cells),
            )
        )
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
        problems.append(
            (None, None, _("{count} cells but the header has {width} columns").format(count=len(cells), width=width))
        )
    for pos in unnamed:
        if cells[pos].strip():
            problems.append(
                (None, cells[pos].strip(), _("a value in column {value}, which has no header").format(value=pos + 1))
            )
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
            problems.append(
                (name, text, _("contains {what}: keys and names must be one line of printable text").format(what=what))
            )
    for pos, cell in enumerate(cells):
        if "\x00" in cell and pos not in checked:
            name = names[pos] if pos < len(names) and names[pos] else None
            if name is not None:
                problems.append((name, cell.strip(), _("contains a NUL byte, which cannot be stored")))
            else:
                problems.append(
                    (
                        None,
                        None,
                        _("column {position} contains a NUL byte, which cannot be stored").format(position=pos + 1),
                    )
                )
    return problems or None


class Staging:
    """Rows and errors of one import, in SQLite's private temporary database (on disk)."""

    def __init__(self) -> None:
        # "" = a private temporary database, deleted when closed (or when the process dies)
        self.db = sqlite3.connect("", isolation_level=None)
        for pragma in (
            "page_size = 32768",
            "cache_size = -16384",
            "journal_mode = OFF",
            "synchronous = OFF",
            "temp_store = FILE",
            "locking_mode = EXCLUSIVE",
        ):
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
        key = ""  # as None would: the first record's rows start empty whatever its grp
        rows: list[tuple[int, int, tuple]] = []
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
        rows: list[tuple] = sorted(tuple(map(int, p.split(":"))) for p in pairs.split(","))
        first_line = rows[0][1]
        key = grp.replace("\x1f", ", ")
        shown = csvio.plain(key)
        if spec.sub and sub != 0:
            column, value = spec.sub, str(sub)
            reason = _("duplicate line: {value} {shown} {sub} {sub2} is also on line {first_line}").format(
                value=spec.key[0], shown=shown, sub=spec.sub, sub2=sub, first_line=first_line
            )
        elif spec.sub:
            column, value = spec.sub, ""
            reason = _(
                "duplicate {value} {shown}: also on line {first_line} (give each row of one {unit_one} its own {sub})"
            ).format(value=spec.key[0], shown=shown, first_line=first_line, unit_one=spec.unit_one, sub=spec.sub)
        else:
            column, value = spec.key[0], key
            reason = _("duplicate {what}: also on line {first_line}").format(what=what, first_line=first_line)
        errors.extend((seq, line, grp, column, value, reason) for seq, line in rows[1:])
    if spec.shared:
        names = columns.names
        conflicting = db.execute(
            "SELECT grp FROM rec WHERE bad = 0 GROUP BY grp HAVING count(DISTINCT hdr) > 1"
        ).fetchall()
        for (grp,) in conflicting:
            rows = db.execute(
                "SELECT seq, line, hdr, raw FROM rec WHERE grp = ? AND bad = 0 ORDER BY seq", (grp,)
            ).fetchall()
            _seq, ref_line, ref_hdr, ref_raw = rows[0]
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
                        errors.append(
                            (
                                seq,
                                line,
                                grp,
                                col,
                                text,
                                _(
                                    "differs from line {ref_line} ({shown}): every row of one {unit_one} must have the same {col}"
                                ).format(
                                    ref_line=ref_line, shown=csvio.shown(ref_text), unit_one=spec.unit_one, col=col
                                ),
                            )
                        )
    staging.add_errors(errors)


# --- 3 and 4. plan and write -----------------------------------------------------------------


class _Rollback(Exception):
    """Raised inside a planning transaction so that it rolls back."""


def _lock_kind(session: Session, ctx: Context, kind: str) -> None:
    """Serialise imports of one kind across processes on PostgreSQL (SQLite's BEGIN IMMEDIATE
    already does): two imports of the same file never both insert one order."""
    if is_postgresql(ctx):
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(f"ffctl:import:{kind}".encode())})


def _run(
    spec: Kind,
    ctx: Context,
    store: Store,
    staging: Staging,
    report: ImportReport,
    progress: Progress,
    batch_rows: int,
    *,
    write: bool,
    all_or_nothing: bool = False,
) -> Handler:
    """Classify (write=False) or write every good record, batch by batch; returns the handler.

    ``all_or_nothing`` (abort mode of an ``abort_in_one`` kind): every batch in one transaction,
    rolled back if any record was refused; the batches after the first refusal are only classified
    (in that transaction, so they see the batches before)."""
    handler = spec.handler()
    total = staging.good_rows()
    refusals: list[tuple] = []
    phase = "writing" if write else "planning"
    progress(phase, 0, total, 0)
    if all_or_nothing:
        done = 0
        try:
            with store.session(write=True) as s:
                _lock_kind(s, ctx, spec.name)
                if not is_postgresql(ctx):
                    sqlite_working_set(s, cache_mib=SQLITE_CACHE_MIB)
                for batch in staging.records(batch_rows):
                    outcomes = handler.apply(s, ctx, spec, batch, not refusals)
                    done += _account(report, batch, outcomes, refusals)
                    progress(phase, done, total, done)
                    del batch, outcomes  # freed first, so the collection does not walk them
                    gc.collect(1)
                if refusals:
                    raise _Rollback
            report.batches += 1
        except _Rollback:
            pass
        staging.add_errors(refusals)
        return handler
    if write and hasattr(handler, "prepare") and (is_postgresql(ctx) or SQLITE_WRITER_THREAD):
        preparing = cast(PreparingHandler, handler)  # hasattr: it prepares (orders' handler)
        _run_pipelined(spec, ctx, store, staging, report, progress, batch_rows, preparing, total, refusals)
        staging.add_errors(refusals)
        return handler
    done = 0
    deferred: dict = {}  # SQLite connections whose checkpoints wait for the last batch
    try:
        for batch in staging.records(batch_rows):
            if write:
                with store.session(write=True) as s:
                    _lock_kind(s, ctx, spec.name)
                    if not is_postgresql(ctx):  # the pooled connection keeps it, and its pages, batch to batch
                        sqlite_working_set(s, cache_mib=SQLITE_CACHE_MIB)
                        sqlite_defer_checkpoints(s, deferred)
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
            del batch, outcomes  # freed first, so the collection does not walk them
            gc.collect(1)  # the batch's cyclic garbage (sessions, results): young, so this is cheap
    finally:
        if deferred:
            sqlite_checkpoint(deferred)
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
            report.notes.append(_("line {line}: {reason}").format(line=record.line, reason=reason))
    return sum(len(r.rows) for r in batch)


def _run_pipelined(
    spec: Kind,
    ctx: Context,
    store: Store,
    staging: Staging,
    report: ImportReport,
    progress: Progress,
    batch_rows: int,
    handler: PreparingHandler,
    total: int,
    refusals: list[tuple],
) -> None:
    """Write batches with the database's work overlapping ours.

    Most of a PostgreSQL batch is the server's (foreign-key checks and index entries for every
    row COPY sends), during which this process would only wait; SQLite's work for the rows runs
    in this process, without the GIL, as one statement per table (``bulk.sqlite_inserts_in_one_statement``).
    So one writer thread runs each batch's transaction (lock, classify, insert, commit; one batch
    at a time, in file order, so a killed import still leaves whole batches), while this thread
    reads the next batch from staging and prepares its rows (``handler.prepare``); two batches in
    memory at most.
    """
    jobs: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()
    sqlite = not is_postgresql(ctx)
    deferred: dict = {}  # SQLite connections whose checkpoints wait for the last batch

    def write() -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            batch, prepared = job
            try:
                with store.session(write=True) as s:
                    _lock_kind(s, ctx, spec.name)
                    if sqlite:  # the pooled connection keeps these, and its pages, batch to batch
                        sqlite_working_set(s, cache_mib=SQLITE_CACHE_MIB)
                        sqlite_defer_checkpoints(s, deferred)
                        sqlite_inserts_in_one_statement(s)
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

    # this thread reads on a connection of its own for the whole run, so that the writer gets the
    # same pooled connection each batch, with its page cache (SQLite: one cache, not two half warm)
    reading = store.engine.connect()
    reader = Session(bind=reading)
    writer = threading.Thread(target=write, name="ffctl-import-writer", daemon=True)
    writer.start()
    try:
        for batch in staging.records(batch_rows):
            try:
                prepared = handler.prepare(reader, ctx, spec, batch)
            finally:
                reader.rollback()  # a read transaction per batch: the next one sees what the writer wrote
            collect(PIPELINE_AHEAD - 1)  # raises the writer's error, if any
            jobs.put((batch, prepared))
            pending += 1
            del batch, prepared
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
        reader.close()
        reading.close()
        if deferred:
            sqlite_checkpoint(deferred)


PIPELINE_AHEAD = 1  # batches handed to the writer and not yet written, besides the one being prepared

ANALYZE_MIN_ROWS = 1000


def refresh_statistics(store: Store, grown: dict[str, int], progress: Progress) -> None:
    """ANALYZE the tables an import grew by a large share, so that the commands after it are planned
    for the rows it wrote.

    Right after a bulk load the planner knows nothing of the new rows (SQLite never gathers
    statistics on its own; PostgreSQL's autovacuum gets to it within a minute or so), and key
    lookups planned blind become scans (docs/performance.md, import). SQLite: a table
    whose rows are more than twice what its statistics say (or that has none). PostgreSQL: a table
    the import added more than a fifth of its estimated rows to (a sample), on an autocommit
    connection.
    """
    tables = sorted(t for t, n in grown.items() if n >= ANALYZE_MIN_ROWS)
    if not tables:
        return
    progress("analyzing", 0, None, 0)
    if is_postgresql(store):
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            known: dict[str, float] = dict(
                conn.exec_driver_sql(
                    "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%(names)s) "
                    "AND relnamespace = to_regnamespace(current_schema())::oid",
                    {"names": tables},
                ).all()
            )
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
    report.rejected_rows = db.execute("SELECT count(*) FROM rec WHERE grp IN (SELECT grp FROM badgrp)").fetchone()[0]
    if rejects is None:
        return
    if not report.rejected_rows:  # a header-only file: no stale rejects from an earlier run
        report.rejects_path = str(rejects)
        report.rejects_written = csvio.write_rejects(rejects, header, iter(())).rows
        return
    unit = report.unit_one
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
            yield (
                marshal.loads(raw),
                own
                or wide
                or _("not imported: this {unit} has an error on line {line} ({reason})").format(
                    unit=unit, line=line, reason=reason
                ),
            )

    report.rejects_path = str(rejects)
    written = csvio.write_rejects(rejects, header, rows())
    report.rejects_written, report.rejects_formulas = written.rows, written.formulas


# --- stored rows by key ------------------------------------------------------------------------


def existing_rows(session: Session, table, key_cols: Sequence[str], keys: list, *, lock: bool = False) -> dict:
    """Rows of ``table`` whose key is in ``keys`` (a key is a value, or a tuple for composite keys)."""
    found: dict = {}
    cols = [table.c[c] for c in key_cols]
    for start in range(0, len(keys), 2000):
        chunk = keys[start : start + 2000]
        cond = among(session, cols[0] if len(cols) == 1 else cols, chunk)
        stmt = sa.select(table).where(cond)
        if lock and is_postgresql(session):
            stmt = stmt.with_for_update()
        for row in session.execute(stmt).mappings():
            key = row[key_cols[0]] if len(cols) == 1 else tuple(row[c] for c in key_cols)
            found[key] = row
    return found
