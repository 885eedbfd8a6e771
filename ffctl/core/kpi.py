"""Fulfillment KPIs against targets (SPEC §7), computed in SQL on both backends.

Every number is an aggregate the database computes (GROUP BY, window functions, and
``percentile_cont`` on PostgreSQL; on SQLite, which has no percentile function, an OFFSET to
the rank inside an index or a ROW_NUMBER/COUNT rank pick); Python only receives one row per
group (or per node) and lays the rows out. Nothing here loads orders, tasks or lines into Python.

The facts: ``order_fact`` holds one row per order with everything the order-level KPIs need,
and ``node_fact`` the node visits that can weigh in the bottleneck. ``refresh_facts`` keeps
them: it rewrites, set-based, the facts of the orders the append-only audit trail names since
its last run (every change to an order writes an event), so a report reads one narrow row per
order instead of the task history, and the cost of a refresh follows what changed. The node
cut and ``report sla`` read the task history itself.

Definitions (the history these read is written by the workflow, imports and ``ship``/``deliver``):

- order_confirmation_minutes: created_at -> first completion (completed or auto_approved) of the
  order's first node that was not skipped. That is the order's earliest completion of any
  node, since no later node can be entered before the first one is passed. Median is ``actual``.
- allocation_minutes: that first completion -> first completion of a node whose config says
  ``auto = "allocate"``. Median.
- pick_accuracy: the lines an import reported in a shipment picked right / all it reported
  (``_picks_sql``: a pick error, a different SKU than the line's or more units than it had left, is
  a pick_line row; a right pick its shipment line's ``picked_right``; pick lines of no shipment count too).
- on_time_shipping: orders shipped in full (every unit shipped or cancelled) whose last shipment's
  date in ``[defaults] timezone`` is on or before promised_ship_date, i.e. every unit left by
  then / orders shipped in full (an order without a promised date cannot be on time).
- fill_rate: units shipped (with the line's SKU) by the promised date / units ordered less those
  cancelled, over the orders that are shipped in full or whose promised date is before the
  report's day (an order still inside its promise does not count yet); cancelled orders do not count.
- perfect_order: delivered orders that shipped on time, in full with the right SKUs (no pick
  error, no unit cancelled; an order without pick lines counts as picked as ordered), had no
  delivery issue and had nothing returned / delivered orders. ``report misses`` says why the
  others were not (core/misses.py, ``miss_fact``).
- return_rate: units returned / units shipped (SPEC 9.5), with the top three return reasons by
  units per group; product and category cut by each line's own SKU.
- cycle_time_hours: created_at -> shipped_at, median; with ``--by node`` it is the time spent in
  each node per visit (entered -> left).
- sla_attainment: node tasks closed by a decision (completed, auto_approved, rejected,
  auto_rejected) that are not breached / those tasks. Skipped and cancelled visits and open
  tasks do not count.
- breaches: node visits breached by ``workflow.breached`` (SPEC 9.1): stopped after their
  deadline, or still running at or past it at ``now``, whether or not a sweep flagged them
  (``sla_state`` only records what a sweep saw). Skipped visits never breach.
- lateness: p50/p90 of the breached visits' business time past the deadline (up to when they
  stopped, or ``now``), in each node's calendar (``_BusinessTime``).

Targets and gaps: ``gap = actual - target`` for every KPI (plain arithmetic, so its sign reads
differently per KPI: for the time KPIs lower is better and a positive gap misses; for rates
higher is better and a negative gap misses). ``met`` says whether the target is met without
knowing the direction.

The bottleneck is the node with the largest mean of its share of breaches and its share of
time over SLA (wall-clock time past the deadline, up to when the visit stopped or ``now``),
over every node visit of the period's orders (one for the report, whatever the cut). The sum
only weighs nodes against each other: what a report shows of it is the share, and the node's
lateness beside it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import misses
from ffctl.core.bulk import sqlite_working_set
from ffctl.core.clock import local_date, parse_date, parse_time, start_of_day, zone
from ffctl.core.errors import FfctlError
from ffctl.core.models import GROUP_SUMS, ORDER_COUNTERS, VISIT_COUNTERS, VISIT_SUMS, UTCDateTime
from ffctl.core.stock import allocation_nodes
from ffctl.core.store import is_postgresql
from ffctl.core.workflow import breached_sql, stopped_sql
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config
    from ffctl.core.store import Store

#: KPI name -> (unit, higher_is_better). The order is the report's order.
KPIS: dict[str, tuple[str, bool]] = {
    "order_confirmation_minutes": ("minutes", False),
    "allocation_minutes": ("minutes", False),
    "pick_accuracy": ("rate", True),
    "on_time_shipping": ("rate", True),
    "fill_rate": ("rate", True),
    "perfect_order": ("rate", True),
    "cycle_time_hours": ("hours", False),
    "sla_attainment": ("rate", True),
    "return_rate": ("rate", False),
}
DIMENSIONS = ("product", "category", "region", "channel", "team", "customer", "node", "week", "workflow")
ALL = "all"  # the group of a report that is not cut

#: Task outcomes that close a visit by a decision (they count for SLA attainment).
DECIDED = ("completed", "auto_approved", "rejected", "auto_rejected")
#: Outcomes that complete a node (the order moves on).
PASSED = ("completed", "auto_approved")
AUTO_ACTIONS = ("auto_approved", "auto_rejected")

_DATE_ONLY = re.compile(r"^\s*\d{4}[-/]\d{1,2}[-/]\d{1,2}\s*$")


# --- the period ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Orders created in [start, end); None is open-ended."""

    start: datetime | None = None
    end: datetime | None = None


def parse_period(start: str | None, end: str | None, tz: str) -> Period:
    """``--from``/``--to`` as users give them: a date (the whole day, in ``tz``) or a time.

    ``--to`` with a date includes that day; with a time it is the exclusive end.
    ValueError names which bound is wrong.
    """

    def bound(text: str | None, option: str, upper: bool) -> datetime | None:
        if text is None:
            return None
        try:
            if _DATE_ONLY.match(text):
                day = parse_date(text)
                return start_of_day(day + timedelta(days=1) if upper else day, tz)
            return parse_time(text, tz)
        except ValueError as exc:
            raise ValueError(_("{option} {text!r}: {exc}").format(option=option, text=text, exc=exc)) from None

    period = Period(bound(start, "--from", False), bound(end, "--to", True))
    if period.start and period.end and period.end <= period.start:
        raise ValueError(_("--to {end!r} is not after --from {start!r}").format(end=end, start=start))
    return period


# --- dialect helpers -------------------------------------------------------------------------


def _stamp(dt: datetime) -> str:
    """How SQLAlchemy stores a UTC datetime on SQLite (string comparison = time order)."""
    return dt.astimezone(timezone.utc).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def utc_offsets(tz: str, start: datetime, end: datetime) -> list[tuple[datetime | None, int]]:
    """The UTC offsets (minutes) of ``tz`` over [start, end]: [(from_utc, minutes), ...].

    The first entry's from_utc is None (it also covers everything before ``start``); each change
    is found to the minute. Used to convert times to local dates in SQLite, which has no zones.
    """
    zi = zone(tz)

    def offset(t: datetime) -> int:
        delta = t.astimezone(zi).utcoffset()
        assert delta is not None  # an aware time has its offset
        return int(delta.total_seconds() // 60)

    t = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out: list[tuple[datetime | None, int]] = [(None, offset(t))]
    step = timedelta(days=1)
    while t < end:
        nxt = t + step
        if offset(nxt) != out[-1][1]:
            lo, hi = t, nxt  # offset(lo) == current, offset(hi) == new
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid <= lo:
                    break
                if offset(mid) == out[-1][1]:
                    lo = mid
                else:
                    hi = mid
            out.append((hi, offset(hi)))
        t = nxt
    return out


class _Sql:
    """SQL fragments that differ between SQLite and PostgreSQL."""

    def __init__(self, session: Session, tz: str, now: datetime) -> None:
        self.sqlite = not is_postgresql(session)
        self.tz = tz
        self._offsets: list[tuple[datetime | None, int]] | None = None
        self._span: tuple[datetime, datetime] | None = None
        self.calendar_tables: dict[tuple, tuple[str, int]] = {}  # _BusinessTime's, per calendars and name
        #: _BusinessTime's days written to temporary tables (their names), not inlined in each statement
        self.stored_calendars: dict[str, str] | None = None
        self._session = session
        self._now = now

    def tune(self) -> None:
        """Settings for a few big scans and sorts, for this transaction/connection only.

        PostgreSQL: no JIT (compiling costs a second per query here and wins nothing on these
        aggregates) and enough work_mem for the per-order hash aggregates. SQLite: a page cache
        big enough for the sorts to stay in memory, and reads through mmap (temp_store cannot
        change inside a transaction, so it stays as it is).
        """
        if self.sqlite:
            sqlite_working_set(self._session, cache_mib=128, mmap_mib=1024)
        else:
            self._session.execute(sa.text("SET LOCAL jit = off"))
            self._session.execute(sa.text("SET LOCAL work_mem = '128MB'"))

    def seconds(self, a: str, b: str) -> str:
        """Seconds from a to b."""
        if self.sqlite:
            return f"((julianday({b}) - julianday({a})) * 86400.0)"
        return f"EXTRACT(EPOCH FROM ({b} - {a}))"

    def span(self) -> tuple[datetime, datetime]:
        """The times the report's rows can fall in: the first order's created_at to 400 days past
        the last one (or past ``now``, if later)."""
        if self._span is None:
            # two subqueries: SQLite reads a lone MIN or MAX off ix_orders_created_at, both in one SELECT scan
            lo, hi = self._session.execute(
                sa.text("SELECT (SELECT MIN(created_at) FROM orders), (SELECT MAX(created_at) FROM orders)")
            ).one()
            lo = UTCDateTime().process_result_value(lo, None) or self._now
            hi = UTCDateTime().process_result_value(hi, None) or self._now
            self._span = (min(lo, self._now), max(hi, self._now) + timedelta(days=400))
        return self._span

    def epoch(self, col: str) -> str:
        """Seconds since 1970-01-01 UTC of a stored (naive UTC) time."""
        if self.sqlite:
            return f"((julianday({col}) - 2440587.5) * 86400.0)"
        # double precision (exact to the microsecond for these times): EXTRACT gives numeric, whose
        # arithmetic made the business-time sums over half a million visits several times slower
        return f"CAST(EXTRACT(EPOCH FROM {col}) AS DOUBLE PRECISION)"

    def epoch_day(self, col: str) -> str:
        """Days since 1970-01-01 UTC of a stored time (whole days; times after 1970)."""
        if self.sqlite:
            return f"CAST(julianday({col}) - 2440587.5 AS INTEGER)"
        return f"CAST(FLOOR({self.epoch(col)} / 86400) AS INTEGER)"

    def least(self, a: str, b: str) -> str:
        return f"min({a}, {b})" if self.sqlite else f"LEAST({a}, {b})"

    def _offset_case(self, col: str, show: Callable[[int], str]) -> str:
        """``show`` of the zone's UTC offset (minutes) at stored ``col``: a CASE over the offset's
        changes in the span, or the one offset where it does not change."""
        if self._offsets is None:
            self._offsets = utc_offsets(self.tz, *self.span())
        last = show(self._offsets[-1][1])
        if len(self._offsets) == 1:
            return last
        whens = []
        for (_since, minutes), (until, _next) in zip(self._offsets, self._offsets[1:]):
            assert until is not None  # only the first entry has no from_utc
            whens.append(f"WHEN {col} < '{_stamp(until)}' THEN {show(minutes)}")
        return f"(CASE {' '.join(whens)} ELSE {last} END)"

    def _sqlite_shift(self, col: str) -> str:
        """A SQLite datetime modifier moving UTC ``col`` to local time."""
        return self._offset_case(col, lambda minutes: f"'{minutes:+d} minutes'")

    def local_date(self, col: str) -> str:
        if self.sqlite:
            return f"date({col}, {self._sqlite_shift(col)})"
        return f"CAST(({col} AT TIME ZONE 'UTC') AT TIME ZONE :tz AS DATE)"

    def local_iso(self, col: str) -> str:
        """ISO 8601 text of stored (naive UTC) ``col`` in the zone, with its offset, to the
        millisecond: ``2026-12-02T09:00:00.000+08:00`` (the process-mining export's times)."""

        def offset(minutes: int) -> str:
            return f"'{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}'"

        text = self._offset_case(col, offset)
        if self.sqlite:
            return f"(strftime('%Y-%m-%dT%H:%M:%f', {col}, {self._sqlite_shift(col)}) || {text})"
        return f"(to_char(({col} AT TIME ZONE 'UTC') AT TIME ZONE :tz, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') || {text})"

    def local_week(self, col: str) -> str:
        """The Monday (a local date) of the week ``col`` falls in."""
        if self.sqlite:
            return f"date({col}, {self._sqlite_shift(col)}, '-6 days', 'weekday 1')"
        return f"CAST(date_trunc('week', ({col} AT TIME ZONE 'UTC') AT TIME ZONE :tz) AS DATE)"

    def percentiles(self, values: str, ps: Iterable[float]) -> str:
        """Per group g of ``values`` (columns g, x): n and p<NN> columns, linear interpolation.

        PostgreSQL: percentile_cont. SQLite: rank each value in its group with ROW_NUMBER and
        COUNT, then pick the ranks around p*(n-1) and interpolate (what percentile_cont does).
        """
        ps = list(ps)
        if not self.sqlite:
            cols = ", ".join(f"percentile_cont({p}) WITHIN GROUP (ORDER BY x) AS p{round(p * 100)}" for p in ps)
            return f"SELECT g, COUNT(*) AS n, {cols} FROM ({values}) v WHERE x IS NOT NULL GROUP BY g"
        picks, finals = [], []
        for p in ps:
            k = round(p * 100)
            pos = f"({p} * (n - 1))"
            picks.append(
                f"MAX(CASE WHEN rn = CAST({pos} AS INTEGER) + 1 THEN x END) AS lo{k}, "
                f"MAX(CASE WHEN rn = CAST({pos} AS INTEGER) + 2 THEN x END) AS hi{k}, "
                f"MAX({pos} - CAST({pos} AS INTEGER)) AS f{k}"
            )
            finals.append(f"lo{k} + f{k} * (COALESCE(hi{k}, lo{k}) - lo{k}) AS p{k}")
        return (
            f"SELECT g, n, {', '.join(finals)} FROM ("
            f"SELECT g, MAX(n) AS n, {', '.join(picks)} FROM ("
            f"SELECT g, x, ROW_NUMBER() OVER (PARTITION BY g ORDER BY x) AS rn, "
            f"COUNT(*) OVER (PARTITION BY g) AS n FROM ({values}) v WHERE x IS NOT NULL"
            f") r GROUP BY g) q"
        )


_DAY_KEY = 1_000_000  # more days than 1970 to 4707: calday's key is calendar * _DAY_KEY + day


class _BusinessTime:
    """Business seconds between two times in SQL, counted in each node's calendar (lateness,
    SPEC 9.1: the business time a breached visit ran past its deadline).

    Each calendar becomes a table of UTC days over the report's span (``BusinessCalendar.utc_days``:
    the business seconds before each day's 00:00 UTC and the day's open ranges), inlined as a
    ``VALUES`` list, not a temp table (reports run on read-only standbys too). A time's running
    total is its day's total plus the part of the day's ranges before it, and the business seconds
    between two times are the difference of their totals: two equality joins per row. A node
    without a calendar counts wall-clock time.
    """

    def __init__(self, sql: _Sql, cfg: Config, *, clocks: dict | None = None, name: str = "calday") -> None:
        """``clocks``: a key (a node name by default) -> its clock, when not ``cfg``'s node calendars
        (``sla replay`` counts two configs' calendars in one query); ``name``: the CTE's."""
        self.sql, self.cfg, self.name = sql, cfg, name
        if clocks is None:
            clocks = {node: cfg.calendar(node) for node, spec in cfg.nodes.items() if spec.calendar}
        self.key: dict = {}  # calendar -> its key in the table (equal calendars share one)
        self.node_key: dict[str, int] = {}
        for node, cal in sorted(clocks.items()):
            if hasattr(cal, "utc_days"):  # a business calendar; the wall clock needs no table
                self.node_key[node] = self.key.setdefault(cal, len(self.key) + 1)
        self._table: tuple[str, int] | None = None

    def table(self) -> tuple[str, int]:
        """(the CTE ``calday(k, cum, s0, e0, ...)``, how many ranges a row has)."""
        return self._days()

    def _days(self) -> tuple[str, int]:
        if self._table is None:
            # one refresh counts business time in five facts: the table's text is built once for them
            shared = (self.name, tuple(self.key.items()))
            self._table = self.sql.calendar_tables.get(shared) or self._build_days()
            self.sql.calendar_tables[shared] = self._table
        return self._table

    def _relation(self) -> tuple[str, str, int]:
        """(the WITH clause or '', the table the joins read, its ranges per row): with
        ``sql.stored_calendars`` the days are written once to a temporary table keyed by k (the
        incremental refresh: PostgreSQL planned each statement's inlined list for 20-50 ms, and
        misjudged its joins' sizes), else the inlined CTE."""
        cte, width = self._days()
        if self.sql.stored_calendars is None:
            return f"WITH {cte} ", self.name, width
        stored = self.sql.stored_calendars.get(cte)
        if stored is None:
            stored = f"fact_{self.name}_{len(self.sql.stored_calendars)}"
            real = "REAL" if self.sql.sqlite else "DOUBLE PRECISION"
            key = "INTEGER" if self.sql.sqlite else "BIGINT"  # SQLite: the rowid itself
            columns = ", ".join(
                [f"k {key} PRIMARY KEY, cum {real}", *(f"s{i} {real}, e{i} {real}" for i in range(width))]
            )
            session = self.sql._session
            session.execute(sa.text(f"CREATE TEMP TABLE {stored} ({columns}){_ON_COMMIT[self.sql.sqlite]}"))
            session.execute(sa.text(f"INSERT INTO {stored} {cte.split(' AS (', 1)[1][:-1]}"))
            if not self.sql.sqlite:
                session.execute(sa.text(f"ANALYZE {stored}"))
            self.sql.stored_calendars[cte] = stored
        return "", stored, width

    def _build_days(self) -> tuple[str, int]:
        lo, hi = self.sql.span()
        first, last = int(lo.timestamp() // 86400), int(hi.timestamp() // 86400)
        rows: list[tuple] = []
        for cal, key in self.key.items():
            rows.extend((key, d, cum, ranges) for d, cum, ranges in cal.utc_days(first, last))
        width = max([len(r[3]) for r in rows] + [1])
        # keyed by one integer, cal * 10^6 + day: SQLite then indexes the materialized list for
        # the join (with two equalities it indexed the calendar alone and scanned its days)
        # PostgreSQL types the list's columns by its first row: double precision there, not numeric
        real = (lambda x: f"CAST({x!r} AS DOUBLE PRECISION)") if not self.sql.sqlite else repr
        values = ", ".join(
            f"({key * _DAY_KEY + d}, {(real if i == 0 else repr)(cum)}, "
            + ", ".join(
                f"{(real if i == 0 else repr)(a)}, {(real if i == 0 else repr)(b)}"
                for a, b in ranges + ((0.0, 0.0),) * (width - len(ranges))
            )
            + ")"
            for i, (key, d, cum, ranges) in enumerate(rows)
        )
        columns = ", ".join(f"s{i}, e{i}" for i in range(width))
        return (f"{self.name}(k, cum, {columns}) AS (VALUES {values})", width)

    def _total(self, alias: str, col: str, width: int, *, epoch: bool = True) -> str:
        """The running business total of time ``col`` from its day's row ``alias`` (``epoch``:
        False when ``col`` is already seconds since 1970)."""
        t = self.sql.epoch(col) if epoch else col
        parts = [
            f"CASE WHEN {t} > {alias}.s{i} THEN {self.sql.least(t, f'{alias}.e{i}')} - {alias}.s{i} ELSE 0 END"
            for i in range(width)
        ]
        return f"({alias}.cum + {' + '.join(parts)})"

    def values(self, visits: str, *, less: str | None = None, keep: Iterable[str] = ()) -> str:
        """``SELECT g, x`` over ``visits`` (a query of columns g, node, a, b): x = business
        seconds from a to b in the node's calendar (NULL, so left out, for a time outside the
        report's span: 400 days past the last order), minus ``visits``' column ``less`` if given
        (the business seconds a hold stopped the clock: ``task.paused_seconds``); ``keep``:
        more columns of ``visits`` passed through."""
        minus = f" - COALESCE(v.{less}, 0)" if less else ""
        wall = self.sql.seconds("v.a", "v.b")
        kept = "".join(f", v.{c} AS {c}" for c in keep)
        if not self.key:
            return f"SELECT v.g AS g{kept}, {wall}{minus} AS x FROM ({visits}) v"
        with_, days, width = self._relation()
        cal = (
            "CASE v.node " + " ".join(f"WHEN '{n}' THEN {k}" for n, k in sorted(self.node_key.items())) + " ELSE 0 END"
        )
        business = f"{self._total('cb', 'v.b', width)} - {self._total('ca', 'v.a', width)}"
        return (
            f"{with_}SELECT v.g AS g{kept}, CASE WHEN {cal} = 0 THEN {wall} ELSE {business} END{minus} AS x "
            f"FROM ({visits}) v LEFT JOIN {days} ca ON ca.k = {cal} * {_DAY_KEY} + {self.sql.epoch_day('v.a')} "
            f"LEFT JOIN {days} cb ON cb.k = {cal} * {_DAY_KEY} + {self.sql.epoch_day('v.b')}"
        )


# --- an order's history ---------------------------------------------------------------------

#: The tables an order's facts are computed from, each with the order's id in ``order_id``.
HISTORY = ("orders", "task", "event", "order_line", "pick_line", "shipment", "shipment_line", "return_line", "delivery")
_COPY = "fact_h_"  # an incremental refresh's copy of a history table: fact_h_task, ...


@dataclass(frozen=True)
class History:
    """Where the facts' statements read orders' history: the store's tables (a rebuild, the
    reports' generic paths), or (``copied``) the changed orders' rows of each table copied once
    into a temporary table (``copy_history``) that every fact's statement of an incremental
    refresh reads instead of looking each changed order up in each table again. One definition
    per fact either way: only the relation names differ. ``order_fact`` maps too: the changed
    orders' rows as just written (visit_fact and group_fact copy from them)."""

    copied: bool = False
    sqlite: bool = True

    def __call__(self, table: str) -> str:
        if not self.copied:
            return table
        return f"temp.{_COPY}{table}" if self.sqlite else f"{_COPY}{table}"


STORE = History()


def copy_history(s: Session, sql: _Sql, dirty: str) -> History:
    """Copy the rows of the orders in ``dirty`` of every ``HISTORY`` table into temporary tables
    (read by order, once each) and return the ``History`` reading them."""
    h = History(copied=True, sqlite=sql.sqlite)
    drop_history(s, h)
    for table in HISTORY:
        _copy(s, sql, table, dirty)
    return h


def _copy(s: Session, sql: _Sql, table: str, dirty: str) -> None:
    s.execute(sa.text(f"CREATE TEMP TABLE {_COPY}{table}{_ON_COMMIT[sql.sqlite]} AS {_copy_sql(sql, table, dirty)}"))
    if not sql.sqlite:  # the planner's guess for a fresh temp table is blind: count it
        s.execute(sa.text(f"ANALYZE {_COPY}{table} (order_id)"))  # what the statements join and group by


_ON_COMMIT = {True: "", False: " ON COMMIT DROP"}


def _copy_sql(sql: _Sql, table: str, dirty: str) -> str:
    return f"SELECT * FROM {'main.' if sql.sqlite else ''}{table} WHERE order_id IN (SELECT order_id FROM {dirty})"


def drop_history(s: Session, h: History) -> None:
    for table in (*HISTORY, "order_fact"):
        s.execute(sa.text(f"DROP TABLE IF EXISTS {h(table)}"))


# --- cuts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cut:
    """How a dimension groups orders.

    Single-valued dimensions are a column of ``order_fact`` (``column``; neither a column nor a
    mapping: not cut); product, category and node can put one order in several groups, so they
    are a mapping subquery of (order_id, g) rows. Workflow is a column of the facts whose
    ``mapping`` reads it off the order itself (the generic path the copy is tested against).
    ``line`` cuts line-level facts by the line's own SKU or category; those cuts read
    ``group_fact`` when the facts are current.
    """

    column: str | None = None
    mapping: str | None = None
    line: str | None = None

    def group(self) -> tuple[str, str]:
        """(g expression, GROUP BY clause) over ``order_fact f`` for a single-valued cut."""
        if self.column is None:
            return f"'{ALL}'", ""
        return f"f.{self.column}", f" GROUP BY f.{self.column}"


#: line cut -> group_fact's cut name
LINE_CUTS = {"sku": "product", "category": "category"}


def _line_group(line: str, sku: str) -> tuple[str, str]:
    """(g, join): the group of a line whose SKU is ``sku`` in a line cut (its SKU, or its
    product's category)."""
    if line == "sku":
        return sku, ""
    return "lp.category", f" LEFT JOIN product lp ON lp.sku = {sku}"


def _line_members_sql(line: str, h: History = STORE) -> str:
    """Per order, the groups of its lines in a line cut: (order_id, g), the cut's mapping."""
    g, join = _line_group(line, "l.sku")
    return f"SELECT l.order_id AS order_id, {g} AS g FROM {h('order_line')} l{join} GROUP BY l.order_id, {g}"


def _line_units_sql(line: str, h: History = STORE) -> str:
    """Per order and group of its lines: (order_id, g, shipped, returned): units shipped, and
    returned, of the lines that shipped anything (the return rate's units, SPEC 9.5)."""
    g, join = _line_group(line, "l.sku")
    return (
        f"SELECT l.order_id AS order_id, {g} AS g, SUM(CASE WHEN l.shipped > 0 THEN l.shipped ELSE 0 END) AS shipped, "
        "SUM(CASE WHEN l.shipped > 0 THEN COALESCE(rl.units, 0) ELSE 0 END) AS returned "
        f"FROM {h('order_line')} l{join} LEFT JOIN (SELECT order_id, line_no, SUM(qty) AS units FROM "
        f"{h('return_line')} GROUP BY order_id, line_no) rl ON rl.order_id = l.order_id AND rl.line_no = l.line_no "
        f"GROUP BY l.order_id, {g}"
    )


def _picks_sql(h: History = STORE) -> str:
    """Every pick an import reported, (order_id, line_no, sku, ok): the pick lines (errors, and the
    right picks of no shipment) and the shipment lines reported picked right (0014)."""
    return (
        "(SELECT p.order_id, p.line_no, p.sku, CASE WHEN p.error IS NULL THEN 1 ELSE 0 END AS ok FROM "
        f"{h('pick_line')} p UNION ALL SELECT s.order_id, s.line_no, s.sku, 1 FROM (SELECT order_id, line_no, "
        f"sku FROM {h('shipment_line')} WHERE picked_right = 1) s)"
    )


def _line_picks_sql(line: str, h: History = STORE) -> str:
    """Per order and group of its picks: (order_id, g, picked, picked_right), a pick grouped by its
    order line's SKU (or its own, when it names no line of the order)."""
    g, join = _line_group(line, "COALESCE(ol.sku, pl.sku)")
    return (
        f"SELECT pl.order_id AS order_id, {g} AS g, COUNT(*) AS picked, SUM(pl.ok) AS picked_right "
        f"FROM {_picks_sql(h)} pl "
        f"LEFT JOIN {h('order_line')} ol ON ol.order_id = pl.order_id AND ol.line_no = pl.line_no{join} GROUP BY pl.order_id, {g}"
    )


def _cut(by: str | None) -> _Cut:
    if by in FACT_COLUMNS:
        if by == "workflow":  # a pilot against the rest: the workflow the order was routed to
            return _Cut(column="workflow", mapping="SELECT order_id, workflow AS g FROM orders")
        return _Cut(column=FACT_COLUMNS[by])
    if by in ("product", "category"):
        line = "sku" if by == "product" else "category"
        return _Cut(mapping=_line_members_sql(line), line=line)
    if by == "node":
        return _Cut(mapping="SELECT order_id, node AS g FROM task WHERE status <> 'skipped' GROUP BY order_id, node")
    raise ValueError(f"unknown dimension {by!r}: use one of {', '.join(DIMENSIONS)}")


# --- the facts ------------------------------------------------------------------------------

#: Bump when the facts' definitions change: the next refresh rebuilds every row.
FACTS_VERSION = 9  # 2: breaches by the visit's own times (SPEC 9.1); 3: visit_fact and node_fact.owner; 4: partial shipments, fill rate (9.2); 5: returns, misses (9.5); 6: group_fact, order_fact.workflow; 7: work_fact; 8: node_fact.late, visit_day; 9: visit_fact's replay columns (elapsed business time)
#: Single-valued cuts: dimension -> its order_fact column (None: the whole selection).
FACT_COLUMNS: dict[str | None, str | None] = {
    None: None,
    "region": "region",
    "channel": "channel",
    "team": "sales_rep",
    "customer": "customer",
    "week": "week",
    "workflow": "workflow",
}
_COUNTERS = ORDER_COUNTERS
_TIMES = ("conf", "alloc", "cycle")
_SUMS = ", ".join(f"SUM(f.{c}) AS {c}" for c in _COUNTERS)  # per group, over order_fact f


def _fill_due(a: str, key: str = "") -> str:
    """The orders fill rate counts (SPEC 9.2), facts row ``a``: shipped in full, or past their
    promised date at ``:today`` (``key``: the prefix of the columns it reads, ``key_`` in visit_day)."""
    return f"{a}.{key}units > 0 AND ({a}.{key}shipped = 1 OR {a}.{key}due < :today)"


def _fill_sums(a: str, n: str, good: str, key: str = "") -> str:
    """Fill rate's two sums over facts rows ``a``, as ``n`` (units due) and ``good`` (on time)."""
    due = _fill_due(a, key)
    return f"SUM(CASE WHEN {due} THEN {a}.units END) AS {n}, SUM(CASE WHEN {due} THEN {a}.units_on_time END) AS {good}"


_FACT_INSERT = (
    "order_id, created_at, customer, region, channel, sales_rep, week, workflow, conf, alloc, cycle, "
    + ", ".join(_COUNTERS)
    + ", due"
)
_DIRTY = "fact_dirty"


class FactsNotReady(FfctlError, RuntimeError):
    """``kpi_report`` was called before ``refresh_facts`` built the facts for this config (exit 1)."""


def fingerprint(cfg: Config) -> str:
    """What the facts depend on besides the data: a change rebuilds them all."""
    import json

    from ffctl.core import flow

    nodes = sorted(allocation_nodes(cfg))
    return json.dumps(
        {"v": FACTS_VERSION, "tz": cfg.timezone, "allocate": nodes, "flow": flow.fingerprint(cfg)}, sort_keys=True
    )


def refresh_facts(
    store: Store, cfg: Config, *, cuts: Iterable[str | None] = (None,), now: datetime | None = None
) -> dict:
    """Bring ``order_fact``/``node_fact`` up to date with the store, and make sure the indexes
    that reports cut by each of ``cuts`` (None: not cut) read exist. Returns ``{"mode":
    "none"|"incremental"|"full"|"replica", "orders": n}`` (a PostgreSQL standby is read-only:
    it reports from the facts its primary's refreshes replicated).

    Every change to an order writes an audit event naming it (core/audit.py), so the orders to
    rewrite are those named by events after the last refresh's event id, plus the orders of
    customers whose region changed and those with a line of a product whose category changed
    (``_MASTERS``); the config fingerprint changing (time zone, allocation
    nodes) or a backlog larger than the facts rebuilds everything. Concurrent refreshes queue
    on the ``fact_state`` row. PostgreSQL hands out event ids before commit, so the high-water
    mark is one every event up to which is committed (``_committed_event_mark``: it waits for
    the transactions writing when it was read). On SQLite writers are serial and the mark is
    read in the refresh's own write transaction. A read-only store reports from the facts as
    last refreshed (mode ``read-only``).
    """
    now = now or datetime.now(timezone.utc)
    fp = fingerprint(cfg)
    cuts = list(cuts)
    if _up_to_date(store, fp, cuts):  # the usual case: no write transaction, no lock
        return {"mode": "none", "orders": 0}
    from ffctl.core.store import ReadOnlyStore

    try:
        return _refresh(store, cfg, fp, cuts, now)
    except ReadOnlyStore:  # a read-only file or database: report from the facts as they were last refreshed
        with store.session() as s:
            state = s.execute(
                sa.text("SELECT event_id, fingerprint, refreshed_at FROM fact_state WHERE id = 1").columns(
                    refreshed_at=UTCDateTime
                )
            ).one_or_none()
        if state is None or state.event_id is None or state.fingerprint != fp:
            raise FactsNotReady(
                _("the store is read-only and its report facts were never built for this config"),
                hint=_(
                    "Run `ffctl report kpi` once where the store takes writes (its primary, or a writable "
                    "copy of the file); reports here then read what it built."
                ),
            ) from None
        return {"mode": "read-only", "orders": 0, "refreshed_at": state.refreshed_at}


def _committed_event_mark(s: Session) -> int:
    """PostgreSQL: an event id at or below which every event is committed (or rolled back).

    Ids are handed out before commit, so the largest visible id is read together with the
    transactions writing to the audit trail at that instant (an INSERT locks the table ROW
    EXCLUSIVE before it draws its id, and keeps the lock to the end of its transaction), and the
    mark is ready once those have ended: any invisible id below it belongs to one of them.
    Transactions of other tables and other databases on the server are not waited for. No lock
    is taken (LOCK TABLE ... SHARE needs UPDATE rights on the audit trail, which ffctl's role
    does not have, and it made every writer wait for the report).
    """
    writers = (
        "SELECT DISTINCT l.virtualtransaction FROM pg_locks l WHERE l.locktype = 'relation' "
        "AND l.relation = CAST('event' AS regclass) AND l.mode = 'RowExclusiveLock' "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.pid IS DISTINCT FROM pg_backend_pid()"
    )
    top, running = s.execute(sa.text(f"SELECT COALESCE((SELECT MAX(id) FROM event), 0), ARRAY({writers})")).one()
    delay = 0.005
    while running:
        time.sleep(delay)
        delay = min(2 * delay, 0.2)
        running = s.execute(
            sa.text(
                f"SELECT ARRAY(SELECT w.virtualtransaction FROM ({writers}) w "
                "WHERE w.virtualtransaction = ANY(CAST(:running AS text[])))"
            ),
            {"running": list(running)},
        ).scalar_one()
    return int(top)


def _refresh(store: Store, cfg: Config, fp: str, cuts: list[str | None], now: datetime) -> dict:
    top = None
    if is_postgresql(store):
        with store.session(write=True) as s:
            if s.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one():
                return {"mode": "replica", "orders": 0}  # read-only: the primary's refreshes replicate here
            top = _committed_event_mark(s)
    with store.session(write=True) as s:
        lock = " FOR UPDATE" if is_postgresql(store) else ""
        state: Sequence[Any] | None = s.execute(
            sa.text(f"SELECT event_id, fingerprint FROM fact_state WHERE id = 1{lock}")
        ).one_or_none()
        if state is None:  # a store whose row was removed by hand: start again
            s.execute(sa.text("INSERT INTO fact_state (id) VALUES (1)"))
            state = (None, None)
        if top is None:
            top = s.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM event")).scalar_one()
        seen, built_with = state
        sql = _Sql(s, cfg.timezone, now)
        sql.tune()
        if seen is None or built_with != fp:
            mode, orders = "full", _rebuild(s, sql, cfg)
        else:
            mode, orders = "none", 0
            for day in _unfilled_days(s):  # upgraded to schema 0018: their sums from the facts as they are
                s.execute(sa.text(_DAY_TABLES[day][1](sql)), {"tz": cfg.timezone})
            changed = _changed_masters(s)
            if top > seen or changed:
                facts = s.execute(sa.text("SELECT COUNT(*) FROM order_fact")).scalar_one()
                if top - seen > max(facts, 10_000):  # a backlog bigger than the facts: rebuild
                    mode, orders = "full", _rebuild(s, sql, cfg)
                else:
                    mode, orders = "incremental", _update(s, sql, cfg, seen, top, changed)
        if mode != "none" or seen != top:
            s.execute(
                sa.text(
                    "UPDATE fact_state SET event_id = :top, fingerprint = :fp, refreshed_at = :at WHERE id = 1"
                ).bindparams(sa.bindparam("at", type_=UTCDateTime)),
                {"top": max(top, seen or 0), "fp": fp, "at": now},
            )
        if _can_index(s):
            for by in cuts:
                if by in FACT_COLUMNS:
                    _ensure_indexes(s, FACT_COLUMNS[by])
    if mode == "full" and is_postgresql(store):
        # the reports' index-only scans read the heap for every row until the visibility map is set
        # (each p50/p90 step a heap page); a role that does not own the tables gets a warning, not an error
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(
                "VACUUM (ANALYZE) order_fact, node_fact, visit_fact, group_fact, visit_day, group_day, order_day"
            )
        from ffctl.core import flow

        flow.vacuum(store)
        from ffctl.core import workload

        workload.vacuum(store)
    return {"mode": mode, "orders": orders}


def _lazy_indexes(s: Session) -> dict[str, str]:
    """Name -> DDL of order_fact's per-cut report indexes (``_ensure_indexes``; the models do not declare them)."""
    if is_postgresql(s):
        sql = (
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND "
            "indexname LIKE 'ix\\_order\\_fact\\_by\\_%'"
        )
    else:
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix\\_order\\_fact\\_by\\_%' ESCAPE '\\'"
    return {r[0]: r[1] for r in s.execute(sa.text(sql))}


def _can_index(s: Session) -> bool:
    """Whether this role may build indexes on the facts: on PostgreSQL only their owner (or a
    member of its role) can; a role that cannot reports the same numbers by the generic paths."""
    if not is_postgresql(s):
        return True
    return bool(
        s.execute(
            sa.text("SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = 'order_fact'::regclass")
        ).scalar()
    )


def _have_indexes(s: Session, columns: Iterable[str | None]) -> bool:
    """Whether the report indexes of every cut column exist (see ``_ensure_indexes``)."""
    wanted = [_index_name(column, t) for column in columns for t in _TIMES]
    if not wanted:
        return True
    if is_postgresql(s):
        sql = f"SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname IN {_in(wanted)}"
    else:
        sql = f"SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN {_in(wanted)}"
    return s.execute(sa.text(sql)).scalar_one() == len(wanted)


def _up_to_date(store: Store, fp: str, cuts: list[str | None]) -> bool:
    """Whether a read-only look finds nothing to refresh. Safe on PostgreSQL too: every event id
    at or below the stored mark was committed when it was stored, so any event not visible yet
    has a higher id and the next refresh takes it."""
    with store.session() as s:
        state = s.execute(sa.text("SELECT event_id, fingerprint FROM fact_state WHERE id = 1")).one_or_none()
        if state is None or state.event_id is None or state.fingerprint != fp:
            return False
        if s.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM event")).scalar_one() > state.event_id:
            return False
        if _changed_masters(s):
            return False
        if _unfilled_days(s):
            return False
        if not _have_indexes(s, [FACT_COLUMNS[by] for by in cuts if by in FACT_COLUMNS]) and _can_index(s):
            return False
    return True


#: Master data the facts copy, by snapshot: (table, key, column, snapshot table, the orders a changed
#: key rewrites). A customer's region cuts its orders; a product's category its orders' lines.
_MASTERS = {
    "customer": (
        "customer",
        "customer",
        "region",
        "fact_customer",
        "SELECT order_id FROM orders WHERE customer IN ({names})",
    ),
    "product": (
        "product",
        "sku",
        "category",
        "fact_product",
        "SELECT DISTINCT order_id FROM order_line WHERE sku IN ({names})",
    ),
}


def _changed_masters(s: Session) -> dict[str, list[str]]:
    """Per master table, the keys whose copied column differs from the one the facts were written
    with (or are new); only tables with changes."""
    differs = "IS DISTINCT FROM" if is_postgresql(s) else "IS NOT"
    out = {}
    for name, (table, key, column, snapshot, _orders) in _MASTERS.items():
        keys = list(
            s.execute(
                sa.text(
                    f"SELECT m.{key} FROM {table} m LEFT JOIN {snapshot} fm ON fm.{key} = m.{key} "
                    f"WHERE fm.{key} IS NULL OR fm.{column} {differs} m.{column}"
                )
            ).scalars()
        )
        if keys:
            out[name] = keys
    return out


def _snapshot_masters(s: Session, changed: dict[str, list[str]] | None) -> None:
    """Record the master data the facts were just written with (None: all of it)."""
    for name, (table, key, column, snapshot, _orders) in _MASTERS.items():
        copy = f"INSERT INTO {snapshot} ({key}, {column}) SELECT {key}, {column} FROM {table}"
        if changed is None:
            s.execute(sa.text(f"DELETE FROM {snapshot}"))
            s.execute(sa.text(copy))
            continue
        for names, params in _in_lists(changed.get(name, [])):
            s.execute(sa.text(f"DELETE FROM {snapshot} WHERE {key} IN ({names})"), params)
            s.execute(sa.text(f"{copy} WHERE {key} IN ({names})"), params)


def _in_lists(values: list[str], size: int = 500) -> Iterable[tuple[str, dict]]:
    """(":c0, :c1, ...", params) for an IN list, in parts a statement's bind limit allows."""
    for start in range(0, len(values), size):
        part = values[start : start + size]
        yield ", ".join(f":c{i}" for i in range(len(part))), {f"c{i}": v for i, v in enumerate(part)}


def _rebuild(s: Session, sql: _Sql, cfg: Config) -> int:
    """Every order's facts from scratch. The per-cut report indexes are dropped first and built
    again after, when this role may: a sorted build beats a million inserts into each."""
    lazy = _lazy_indexes(s) if _can_index(s) else {}
    for name in lazy:
        s.execute(sa.text(f"DROP INDEX {name}"))
    from ffctl.core.models import GroupFact, VisitFact

    visit_indexes = empty_for_rebuild(
        s,
        sql,
        ["order_fact", "node_fact", "visit_fact", "group_fact", "visit_day", "group_day", "order_day"],
        [
            ix
            for ix in (*VisitFact.__table__.indexes, *GroupFact.__table__.indexes)
            if ix.name not in ("ix_visit_fact_order", "ix_group_fact_order")
        ],
    )
    s.execute(sa.text(_facts_sql(sql, cfg, STORE)), {"tz": cfg.timezone})
    for statement in (
        *_node_facts_sql(sql, cfg, STORE),
        *_visit_facts_sql(sql, cfg, STORE),
        *_group_facts_sql(STORE),
        _visit_day_sql(sql),
        _group_day_sql(sql),
        _order_day_sql(sql),
    ):
        s.execute(sa.text(statement), {"tz": cfg.timezone})
    s.execute(sa.text("DELETE FROM miss_fact"))
    s.execute(sa.text(misses.refresh_sql(sql, cfg, STORE)), {"tz": cfg.timezone})
    _refresh_flow(s, sql, cfg, dirty=None, h=STORE)
    _refresh_work(s, sql, cfg, dirty=None, h=STORE)
    _snapshot_masters(s, None)
    for ddl in lazy.values():
        s.execute(sa.text(ddl))
    for ix in visit_indexes:
        ix.create(s.connection())
    if not sql.sqlite:
        s.execute(sa.text("ANALYZE order_fact"))
        s.execute(sa.text("ANALYZE node_fact"))
        s.execute(sa.text("ANALYZE visit_fact"))
        s.execute(sa.text("ANALYZE group_fact"))
    return s.execute(sa.text("SELECT COUNT(*) FROM order_fact")).scalar_one()


def _update(s: Session, sql: _Sql, cfg: Config, seen: int, top: int, changed: dict[str, list[str]]) -> int:
    """Rewrite the facts of the orders named by events in (seen, top] and of the ``changed``
    customers and products (``_changed_masters``)."""
    if sql.sqlite:
        s.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {_DIRTY} (order_id TEXT PRIMARY KEY)"))
        s.execute(sa.text(f"DELETE FROM temp.{_DIRTY}"))
        ignore, conflict = "INSERT OR IGNORE", ""
    else:
        s.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {_DIRTY} (order_id TEXT PRIMARY KEY) ON COMMIT DROP"))
        ignore, conflict = "INSERT", " ON CONFLICT DO NOTHING"
    s.execute(
        sa.text(
            f"{ignore} INTO {_DIRTY} (order_id) SELECT DISTINCT order_id FROM event "
            f"WHERE id > :seen AND id <= :top AND order_id IS NOT NULL{conflict}"
        ),
        {"seen": seen, "top": top},
    )
    for name, keys in changed.items():
        for names, params in _in_lists(keys):
            orders = _MASTERS[name][4].format(names=names)
            s.execute(sa.text(f"{ignore} INTO {_DIRTY} (order_id) {orders}{conflict}"), params)
    if not sql.sqlite:  # the planner's guess for a fresh temp table is blind: count it
        s.execute(sa.text(f"ANALYZE {_DIRTY}"))
        # the changed orders' rows by index (the store is read through the cache): at the default
        # cost the planner hashed them against a scan of every task
        s.execute(sa.text("SET LOCAL random_page_cost = 1.1"))
        # the order facts' INSERT joins nine relations: past the default limit of 8 the planner keeps
        # the written order and joined every order before the changed ones (EXPLAIN ANALYZE)
        s.execute(sa.text("SET LOCAL join_collapse_limit = 16"))
        s.execute(sa.text("SET LOCAL from_collapse_limit = 16"))
    h = copy_history(s, sql, _DIRTY)
    sql.stored_calendars = {}
    # in this order: visit_fact and group_fact copy from the order_fact rows written before them
    tz = {"tz": cfg.timezone}

    def days(table: str, day_sql: Callable[..., str]) -> Callable[[str, str], None]:
        def follow(gone: str, new: str) -> None:  # a day table's sums follow the rows written
            s.execute(sa.text(day_sql(sql, rows=gone, sign=-1)), tz)
            s.execute(sa.text(day_sql(sql, rows=new)), tz)
            s.execute(sa.text(f"DELETE FROM {table} WHERE {'visits' if table == 'visit_day' else 'n_rows'} = 0"))

        return follow

    write_changes(s, sql, "order_fact", [_facts_sql(sql, cfg, h)], tz, on_change=days("order_day", _order_day_sql))
    _copy(s, sql, "order_fact", _DIRTY)
    write_changes(s, sql, "node_fact", _node_facts_sql(sql, cfg, h), tz)
    write_changes(s, sql, "visit_fact", _visit_facts_sql(sql, cfg, h), tz, on_change=days("visit_day", _visit_day_sql))
    write_changes(s, sql, "group_fact", _group_facts_sql(h), tz, on_change=days("group_day", _group_day_sql))
    write_changes(s, sql, "miss_fact", [misses.refresh_sql(sql, cfg, h)], tz)
    _refresh_flow(s, sql, cfg, dirty=_DIRTY, h=h)
    _refresh_work(s, sql, cfg, dirty=_DIRTY, h=h)
    drop_history(s, h)
    for stored in sql.stored_calendars.values():
        s.execute(sa.text(f"DROP TABLE {stored}"))
    _snapshot_masters(s, changed)
    n = s.execute(sa.text(f"SELECT COUNT(*) FROM {_DIRTY}")).scalar_one()
    s.execute(sa.text(f"DROP TABLE {_DIRTY}" if not sql.sqlite else f"DELETE FROM temp.{_DIRTY}"))
    return n


def empty_for_rebuild(s: Session, sql: _Sql, tables: Sequence[str], indexes: Sequence[sa.Index]) -> list[sa.Index]:
    """Empty fact ``tables`` for a rebuild and drop ``indexes``: a sorted build of each index after
    the inserts beats millions of inserts into it (both backends). Only the tables' owner may drop
    their indexes, so a least-privilege role rebuilds through them. Returns the indexes dropped,
    for the caller to build again after its inserts."""
    if sql.sqlite:
        for table in tables:
            s.execute(sa.text(f"DELETE FROM {table}"))
    else:
        s.execute(sa.text(f"TRUNCATE {', '.join(tables)}"))
        owner = s.execute(
            sa.text(
                "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c "
                f"WHERE c.oid = '{tables[0]}'::regclass"
            )
        ).scalar_one()
        if not owner:
            indexes = []
    for ix in indexes:
        ix.drop(s.connection())
    return list(indexes)


_INSERT_INTO = re.compile(r"INSERT INTO (\w+) \(([^)]*)\) ")
_STAGE = "fact_stage"  # write_changes' temporary copy of one fact table


def write_changes(
    s: Session,
    sql: _Sql,
    table: str,
    statements: Sequence[str],
    params: Mapping[str, Any] | None = None,
    *,
    on_change: Callable[[str, str], None] | None = None,
) -> None:
    """Bring the rows of fact ``table`` of the orders in fact_dirty to what ``statements`` (its
    scoped ``INSERT INTO table (columns) SELECT ...``, the rebuild's own definition) compute,
    writing only the rows that are gone, new or differ in any column: they are computed into a
    temporary table first, then compared by order with the table's. An audit event that changes
    no fact writes nothing, and a changed order rewrites only its changed rows (each row written
    costs an entry in every index of the table). Every column of the table must be written by
    the statements (a surrogate ``id`` key excepted), so a column added to a fact is compared.
    ``on_change(gone, new)``: called with the names of temporary tables holding the rows deleted
    and the rows inserted (sums kept over the table follow them: a no-op changes none)."""
    # other statements (a scratch table an INSERT reads) run as they are, in their place
    heads = {m.groups() for m in map(_INSERT_INTO.match, statements) if m and m.group(1) == table}
    if len(heads) != 1 or (head := heads.pop()) is None:
        raise ValueError(f"write_changes: each statement must be INSERT INTO {table} (the same columns) SELECT")
    columns = [c.strip() for c in head[1].split(",")]
    present = list(s.execute(sa.text(f"SELECT * FROM {table} WHERE 1 = 0")).keys())
    unwritten = [c for c in present if c not in columns and c != "id"]
    if unwritten:  # a column another statement fills would be compared without its value
        raise ValueError(f"write_changes: {table}'s columns {unwritten} are not written by its INSERT")
    stage = _STAGE if not sql.sqlite else f"temp.{_STAGE}"
    if sql.sqlite:
        s.execute(sa.text(f"DROP TABLE IF EXISTS {stage}"))
        s.execute(sa.text(f"CREATE TEMP TABLE {_STAGE} AS SELECT {', '.join(columns)} FROM main.{table} WHERE 1 = 0"))
    else:
        s.execute(sa.text(f"DROP TABLE IF EXISTS {stage}"))
        s.execute(
            sa.text(f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {', '.join(columns)} FROM {table} LIMIT 0")
        )
    for statement in statements:
        if statement.startswith(f"INSERT INTO {table} "):
            statement = f"INSERT INTO {stage} " + statement[len(f"INSERT INTO {table} ") :]
        s.execute(sa.text(statement), params or {})
    if sql.sqlite:  # the anti-join below looks each kept row's order up in the copy
        s.execute(sa.text(f"CREATE INDEX temp.{_STAGE}_order ON {_STAGE} (order_id)"))
    same = "IS" if sql.sqlite else "IS NOT DISTINCT FROM"
    equal = " AND ".join(["n.order_id = o.order_id", *(f"n.{c} {same} o.{c}" for c in columns if c != "order_id")])
    listed = ", ".join(columns)
    keep = _ON_COMMIT[sql.sqlite]
    # the orders' rows as they are, read once by order (with where each row is, to delete it by)
    place = "rowid" if sql.sqlite else "ctid"
    old, gone, new = (f"{_STAGE}_old", f"{_STAGE}_gone", f"{_STAGE}_new")
    s.execute(
        sa.text(
            f"CREATE TEMP TABLE {old}{keep} AS SELECT {place} AS fact_place, {listed} FROM "
            f"{'main.' if sql.sqlite else ''}{table} WHERE order_id IN (SELECT order_id FROM {_DIRTY})"
        )
    )
    s.execute(
        sa.text(
            f"CREATE TEMP TABLE {gone}{keep} AS SELECT o.* FROM {old} o WHERE NOT EXISTS "
            f"(SELECT 1 FROM {stage} n WHERE {equal})"
        )
    )
    s.execute(
        sa.text(f"CREATE TEMP TABLE {new}{keep} AS SELECT {listed} FROM {stage} EXCEPT SELECT {listed} FROM {old}")
    )
    if sql.sqlite:
        s.execute(sa.text(f"DELETE FROM main.{table} WHERE rowid IN (SELECT fact_place FROM {gone})"))
    else:  # a TID scan
        s.execute(sa.text(f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT fact_place FROM {gone}))"))
    s.execute(sa.text(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {new}"))
    if on_change is not None:
        on_change(gone, new)
    for temp in (stage, old, gone, new):
        s.execute(sa.text(f"DROP TABLE {temp}"))


def _refresh_flow(s: Session, sql: _Sql, cfg: Config, *, dirty: str | None, h: History) -> None:
    """``report flow``'s facts (flow_edge, flow_path), kept by core/flow.py (it imports this module)."""
    from ffctl.core import flow

    flow.refresh(s, sql, cfg, dirty=dirty, h=h)


def _refresh_work(s: Session, sql: _Sql, cfg: Config, *, dirty: str | None, h: History) -> None:
    """``report workload``'s facts (work_fact), kept by core/workload.py (it imports this module)."""
    from ffctl.core import workload

    workload.refresh(s, sql, cfg, dirty=dirty, h=h)


def _facts_sql(sql: _Sql, cfg: Config, h: History) -> str:
    """INSERT ... SELECT of one order_fact row per order of history ``h`` (every order, or the
    changed orders' copies)."""
    alloc_nodes = allocation_nodes(cfg)
    is_alloc = f"t.node IN {_in(alloc_nodes)}" if alloc_nodes else "1 = 0"
    per_order_tasks = (
        # an order's first completed visit is at its first node: no later node can be entered before it
        f"SELECT t.order_id, MIN(CASE WHEN t.outcome IN {_in(PASSED)} THEN t.completed_at END) AS first_done, "
        f"MIN(CASE WHEN t.outcome IN {_in(PASSED)} AND {is_alloc} THEN t.completed_at END) AS alloc_done, "
        f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} THEN 1 ELSE 0 END) AS decided, "
        f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} AND NOT {breached_sql('t', now=_STOPPED)} "
        f"THEN 1 ELSE 0 END) AS within FROM {h('task')} t GROUP BY t.order_id"
    )
    per_order_picks = (
        "SELECT pl.order_id, COUNT(*) AS picked, SUM(pl.ok) AS picked_right "
        f"FROM {_picks_sql(h)} pl GROUP BY pl.order_id"
    )
    per_order_units = (
        "SELECT l.order_id, SUM(l.qty - l.cancelled) AS units, SUM(l.cancelled) AS cancelled, SUM(l.shipped) AS shipped "
        f"FROM {h('order_line')} l GROUP BY l.order_id"
    )
    # units that left with their line's SKU on or before the promised date (shipments of one order)
    per_order_on_time = (
        f"SELECT sl.order_id, SUM(sl.qty) AS units FROM {h('shipment_line')} sl "
        f"JOIN {h('shipment')} sh ON sh.shipment_id = sl.shipment_id JOIN {h('orders')} so ON so.order_id = sl.order_id "
        f"JOIN {h('order_line')} ol ON ol.order_id = sl.order_id AND ol.line_no = sl.line_no AND ol.sku = sl.sku "
        f"WHERE so.promised_ship_date IS NOT NULL AND {sql.local_date('sh.shipped_at')} <= so.promised_ship_date"
        " GROUP BY sl.order_id"
    )
    per_order_returns = f"SELECT rl.order_id, SUM(rl.qty) AS units FROM {h('return_line')} rl GROUP BY rl.order_id"
    on_time = f"(o.promised_ship_date IS NOT NULL AND {sql.local_date('o.shipped_at')} <= o.promised_ship_date)"
    delivered = "(o.delivered_at IS NOT NULL OR d.order_id IS NOT NULL)"
    # in full with the right SKUs: no pick error and no unit cancelled (shipped_at is set once every
    # unit is shipped or cancelled); an order without pick lines was picked as ordered
    in_full = (
        "(pa.picked IS NULL OR pa.picked_right = pa.picked) AND COALESCE(ua.cancelled, 0) = 0 "
        "AND ra.units IS NULL"
    )  # ... and nothing came back (SPEC 9.5)
    units = "CASE WHEN o.status = 'cancelled' THEN 0 ELSE COALESCE(ua.units, 0) END"
    return (
        f"INSERT INTO order_fact ({_FACT_INSERT}) SELECT o.order_id, o.created_at, o.customer, "
        f"COALESCE(o.region, c.region), o.channel, o.sales_rep, {sql.local_week('o.created_at')}, o.workflow, "
        f"{sql.seconds('o.created_at', 'ta.first_done')} / 60.0, "
        f"{sql.seconds('ta.first_done', 'ta.alloc_done')} / 60.0, "
        f"{sql.seconds('o.created_at', 'o.shipped_at')} / 3600.0, "
        "CASE WHEN o.shipped_at IS NOT NULL THEN 1 ELSE 0 END, "
        f"CASE WHEN o.shipped_at IS NOT NULL AND {on_time} THEN 1 ELSE 0 END, "
        f"CASE WHEN {delivered} THEN 1 ELSE 0 END, "
        f"CASE WHEN {delivered} AND o.shipped_at IS NOT NULL AND {on_time} "
        f"AND COALESCE(o.delivery_issue, d.issue) IS NULL AND {in_full} THEN 1 ELSE 0 END, "
        "COALESCE(pa.picked, 0), COALESCE(pa.picked_right, 0), COALESCE(ta.decided, 0), COALESCE(ta.within, 0), "
        f"{units}, CASE WHEN {units} < COALESCE(oa.units, 0) THEN {units} ELSE COALESCE(oa.units, 0) END, "
        "COALESCE(ua.shipped, 0), COALESCE(ra.units, 0), o.promised_ship_date "
        f"FROM {h('orders')} o LEFT JOIN customer c ON c.customer = o.customer "
        f"LEFT JOIN ({per_order_tasks}) ta ON ta.order_id = o.order_id "
        f"LEFT JOIN ({per_order_picks}) pa ON pa.order_id = o.order_id "
        f"LEFT JOIN ({per_order_units}) ua ON ua.order_id = o.order_id "
        f"LEFT JOIN ({per_order_on_time}) oa ON oa.order_id = o.order_id "
        f"LEFT JOIN ({per_order_returns}) ra ON ra.order_id = o.order_id "
        f"LEFT JOIN {h('delivery')} d ON d.order_id = o.order_id"
    )


#: ``breached_sql``'s clock for visits whose clock stopped (decided ones): it plays no part.
_STOPPED = "NULL"
#: ... and a clock past every deadline: "breached, or running and so still able to breach".
_EVENTUALLY = "'9999-12-31 00:00:00'"


_NODE_VISITS = "node_fact_visits"  # the scoped refresh's breachable visits, staged on SQLite


def _node_facts_sql(sql: _Sql, cfg: Config, h: History) -> list[str]:
    """INSERT ... SELECT of the visits that can count for the bottleneck (see ``NodeFact``):
    breached, or still running (a hold or a release writes an event, so a held visit's row is
    rewritten when its clock stops and starts again). A stopped visit's business lateness is
    counted here by ``_BusinessTime``, the one clock ``lateness`` counts running visits with."""
    visits = (
        f"SELECT t.id AS task_id, t.order_id AS order_id, t.node AS g, t.node AS node, o.created_at AS created_at, "
        f"CASE WHEN {breached_sql('t', now=_STOPPED)} THEN 1 ELSE 0 END AS breached, t.deadline AS a, "
        f"{stopped_sql('t')} AS b, t.owner AS owner FROM {h('task')} t JOIN {h('orders')} o ON o.order_id = t.order_id "
        f"WHERE t.status <> 'skipped' AND {breached_sql('t', now=_EVENTUALLY)}"
    )
    out = []
    if h.copied and sql.sqlite:
        # written down first, as flow.refresh does: SQLite then indexes the calendar's days for the join
        out.append(f"CREATE TEMP TABLE {_NODE_VISITS} AS {visits}")
        visits = f"SELECT * FROM temp.{_NODE_VISITS}"
    late = _BusinessTime(sql, cfg).values(
        visits, keep=("task_id", "order_id", "created_at", "breached", "a", "b", "owner")
    )
    out.append(
        "INSERT INTO node_fact (node, task_id, order_id, created_at, breached, deadline, completed_at, owner, late) "
        + late
    )
    if h.copied and sql.sqlite:
        out.append(f"DROP TABLE temp.{_NODE_VISITS}")
    return out


#: the task columns visit_fact's INSERT reads through ``_BusinessTime.values``
_VISIT_TASK_COLUMNS = (
    "id",
    "order_id",
    "node",
    "workflow",
    "status",
    "outcome",
    "entered_at",
    "held_at",
    "completed_at",
    "deadline",
    "paused_seconds",
    "b",
    "rn",
)


def _visit_facts_sql(sql: _Sql, cfg: Config, h: History) -> list[str]:
    """INSERT ... SELECT of one visit_fact row per node visit of history ``h`` that was not
    skipped, after their order_fact rows are written (it copies from them).

    What each column counts is what the task-history paths count (``_Report``'s generic paths;
    tests/test_kpi_visits.py compares them): time in node over visits that were left and not
    cancelled, decided and within SLA by ``breached`` with the clock stopped, automatic actions;
    an order's escalation and reminder events of the node on its first visit's row."""
    events = (
        "SELECT e.order_id, e.node, SUM(CASE WHEN e.event = 'escalated' THEN 1 ELSE 0 END) AS escalations, "
        f"SUM(CASE WHEN e.event = 'reminded' THEN 1 ELSE 0 END) AS reminders FROM {h('event')} e "
        "WHERE e.event IN ('escalated', 'reminded') AND e.node IS NOT NULL GROUP BY e.order_id, e.node"
    )
    # the visit's rank among its order's visits of the node (an EXISTS for earlier visits became a
    # merge join over every task on PostgreSQL)
    ranked = rows = (
        f"SELECT t.*, t.node AS g, t.entered_at AS a, {stopped_sql('t')} AS b, "
        "ROW_NUMBER() OVER (PARTITION BY t.order_id, t.node ORDER BY t.id) AS rn "
        f"FROM {h('task')} t WHERE t.status <> 'skipped'"
    )
    staged = h.copied and sql.sqlite
    if staged:
        # written down first, as flow.refresh does: SQLite then indexes the calendar's days for the join
        ranked = f"SELECT * FROM temp.{_VISIT_ROWS}"
    # x: the elapsed business time (entered -> stopped, less holds) by the reports' one clock in SQL
    visits = _BusinessTime(sql, cfg).values(ranked, less="paused_seconds", keep=_VISIT_TASK_COLUMNS)

    def first(value: str, otherwise: str = "0") -> str:
        return f"CASE WHEN t.rn = 1 THEN {value} ELSE {otherwise} END"

    columns = (
        "task_id, order_id, node, created_at, seconds, decided, within, auto, first, escalations, reminders, "
        f"conf, alloc, {', '.join(VISIT_COUNTERS)}, due, entered_at, stopped_at, workflow, paused, breached, elapsed"
    )
    insert = (
        f"INSERT INTO visit_fact ({columns}) SELECT t.id, t.order_id, t.node, f.created_at, "
        f"CASE WHEN t.completed_at IS NOT NULL AND t.status <> 'cancelled' "
        f"THEN {sql.seconds('t.entered_at', 't.completed_at')} END, "
        f"CASE WHEN t.outcome IN {_in(DECIDED)} THEN 1 ELSE 0 END, "
        f"CASE WHEN t.outcome IN {_in(DECIDED)} AND NOT {breached_sql('t', now=_STOPPED)} THEN 1 ELSE 0 END, "
        f"CASE WHEN t.outcome IN {_in(AUTO_ACTIONS)} THEN 1 ELSE 0 END, {first('1')}, "
        f"{first('COALESCE(ev.escalations, 0)')}, {first('COALESCE(ev.reminders, 0)')}, "
        f"{first('f.conf', 'NULL')}, {first('f.alloc', 'NULL')}, {', '.join(first(f'f.{c}') for c in VISIT_COUNTERS)}, "
        f"{first('f.due', 'NULL')}, t.entered_at, t.b, t.workflow, COALESCE(t.paused_seconds, 0), "
        f"CASE WHEN {breached_sql('t', now=_STOPPED)} THEN 1 ELSE 0 END, t.x "
        f"FROM ({visits}) t JOIN {h('order_fact')} f ON f.order_id = t.order_id "
        f"LEFT JOIN ({events}) ev ON ev.order_id = t.order_id AND ev.node = t.node"
    )
    if staged:
        return [f"CREATE TEMP TABLE {_VISIT_ROWS} AS {rows}", insert, f"DROP TABLE temp.{_VISIT_ROWS}"]
    return [insert]


_VISIT_ROWS = "visit_fact_rows"


#: visit_day's sums: per visit_fact row, what visit_sums adds up
_DAY_SUMS = ("visits", "n_seconds", "n_conf", "n_alloc", *VISIT_SUMS)
_NO_DUE = "'9999-12-31'"  # visit_day's key for no promised date (a key column cannot be NULL)


def _day_sums_sql(
    sql: _Sql,
    day: str,
    facts: str,
    groups: Sequence[tuple[str, str]],
    sums: Sequence[str],
    *,
    rows: str | None = None,
    sign: int = 1,
) -> str:
    """INSERT ... SELECT of a day table's rows (visit_day, group_day, order_day) from ``facts``: per
    ``groups`` ((column, expression over the fact row ``v``)), the local day of the rows'
    created_at and what ``_fill_due`` reads of them (units > 0, shipped, due), the ``sums``
    (``n_rows``/``visits``: the rows; ``n_X``: the rows with an X; else SUM). All of them, or the
    fact rows in the table ``rows`` (those a refresh wrote or deleted) added (``sign`` 1) or
    subtracted (-1) into the existing ones."""
    keys = ", ".join(
        [e for _c, e in groups]
        + [
            sql.local_date("v.created_at"),
            "CASE WHEN v.units > 0 THEN 1 ELSE 0 END",
            "v.shipped",
            f"COALESCE(v.due, {_NO_DUE})",
        ]
    )

    def total(c: str) -> str:
        if c in ("visits", "n_rows"):
            return "COUNT(*)"
        return f"COUNT(v.{c[2:]})" if c.startswith("n_") else f"SUM(v.{c})"

    summed = ", ".join(f"{sign} * {total(c)}" for c in sums)
    key_columns = ", ".join([c for c, _e in groups] + ["day", "key_units", "key_shipped", "key_due"])
    columns = f"{key_columns}, {', '.join(sums)}"
    if rows is None:
        return f"INSERT INTO {day} ({columns}) SELECT {keys}, {summed} FROM {facts} v GROUP BY {keys}"
    add = ", ".join(f"{c} = {day}.{c} + excluded.{c}" for c in sums)
    # WHERE true: SQLite's parser needs it before an upsert's ON CONFLICT after a SELECT
    return (
        f"INSERT INTO {day} ({columns}) SELECT * FROM (SELECT {keys}, {summed} FROM {rows} v GROUP BY {keys}) d "
        f"WHERE true ON CONFLICT ({key_columns}) DO UPDATE SET {add}"
    )


def _visit_day_sql(sql: _Sql, *, rows: str | None = None, sign: int = 1) -> str:
    """visit_day's rows from visit_fact (``_day_sums_sql``): per node."""
    return _day_sums_sql(sql, "visit_day", "visit_fact", [("node", "v.node")], _DAY_SUMS, rows=rows, sign=sign)


#: group_day's sums: per group_fact row, what the line cuts' grouped pass adds up
_GROUP_DAY_SUMS = ("n_rows", "n_conf", "n_alloc", "n_cycle", *GROUP_SUMS)


def _group_day_sql(sql: _Sql, *, rows: str | None = None, sign: int = 1) -> str:
    """group_day's rows from group_fact (``_day_sums_sql``): per line cut and group ('' for none)."""
    groups = [("cut", "v.cut"), ("g", "COALESCE(v.g, '')")]
    return _day_sums_sql(sql, "group_day", "group_fact", groups, _GROUP_DAY_SUMS, rows=rows, sign=sign)


#: order_day's sums: per order_fact row, what the whole-store and week cuts add up
_ORDER_DAY_SUMS = ("n_rows", "n_conf", "n_alloc", "n_cycle", *ORDER_COUNTERS)


def _order_day_sql(sql: _Sql, *, rows: str | None = None, sign: int = 1) -> str:
    """order_day's rows from order_fact (``_day_sums_sql``): per local week and day."""
    return _day_sums_sql(sql, "order_day", "order_fact", [("week", "v.week")], _ORDER_DAY_SUMS, rows=rows, sign=sign)


#: day table -> (the fact table it sums, its rows from all of that table)
_DAY_TABLES: dict[str, tuple[str, Callable[[_Sql], str]]] = {
    "order_day": ("order_fact", _order_day_sql),
    "group_day": ("group_fact", _group_day_sql),
}


def _unfilled_days(s: Session) -> list[str]:
    """The day tables that do not hold their facts' sums: a store upgraded to schema 0018 has
    facts and empty day tables until its next refresh fills them (a read-only store reports
    without them)."""
    found = s.execute(
        sa.text(
            "SELECT "
            + ", ".join(
                f"CASE WHEN EXISTS (SELECT 1 FROM {day}) OR NOT EXISTS (SELECT 1 FROM {facts}) THEN 1 ELSE 0 END"
                for day, (facts, _sql) in _DAY_TABLES.items()
            )
        )
    ).one()
    return [day for day, ready in zip(_DAY_TABLES, found) if not ready]


#: group_fact's sums of the lines themselves (the line cuts' pick accuracy and return rate)
_LINE_SUMS = ("line_picked", "line_picked_right", "line_shipped", "line_returned")
#: The order facts group_fact copies onto an order's rows of its groups (``member = 1``).
_GROUP_COPIES = ("conf", "alloc", "cycle", *_COUNTERS, "due")


def _group_facts_sql(h: History) -> list[str]:
    """INSERT ... SELECT of group_fact's rows for each line cut (the orders of history ``h``),
    after the order_fact rows (it copies from them): one row per order and group of
    its lines or pick lines, through the same per-line SQL the generic line paths sum
    (``_line_units_sql``, ``_line_picks_sql``) and the cuts' own mappings."""
    out = []
    for line, cut in LINE_CUTS.items():
        members = _line_members_sql(line, h)
        rows = (
            "SELECT u.order_id AS order_id, u.g AS g, MAX(u.member) AS member, SUM(u.lp) AS lp, SUM(u.lpr) AS lpr, "
            "SUM(u.ls) AS ls, SUM(u.lr) AS lr FROM ("
            f"SELECT order_id, g, 1 AS member, 0 AS lp, 0 AS lpr, 0 AS ls, 0 AS lr FROM ({members}) a UNION ALL "
            f"SELECT order_id, g, 0, 0, 0, shipped, returned FROM ({_line_units_sql(line, h)}) b UNION ALL "
            f"SELECT order_id, g, 0, picked, picked_right, 0, 0 FROM ({_line_picks_sql(line, h)}) c"
            ") u GROUP BY u.order_id, u.g"
        )
        copies = ", ".join(
            f"CASE WHEN u.member = 1 THEN f.{c} ELSE {'NULL' if c in ('conf', 'alloc', 'cycle', 'due') else '0'} END"
            for c in _GROUP_COPIES
        )
        out.append(
            f"INSERT INTO group_fact (cut, g, order_id, created_at, member, {', '.join(_GROUP_COPIES)}, line_picked, "
            f"line_picked_right, line_shipped, line_returned) SELECT '{cut}', u.g, u.order_id, f.created_at, u.member, "
            f"{copies}, u.lp, u.lpr, u.ls, u.lr FROM ({rows}) u JOIN {h('order_fact')} f ON f.order_id = u.order_id"
        )
    return out


def _index_name(column: str | None, time: str) -> str:
    # the conf index is the cut's covering index of sums ("sums"; before it carried `due`, "conf")
    return f"ix_order_fact_by_{column or 'all'}_{'sums' if time == 'conf' else time}"


def _ensure_indexes(s: Session, column: str | None) -> None:
    """The three indexes a report cut by ``column`` reads (built on first use, then kept up to
    date by every refresh): (g, conf, created_at) serves the confirmation-time percentiles,
    (g, alloc, created_at) and (g, cycle, created_at) the other two. A percentile is then an
    OFFSET into one group's range of an index, not a sort of the table. On SQLite, which has no
    hash aggregation, the conf index also carries every other fact: the per-group sums read it."""
    lead = f"{column}, " if column else ""
    rest = ", ".join(["alloc", "cycle", *_COUNTERS])
    sqlite = not is_postgresql(s)
    wanted = {
        _index_name(column, "conf"): f"{lead}conf, created_at" + (f", {rest}, due" if sqlite else ""),
        _index_name(column, "alloc"): f"{lead}alloc, created_at",
        _index_name(column, "cycle"): f"{lead}cycle, created_at",
    }
    for name, cols in wanted.items():
        s.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON order_fact ({cols})"))
    if sqlite:
        s.execute(sa.text(f"DROP INDEX IF EXISTS ix_order_fact_by_{column or 'all'}_conf"))  # its predecessor


# --- the report ------------------------------------------------------------------------------

#: Where the node-level figures come from: ``auto`` reads the facts when they are current (every
#: audit event refreshed in) and the task history otherwise; ``facts`` and ``tasks`` force one.
SOURCES = ("auto", "facts", "tasks")


def facts_current(session: Session, cfg: Config) -> bool:
    """Whether the facts hold every visible event, under ``cfg``'s fingerprint (PostgreSQL:
    refresh_facts stores a mark up to which every event was committed, so an event it missed has
    a higher id). Reads only."""
    state = session.execute(sa.text("SELECT event_id, fingerprint FROM fact_state WHERE id = 1")).one_or_none()
    return bool(
        state is not None
        and state.event_id is not None
        and state.fingerprint == fingerprint(cfg)
        and session.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM event")).scalar_one() <= state.event_id
    )


class _Report:
    """One report over the orders of a period, read from the facts ``refresh_facts`` keeps.

    Order-level KPIs read ``order_fact`` (one row per order); the bottleneck, breaches and
    lateness read ``node_fact``; per-node figures (``report sla``, the node cut) read
    ``visit_fact`` through its (node, time) indexes. With ``source="tasks"``, or when the facts
    are behind the audit trail (a caller that did not refresh), the node-level figures are
    computed from the task history instead: the generic paths the facts are tested against.
    """

    def __init__(
        self, session: Session, cfg: Config, *, now: datetime, period: Period, by: str | None, source: str = "auto"
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
        self.s, self.cfg, self.now, self.period, self.by = session, cfg, now, period, by
        self.source = source
        self._visits: bool | None = None
        self._visit_sums: dict | None = None
        self._late_sums: Sequence[sa.Row] | None = None
        self.sql = _Sql(session, cfg.timezone, now)
        self.sql.tune()
        cut = _cut(by)
        if cut.column and cut.mapping:  # workflow: the facts' copy, or (source "tasks") read off the orders
            cut = _Cut(mapping=cut.mapping) if source == "tasks" else _Cut(column=cut.column)
        self.cut = cut
        self._line_rows: dict | None = None
        self._unfilled: list[str] | None = None  # the day tables not filled yet (``_unfilled_days``)
        self._fill: dict | None = None  # fill_rate's sums when the grouped pass read them
        self.today = local_date(now, cfg.timezone)  # fill rate's "past the promised date"
        self.params: dict[str, Any] = {"now": now, "tz": cfg.timezone}
        self.bounds = []  # conditions on an order's created_at
        if period.start is not None:
            self.bounds.append(">= :start")
            self.params["start"] = period.start
        if period.end is not None:
            self.bounds.append("< :end")
            self.params["end"] = period.end
        self.ranged = bool(self.bounds)
        self.frange = self.created_in("f")

    def created_in(self, alias: str) -> str:
        """The period as a condition on ``alias``'s created_at (orders, order_fact, node_fact)."""
        return " AND ".join(f"{alias}.created_at {b}" for b in self.bounds) or "1 = 1"

    # -- plumbing --
    def _statement(self, sql: str):
        stmt = sa.text(sql)
        binds = [sa.bindparam(k, type_=UTCDateTime) for k in ("now", "start", "end", "lo", "hi") if f":{k}" in sql]
        if binds:
            stmt = stmt.bindparams(*binds)
        return stmt, {k: v for k, v in self.params.items() if f":{k}" in sql}

    def rows(self, sql: str, extra: Mapping[str, Any] | None = None) -> Sequence[sa.Row]:
        stmt, params = self._statement(sql)
        return self.s.execute(stmt, {**params, **(extra or {})}).all()

    def in_period(self, alias: str) -> tuple[str, str]:
        """(join, condition) restricting rows of ``alias`` (with an order_id) to the period's orders."""
        if not self.ranged:
            return "", "1 = 1"
        return f" JOIN orders o ON o.order_id = {alias}.order_id", self.created_in("o")

    @staticmethod
    def _key(g: Any) -> str | None:
        if g is None:
            return None
        if isinstance(g, (date, datetime)):
            return g.isoformat()[:10]
        return str(g)

    def percentiles(self, values: str) -> dict[str | None, tuple[int, float | None, float | None]]:
        return {self._key(r.g): (int(r.n), r.p50, r.p90) for r in self.rows(self.sql.percentiles(values, (0.5, 0.9)))}

    def check_facts(self) -> None:
        state = self.s.execute(sa.text("SELECT event_id, fingerprint FROM fact_state WHERE id = 1")).one_or_none()
        if state is None or state.event_id is None or state.fingerprint != fingerprint(self.cfg):
            raise FactsNotReady(
                _("the report facts are not built for this config: call kpi.refresh_facts(store, cfg) first")
            )

    def visits(self) -> bool:
        """Whether node-level figures read the facts (see ``SOURCES``)."""
        if self._visits is None:
            if self.source == "tasks":
                self._visits = False
            elif self.source == "facts":
                self.check_facts()
                self._visits = True
            else:
                self._visits = facts_current(self.s, self.cfg)
        return self._visits

    def pick(
        self,
        table: str,
        index: str,
        col: str,
        where: str,
        extra: Mapping[str, Any],
        n: int,
        ps: Iterable[float] = (0.5, 0.9),
    ) -> list[float]:
        """Exact percentiles of ``col`` over the ``n`` rows of ``table x`` matching ``where`` and
        the period (``picks`` for one group)."""
        return self.picks(table, index, col, [(where, extra, n)], ps)[0]

    def picks(
        self,
        table: str,
        index: str,
        col: str,
        groups: list[tuple[str, Mapping[str, Any], int]],
        ps: Iterable[float] = (0.5, 0.9),
        more: Sequence[Sequence[float]] | None = None,
    ) -> list[list[float]]:
        """Per group ``(where, params, n)``: exact percentiles (linear interpolation, as
        percentile_cont) of ``col`` over the ``n`` rows of ``table x`` matching ``where`` (with
        ``params``) and the period, together with the group's values in ``more`` (counted apart,
        not in the table), by stepping to each rank from the nearer end of an index on (...,
        col, created_at): no sort of the rows. SQLite: each read is one prepared statement run
        again with the group's parameters (preparing thousands of reads cost more than stepping
        them). PostgreSQL: the reads of many groups go in one statement (``_lateral_reads``), not
        one round trip each."""
        hint = f" INDEXED BY {index}" if self.sql.sqlite else ""
        ps = list(ps)
        # (group index, pos, k, the index's first rank read, the read: (where, order, limit, skip, params))
        jobs: list[tuple] = []
        for i, (where, extra, n) in enumerate(groups):
            also = len(more[i]) if more else 0
            for p in ps:
                pos = p * (n + also - 1)
                k = int(pos)  # interpolate between the values of ranks k and k + 1 (0-based)
                # ranks k and k + 1 of the union are among the index's ranks lo..hi-1 and the other values
                lo, hi = max(k - also, 0), min(k + 2, n)
                read = None
                if hi > lo:
                    descending = lo >= n - hi
                    order, skip = ("DESC", n - hi) if descending else ("ASC", lo)
                    read = (where, order, hi - lo, skip, extra)
                jobs.append((i, pos, k, lo, read))
        reads = [(j, job[4]) for j, job in enumerate(jobs) if job[4] is not None]
        got = self._sqlite_reads(table, hint, col, reads) if self.sql.sqlite else self._lateral_reads(table, col, reads)
        out: list[list[float]] = [[] for _ in groups]
        for j, (i, pos, k, lo, _read) in enumerate(jobs):
            values = sorted([*got.get(j, []), *(more[i] if more else ())])
            a = values[k - lo]
            b = values[k + 1 - lo] if k + 1 - lo < len(values) else a
            out[i].append(a + (pos - k) * (b - a))
        return out

    def _read_sql(self, table: str, hint: str, col: str, where: str, order: str) -> str:
        return (
            f"SELECT x.{col} AS v FROM {table} x{hint} WHERE {where} AND x.{col} IS NOT NULL "
            f"AND {self.created_in('x')} ORDER BY x.{col} {order}"
        )

    def _sqlite_reads(self, table: str, hint: str, col: str, reads: list[tuple[int, tuple]]) -> dict[int, list[float]]:
        """``picks``' reads on SQLite through the driver: the same text, prepared once (sqlite3
        keeps its recent statements), with the group's parameters, LIMIT and OFFSET bound."""
        base = {k: _stamp(v) if isinstance(v, datetime) else v for k, v in self.params.items()}
        driver = self.s.connection().connection.driver_connection
        assert driver is not None  # a checked-out connection has its sqlite3 connection
        cursor = driver.cursor()
        got: dict[int, list[float]] = {}
        texts: dict[tuple[str, str], str] = {}  # one text per condition and direction, not per read
        for j, (where, order, limit, skip, extra) in reads:
            sql = texts.get((where, order))
            if sql is None:
                sql = texts[where, order] = (
                    self._read_sql(table, hint, col, where, order) + " LIMIT :limit_ OFFSET :skip_"
                )
            found = cursor.execute(sql, {**base, **extra, "limit_": limit, "skip_": skip}).fetchall()
            got[j] = [r[0] for r in found]
        return got

    def _lateral_reads(self, table: str, col: str, reads: list[tuple[int, tuple]]) -> dict[int, list[float]]:
        """``picks``' reads on PostgreSQL: those sharing a condition in one statement, a LATERAL read
        taking its LIMIT, OFFSET and group parameters from a JSON array, a record per read (one plan
        and one parameter for thousands of groups; a UNION ALL of them spent seconds planning). A
        condition whose parameters are not all text, all numbers or all dates is read a group at a time."""
        families: dict[tuple[str, str, tuple[str, ...]], list[tuple]] = {}
        for j, (where, order, limit, skip, extra) in reads:
            families.setdefault((where, order, tuple(extra)), []).append((j, limit, skip, extra))
        got: dict[int, list[float]] = {}
        for (where, order, keys), items in families.items():
            kinds = {key: _JSON_TYPES.get(frozenset(type(extra[key]) for *_, extra in items)) for key in keys}
            if None in kinds.values():
                for j, limit, skip, extra in items:
                    read = self._read_sql(table, "", col, where, order)
                    got[j] = [r.v for r in self.rows(f"{read} LIMIT {limit} OFFSET {skip}", extra)]
                continue
            own = where
            for key in keys:
                own = re.sub(rf":{key}\b", f"w.{key}_", own)
            dated = [key for key in keys if kinds[key] == "date"]
            records = [
                [j, limit, skip, *(extra[key].isoformat() if key in dated else extra[key] for key in keys)]
                for j, limit, skip, extra in items
            ]
            names = ["j_ bigint", "limit_ bigint", "skip_ bigint", *(f"{key}_ {kinds[key]}" for key in keys)]
            fields = ", ".join(
                f"CAST(e->>{i} AS {name.split()[1]}) AS {name.split()[0]}" for i, name in enumerate(names)
            )
            sql = (
                f"SELECT w.j_ AS j, s.v AS v FROM (SELECT {fields} FROM jsonb_array_elements(CAST(:reads_ AS jsonb)) e) w "
                f"CROSS JOIN LATERAL ({self._read_sql(table, '', col, own, order)} LIMIT w.limit_ OFFSET w.skip_) s"
            )
            for r in self.rows(sql, {"reads_": json.dumps(records, ensure_ascii=False)}):
                got.setdefault(r.j, []).append(r.v)
        return got

    def visit_sums(self) -> dict[str, Any]:
        """Per node: visits with a time in node (n_seconds), orders (first) with a confirmation /
        allocation time, every sum and the fill rate's. The period's whole local days from
        visit_day; its partial first and last days (a period given to the instant) from
        visit_fact's covering index in node order."""
        if self._visit_sums is None:
            days, edges = self._period_days()
            found: list[Any] = []
            if days is not None:
                first, last = days
                bounds = [f"d.day >= '{first.isoformat()}'"] if first else []
                bounds += [f"d.day < '{last.isoformat()}'"] if last else []
                cond = " AND ".join(bounds) or "1 = 1"
                found += self.rows(
                    f"SELECT d.node AS g, {', '.join(f'SUM(d.{c}) AS {c}' for c in _DAY_SUMS)}, "
                    f"{_fill_sums('d', 'fill_units', 'fill_on_time', 'key_')} "
                    f"FROM visit_day d WHERE {cond} GROUP BY d.node",
                    {"today": self.today},
                )
            nodes = list(self.s.execute(sa.text("SELECT DISTINCT node FROM visit_day")).scalars())
            hint = " INDEXED BY ix_visit_fact_sums" if self.sql.sqlite else ""
            sums = ", ".join(f"SUM(v.{c}) AS {c}" for c in VISIT_SUMS)
            for lo, hi in edges if nodes else ():
                found += self.rows(
                    f"SELECT v.node AS g, COUNT(*) AS visits, COUNT(v.seconds) AS n_seconds, COUNT(v.conf) AS n_conf, "
                    f"COUNT(v.alloc) AS n_alloc, {sums}, {_fill_sums('v', 'fill_units', 'fill_on_time')} "
                    f"FROM visit_fact v{hint} WHERE v.node IN {_in(nodes)} AND v.created_at >= :lo AND v.created_at < :hi GROUP BY v.node",
                    {"today": self.today, "lo": lo, "hi": hi},
                )
            out: dict[str, Any] = {}
            for r in found:
                row = out.setdefault(r.g, SimpleNamespace(**{c: 0 for c in (*_DAY_SUMS, "fill_units", "fill_on_time")}))
                for c in (*_DAY_SUMS, "fill_units", "fill_on_time"):
                    setattr(row, c, getattr(row, c) + int(getattr(r, c) or 0))
            self._visit_sums = {node: r for node, r in sorted(out.items()) if r.visits}
        return self._visit_sums

    def _period_days(self) -> tuple[tuple[date | None, date | None] | None, list[tuple[datetime, datetime]]]:
        """The period as whole local days [first, last) (None: no whole day; a None bound: open)
        and the instant ranges [lo, hi) of its partial days around them (a period of local dates
        has none)."""
        tz, start, end = self.cfg.timezone, self.period.start, self.period.end
        first = last = None
        edges = []
        if start is not None:
            first = local_date(start, tz)
            if start_of_day(first, tz) != start:
                first += timedelta(days=1)
                edges.append((start, start_of_day(first, tz)))
        if end is not None:
            last = local_date(end, tz)
            if start_of_day(last, tz) != end:
                edges.append((start_of_day(last, tz), end))
        if start is not None and end is not None and first is not None and last is not None and first >= last:
            return None, [(start, end)]
        return (first, last), edges

    def visit_times(
        self, col: str, count: str, unit_seconds: float = 1.0
    ) -> dict[str | None, tuple[int, float | None, float | None]]:
        """Per node: (n, p50, p90) of visit_fact's ``col`` (over index ix_visit_fact_<col>)."""
        index = f"ix_visit_fact_{col}"
        counted = [(node, int(getattr(r, count) or 0)) for node, r in self.visit_sums().items()]
        counted = [(node, n) for node, n in counted if n]
        picked = self.picks("visit_fact", index, col, [_equals("x.node", node, n) for node, n in counted])
        return {node: (n, p50 / unit_seconds, p90 / unit_seconds) for (node, n), (p50, p90) in zip(counted, picked)}

    # -- order-level KPIs from order_fact --
    def order_kpis(self, *, times: bool = True, counters: Iterable[str] = _COUNTERS) -> tuple[dict, dict]:
        """(sums, times): per group the order count and counter sums; per time KPI and group
        (n, p50, p90). ``times`` False: a single-valued cut's sums alone, its times left empty,
        and of its counters only ``counters`` summed (the others read 0)."""
        if not times and self.cut.mapping is None:
            return self._generic(times=False, counters=counters)
        if self.cut.mapping is None:
            if _have_indexes(self.s, [self.cut.column]):
                return self._grouped()
        # the line cuts from group_fact, whose member rows carry the order's facts
        elif self.cut.line and self.visits():
            return self._grouped()
        # the node cut from visit_fact's first visits, when it copies every order counter
        elif self.by == "node" and set(_COUNTERS) <= {*VISIT_COUNTERS, "decided", "within"} and self.visits():
            return self._by_node_visits()
        return self._generic()

    def _by_node_visits(self) -> tuple[dict, dict]:
        """The node cut over the orders that visited each node: their first visit's row carries
        the order's facts. ``decided``/``within`` are the node's own visits (what the cut's SLA
        attainment counts). The cut's cycle time is time in node (``time_in_node``)."""
        sums: dict[str, dict] = {}
        times: dict[str, dict] = {"conf": {}, "alloc": {}, "cycle": {}}
        for node, r in self.visit_sums().items():
            if not r.first:
                continue
            sums[node] = {"orders": int(r.first), **{c: int(getattr(r, c) or 0) for c in _COUNTERS}}
        conf, alloc = self.visit_times("conf", "n_conf"), self.visit_times("alloc", "n_alloc")
        times["conf"] = {g: v for g, v in conf.items() if g in sums}
        times["alloc"] = {g: v for g, v in alloc.items() if g in sums}
        return sums, times

    def _fill_of(self, rows) -> dict[str | None, tuple[int, int]]:
        return {self._key(r.g): (int(r.fill_n or 0), int(r.fill_good or 0)) for r in rows if r.fill_n}

    def _sums_of(self, rows) -> dict:
        """Per group the order count and each counter; a counter the pass did not sum reads 0."""
        have = [c for c in ("orders", *_COUNTERS) if rows and c in rows[0]._fields]  # a Row's miss is slow
        zero = dict.fromkeys(("orders", *_COUNTERS), 0)
        return {self._key(r.g): {**zero, **{c: int(getattr(r, c) or 0) for c in have}} for r in rows}

    def _facts_table(self) -> tuple[str, str | None, str, str, str]:
        """Where a grouped path reads: (table, its group column or None, a condition, the order
        count, more sums). order_fact for the single-valued cuts; group_fact's rows of the cut for
        product and category (its member rows are the orders; its line sums serve the line KPIs)."""
        if self.cut.line:
            lines = ", ".join(f"SUM(f.{c}) AS {c}" for c in _LINE_SUMS)
            return "group_fact", "g", f"{{a}}.cut = '{LINE_CUTS[self.cut.line]}'", "SUM(f.member)", f", {lines}"
        return "order_fact", self.cut.column, "1 = 1", "COUNT(*)", ""

    def _index(self, time: str) -> str:
        """The index on (group..., ``time``, created_at) of the grouped path's table (SQLite names it in the reads)."""
        if self.cut.line:
            return f"ix_group_fact_{time}"
        return _index_name(self.cut.column, time)

    def _keep(self, rows) -> list:
        """The groups with orders; a line cut keeps every group's row for its line sums."""
        if self.cut.line:
            self._line_rows = {self._key(r.g): r for r in rows}
        return [r for r in rows if r.orders]

    def _grouped(self) -> tuple[dict, dict]:
        """Per-group sums (SQLite: over the (g, conf, ...) covering index; PostgreSQL: a hash
        aggregate), then each percentile by stepping to its rank within the group's range of the
        time's own index (no sort of the rows: a sort of a million by group and time cost seconds)."""
        table, column, cond, orders, more = self._facts_table()
        g, group = (f"f.{column}", f" GROUP BY f.{column}") if column else self.cut.group()
        counts = ", ".join(f"COUNT(f.{t}) AS n_{t}" for t in _TIMES)
        fill = f", {_fill_sums('f', 'fill_n', 'fill_good')}"  # both covering indexes have `due`
        sums_index = "ix_group_fact_sums" if self.cut.line else _index_name(self.cut.column, "conf")
        # a line cut's pick accuracy and return rate divide the lines' own sums (``_LINE_SUMS``), not these
        own = ("picked", "picked_right", "units_shipped", "units_returned") if self.cut.line else ()
        divided = {c for pair in _KPI_COUNTERS.values() for c in pair}  # not units: fill rate sums its own
        summed = [c for c in _COUNTERS if c in divided and c not in own]
        sums = ", ".join(f"SUM(f.{c}) AS {c}" for c in summed)
        hint = f" INDEXED BY {sums_index}" if self.sql.sqlite else ""
        select = f"SELECT {g} AS g, {orders} AS orders, {sums}{more}, {counts}{fill} FROM {table} f{hint} WHERE {cond.format(a='f')}"
        found: Sequence[Any]
        if self._day_table() is not None:
            found = self._by_days(f"{select} AND f.created_at >= :lo AND f.created_at < :hi{group}", summed, full=True)
        else:
            found = self.rows(f"{select} AND {self.frange}{group}", {"today": self.today})
        rows = self._keep(found)
        self._fill = self._fill_of(rows)
        cond = cond.format(a="x")
        times: dict[str, dict] = {t: {} for t in _TIMES}
        for t in _TIMES:
            groups: list[tuple] = []
            for r in rows:
                n = int(getattr(r, f"n_{t}"))
                if not n:
                    continue
                if column is None:
                    groups.append((r, (cond, {}, n)))
                elif r.g is None:
                    groups.append((r, (f"{cond} AND x.{column} IS NULL", {}, n)))
                else:
                    where, extra, _n = _equals(f"x.{column}", r.g, n)
                    groups.append((r, (f"{cond} AND {where}", extra, n)))
            for (r, (_w, _e, n)), (p50, p90) in zip(
                groups, self.picks(table, self._index(t), t, [g[1] for g in groups])
            ):
                times[t][self._key(r.g)] = (n, p50, p90)
        return self._sums_of(rows), times

    def _day_table(self) -> str | None:
        """The day table that keeps this cut's grouped sums, when it is filled: group_day for the
        line cuts, order_day for the whole store and the week cut; None: the facts' own pass
        (also for ``source="tasks"``, which the day sums are tested against)."""
        if not self.visits():
            return None
        if self.cut.line:
            table = "group_day"
        elif self.cut.mapping is None and self.cut.column in (None, "week"):
            table = "order_day"
        else:
            return None
        if self._unfilled is None:
            self._unfilled = _unfilled_days(self.s)
        return None if table in self._unfilled else table

    def _by_days(self, edge: str, summed: Sequence[str], *, full: bool) -> list:
        """The grouped sums of ``_grouped``'s pass (``full``: with the time counts, the fill rate's
        sums and a line cut's own) or of ``_generic``'s (the order count and ``summed``), from the
        cut's day table (``_day_table``) for the period's whole local days and, by ``edge`` (that
        pass over the facts between :lo and :hi), for its partial first and last days; one row per
        group, as that pass gives."""
        days, edges = self._period_days()
        parts: list[Sequence[Any]] = []
        if days is not None:
            first, last = days
            bounds = [f"d.day >= '{first.isoformat()}'"] if first else []
            bounds += [f"d.day < '{last.isoformat()}'"] if last else []
            sums = "".join(f", SUM(d.{c}) AS {c}" for c in summed)
            if self.cut.line:
                g, orders, group = "NULLIF(d.g, '')", "SUM(d.member)", " GROUP BY d.g"
                bounds.append(f"d.cut = '{LINE_CUTS[self.cut.line]}'")
                lines = "".join(f", SUM(d.{c}) AS {c}" for c in _LINE_SUMS)
            else:
                g, group = (f"'{ALL}'", "") if self.cut.column is None else ("d.week", " GROUP BY d.week")
                orders, lines = "SUM(d.n_rows)", ""
            more = ""
            if full:
                counts = "".join(f", SUM(d.n_{t}) AS n_{t}" for t in _TIMES)
                more = f"{lines}{counts}, {_fill_sums('d', 'fill_n', 'fill_good', 'key_')}"
            parts.append(
                self.rows(
                    f"SELECT {g} AS g, {orders} AS orders{sums}{more} FROM {self._day_table()} d "
                    f"WHERE {' AND '.join(bounds) or '1 = 1'}{group}",
                    {"today": self.today},
                )
            )
        for lo, hi in edges:
            parts.append(self.rows(edge, {"today": self.today, "lo": lo, "hi": hi}))
        if len(parts) == 1:
            return list(parts[0])
        by_group: dict[Any, dict[str, Any]] = {}
        for part in parts:
            for r in part:
                row = by_group.setdefault(r.g, {"g": r.g})
                for name, value in r._mapping.items():
                    if name != "g":
                        row[name] = row.get(name, 0) + (value or 0)
        return [SimpleNamespace(_fields=tuple(row), **row) for row in by_group.values()]

    def line_sums(self) -> dict | None:
        """A line cut's rows of group_fact per group (every group, with or without orders), when
        the facts are current; None: the generic paths read the lines."""
        if not self.cut.line or not self.visits():
            return None
        if self._line_rows is None:
            self.order_kpis()
        return self._line_rows

    def _generic(self, *, times: bool = True, counters: Iterable[str] = _COUNTERS) -> tuple[dict, dict]:
        """Any cut, any backend: GROUP BY and window-function percentiles over order_fact
        (joined to the cut's mapping for product, category and node); ``times`` False: the sums
        alone, of ``counters`` only (each SUM over a million rows costs ~60 ms on SQLite)."""
        if self.cut.mapping:
            source = f"order_fact f JOIN ({self.cut.mapping}) gx ON gx.order_id = f.order_id"
            g, group = "gx.g", " GROUP BY gx.g"
        else:
            source, (g, group) = "order_fact f", self.cut.group()
        summed = _COUNTERS if times else [c for c in _COUNTERS if c in set(counters)]
        sums = "".join(f", SUM(f.{c}) AS {c}" for c in summed)
        select = f"SELECT {g} AS g, COUNT(*) AS orders{sums} FROM {source} WHERE"
        sums_rows: Sequence[Any]
        if not times and self._day_table() is not None:  # the dashboard's weekly panel
            sums_rows = self._by_days(f"{select} f.created_at >= :lo AND f.created_at < :hi{group}", summed, full=False)
        else:
            sums_rows = self.rows(f"{select} {self.frange}{group}")
        rows = [r for r in sums_rows if r.orders]
        if not times:
            return self._sums_of(rows), {t: {} for t in _TIMES}
        found = {t: self.percentiles(f"SELECT {g} AS g, f.{t} AS x FROM {source} WHERE {self.frange}") for t in _TIMES}
        return self._sums_of(rows), found

    def fill_rate(self) -> dict[str | None, tuple[int, int]]:
        """Per group: (units due, units shipped on time) of the orders shipped in full or past their
        promised date at the report's day (SPEC 9.2)."""
        if self._fill is not None:  # read with the sums
            return self._fill
        if self.cut.line and self.visits():  # group_fact's member rows carry the orders' units
            hint = " INDEXED BY ix_group_fact_sums" if self.sql.sqlite else ""
            source, g, group = f"group_fact f{hint}", "f.g", f" AND f.cut = '{LINE_CUTS[self.cut.line]}' GROUP BY f.g"
        elif self.by == "node" and self.visits():  # an order's first visit of a node carries its units
            return {
                node: (int(r.fill_units or 0), int(r.fill_on_time or 0))
                for node, r in self.visit_sums().items()
                if r.fill_units
            }
        elif self.cut.mapping:
            source = f"order_fact f JOIN ({self.cut.mapping}) gx ON gx.order_id = f.order_id"
            g, group = "gx.g", " GROUP BY gx.g"
        else:
            source, (g, group) = "order_fact f", self.cut.group()
        rows = self.rows(
            f"SELECT {g} AS g, SUM(f.units) AS n, SUM(f.units_on_time) AS good FROM {source} "
            f"WHERE {self.frange} AND {_fill_due('f')}{group}",
            {"today": self.today},
        )
        return {self._key(r.g): (int(r.n or 0), int(r.good or 0)) for r in rows if r.n}

    def return_reasons(self, top: int = 3) -> dict[str | None, list[dict]]:
        """Per group: the ``top`` return reasons by units (ties: alphabetical), SPEC 9.5."""
        if self.cut.line:
            g = "rl.sku" if self.cut.line == "sku" else "rp.category"
            source = "return_line rl JOIN order_fact f ON f.order_id = rl.order_id" + (
                "" if self.cut.line == "sku" else " LEFT JOIN product rp ON rp.sku = rl.sku"
            )
        elif self.by == "node" and self.visits():  # the orders' first visits of each node, by index
            # SQLite: the few return lines first (CROSS JOIN keeps the order), then their orders' visits by
            # index; left to itself it read every visit (137 s at 1M orders, 1.8 s this way, load 13)
            join, hint = ("CROSS JOIN", " INDEXED BY ix_visit_fact_order") if self.sql.sqlite else ("JOIN", "")
            source = (
                f"return_line rl {join} order_fact f ON f.order_id = rl.order_id "
                f"{join} visit_fact gx{hint} ON gx.order_id = rl.order_id AND gx.first = 1"
            )
            g = "gx.node"
        elif self.cut.mapping:
            source = (
                f"return_line rl JOIN order_fact f ON f.order_id = rl.order_id "
                f"JOIN ({self.cut.mapping}) gx ON gx.order_id = rl.order_id"
            )
            g = "gx.g"
        else:
            source, g = "return_line rl JOIN order_fact f ON f.order_id = rl.order_id", self.cut.group()[0]
        out: dict[str | None, list[dict]] = {}
        # not cut: g is a constant, which PostgreSQL refuses in GROUP BY
        by_g, part = (f"{g}, ", f"PARTITION BY {g} ") if g != f"'{ALL}'" else ("", "")
        for r in self.rows(
            f"SELECT g, reason, n FROM (SELECT {g} AS g, rl.reason AS reason, SUM(rl.qty) AS n, "
            f"ROW_NUMBER() OVER ({part}ORDER BY SUM(rl.qty) DESC, rl.reason) AS rn "
            f"FROM {source} WHERE {self.frange} GROUP BY {by_g}rl.reason) x WHERE rn <= {top} "
            "ORDER BY g, n DESC, reason"
        ):
            out.setdefault(self._key(r.g), []).append({"reason": r.reason, "units": int(r.n)})
        return out

    def line_returns(self) -> dict[str | None, tuple[int, int]]:
        """Return rate cut by each line's own SKU or category: (units shipped, units returned)."""
        facts = self.line_sums()
        if facts is not None:
            return {g: (int(r.line_shipped), int(r.line_returned or 0)) for g, r in facts.items() if r.line_shipped}
        assert self.cut.line is not None  # a cut by the line's own SKU or category
        rows = self.rows(
            f"SELECT x.g AS g, SUM(x.shipped) AS n, SUM(x.returned) AS back FROM ({_line_units_sql(self.cut.line)}) x "
            f"JOIN order_fact f ON f.order_id = x.order_id WHERE {self.frange} GROUP BY x.g HAVING SUM(x.shipped) > 0"
        )
        return {self._key(r.g): (int(r.n or 0), int(r.back or 0)) for r in rows}

    # -- facts that are not per order --
    def line_pick_accuracy(self) -> dict[str | None, tuple[int, int]]:
        """Pick accuracy cut by each picked line's own SKU or category."""
        facts = self.line_sums()
        if facts is not None:
            return {g: (int(r.line_picked), int(r.line_picked_right or 0)) for g, r in facts.items() if r.line_picked}
        join, cond = self.in_period("x")
        assert self.cut.line is not None  # a cut by the line's own SKU or category
        sql = (
            f"SELECT x.g AS g, SUM(x.picked) AS n, SUM(x.picked_right) AS good "
            f"FROM ({_line_picks_sql(self.cut.line)}) x{join} WHERE {cond} GROUP BY x.g"
        )
        return {self._key(r.g): (int(r.n), int(r.good or 0)) for r in self.rows(sql)}

    def time_in_node(self, unit_seconds: float = 1.0) -> dict[str | None, tuple[int, float | None, float | None]]:
        """Per node: visits left (not skipped or cancelled) and p50/p90 of the time spent in it."""
        if self.visits():
            return self.visit_times("seconds", "n_seconds", unit_seconds)
        join, cond = self.in_period("t")
        values = (
            f"SELECT t.node AS g, {self.sql.seconds('t.entered_at', 't.completed_at')} / {unit_seconds} AS x "
            f"FROM task t{join} WHERE t.completed_at IS NOT NULL AND t.status NOT IN ('skipped', 'cancelled') AND {cond}"
        )
        return self.percentiles(values)

    def _over(self, alias: str, stop: str) -> str:
        """Sum of wall-clock seconds past the deadline of visits ``alias`` that stopped at ``stop``."""
        end = f"COALESCE({stop}, :now)"
        return (
            f"SUM(CASE WHEN {alias}.deadline IS NOT NULL AND {end} > {alias}.deadline "
            f"THEN {self.sql.seconds(f'{alias}.deadline', end)} ELSE 0 END)"
        )

    def _fact_breached(self) -> str:
        return breached_sql("nf", stop="nf.completed_at")

    def _node_fact_sums(self) -> list[SimpleNamespace]:
        """Per node over node_fact: breaches, seconds over SLA and the stopped visits' stored lateness count."""
        by_node: dict[str, SimpleNamespace] = {}
        for r in self._node_owner_sums():
            row = by_node.setdefault(r.node, SimpleNamespace(node=r.node, breaches=0, over_sla_seconds=0.0, n_late=0))
            row.breaches += int(r.breaches or 0)
            row.over_sla_seconds += float(r.over_sla_seconds or 0.0)
            row.n_late += int(r.n_late or 0)
        return list(by_node.values())

    def _node_owner_sums(self) -> Sequence[sa.Row]:
        """``_node_fact_sums`` per node and owner, in one pass over node_fact's covering index: the
        bottleneck adds them up by node, the breaches per owner by owner (``PeriodReports.owners``)."""
        if self._late_sums is None:
            self._late_sums = self.rows(
                f"SELECT nf.node AS node, nf.owner AS owner, SUM(CASE WHEN {self._fact_breached()} THEN 1 ELSE 0 END) "
                f"AS breaches, {self._over('nf', 'nf.completed_at')} AS over_sla_seconds, COUNT(nf.late) AS n_late "
                f"FROM node_fact nf WHERE {self.created_in('nf')} GROUP BY nf.node, nf.owner"
            )
        return self._late_sums

    def bottleneck_stats(self) -> list[dict]:
        """Per node: breaches and seconds over SLA (what the bottleneck weighs), from node_fact."""
        return [
            {
                "node": r.node,
                "decided": 0,
                "within": 0,
                "breaches": int(r.breaches or 0),
                "auto_actions": 0,
                "over_sla_seconds": float(r.over_sla_seconds or 0.0),
                "escalations": 0,
                "reminders": 0,
            }
            for r in self._node_fact_sums()
        ]

    def lateness(self) -> dict[str | None, tuple[int, float | None, float | None]]:
        """Per node: (breached visits, p50, p90 of their business seconds past the deadline), from
        node_fact (every visit that can breach is there), or the task history. A stopped visit's
        lateness is stored (``late``, rank steps through ix_node_fact_late); a running one's grows
        with the clock and is counted here, by the same ``_BusinessTime``."""
        if self.visits():
            stored = {r.node: int(r.n_late) for r in self._node_fact_sums()}
            if not stored:
                return {}
            visits = (
                f"SELECT nf.node AS g, nf.node AS node, nf.deadline AS a, COALESCE(nf.completed_at, :now) AS b "
                f"FROM node_fact nf WHERE nf.node IN {_in(stored)} AND nf.late IS NULL "
                f"AND {self._fact_breached()} AND {self.created_in('nf')}"
            )
            running: dict[str, list[float]] = {}
            for r in self.rows(_BusinessTime(self.sql, self.cfg).values(visits)):
                if r.x is not None:
                    running.setdefault(r.g, []).append(float(r.x))
            nodes = [node for node in stored if stored[node] or running.get(node)]
            picked = self.picks(
                "node_fact",
                "ix_node_fact_late",
                "late",
                [_equals("x.node", node, stored[node]) for node in nodes],
                more=[running.get(node, []) for node in nodes],
            )
            return {
                node: (stored[node] + len(running.get(node, [])), p50, p90) for node, (p50, p90) in zip(nodes, picked)
            }
        join, cond = self.in_period("t")
        stop = stopped_sql("t")
        visits = (
            f"SELECT t.node AS g, t.node AS node, t.deadline AS a, COALESCE({stop}, :now) AS b FROM task t{join} "
            f"WHERE t.status <> 'skipped' AND {breached_sql('t')} AND {cond}"
        )
        return self.percentiles(_BusinessTime(self.sql, self.cfg).values(visits))

    def node_stats(self) -> list[dict]:
        """Per node: decided, within SLA, breaches, auto actions, seconds over SLA, escalations, reminders."""
        if self.visits():
            late = {r["node"]: r for r in self.bottleneck_stats()}
            return [
                {
                    "node": node,
                    "decided": int(r.decided or 0),
                    "within": int(r.within or 0),
                    "breaches": late.get(node, {}).get("breaches", 0),
                    "auto_actions": int(r.auto or 0),
                    "over_sla_seconds": late.get(node, {}).get("over_sla_seconds", 0.0),
                    "escalations": int(r.escalations or 0),
                    "reminders": int(r.reminders or 0),
                }
                for node, r in self.visit_sums().items()
            ]
        join, cond = self.in_period("t")
        sql = (
            "SELECT t.node AS node, "
            f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} THEN 1 ELSE 0 END) AS decided, "
            f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} AND NOT {breached_sql('t')} THEN 1 ELSE 0 END) AS within, "
            f"SUM(CASE WHEN {breached_sql('t')} THEN 1 ELSE 0 END) AS breaches, "
            f"SUM(CASE WHEN t.outcome IN {_in(AUTO_ACTIONS)} THEN 1 ELSE 0 END) AS auto_actions, "
            f"{self._over('t', stopped_sql('t'))} AS over_sla_seconds "
            f"FROM task t{join} WHERE t.status <> 'skipped' AND {cond} GROUP BY t.node"
        )
        stats = {
            r.node: {
                "node": r.node,
                "decided": int(r.decided or 0),
                "within": int(r.within or 0),
                "breaches": int(r.breaches or 0),
                "auto_actions": int(r.auto_actions or 0),
                "over_sla_seconds": float(r.over_sla_seconds or 0.0),
                "escalations": 0,
                "reminders": 0,
            }
            for r in self.rows(sql)
        }
        join, cond = self.in_period("e")
        events = (
            "SELECT e.node AS node, SUM(CASE WHEN e.event = 'escalated' THEN 1 ELSE 0 END) AS escalations, "
            "SUM(CASE WHEN e.event = 'reminded' THEN 1 ELSE 0 END) AS reminders "
            f"FROM event e{join} WHERE e.event IN ('escalated', 'reminded') AND {cond} GROUP BY e.node"
        )
        for r in self.rows(events):
            row = stats.setdefault(
                r.node,
                {
                    "node": r.node,
                    "decided": 0,
                    "within": 0,
                    "breaches": 0,
                    "auto_actions": 0,
                    "over_sla_seconds": 0.0,
                    "escalations": 0,
                    "reminders": 0,
                },
            )
            row["escalations"] += int(r.escalations or 0)
            row["reminders"] += int(r.reminders or 0)
        return list(stats.values())


#: PostgreSQL's type for JSON values of these Python types (``_Report._lateral_reads``)
_JSON_TYPES = {
    frozenset({str}): "text",
    frozenset({int}): "bigint",
    frozenset({float}): "float8",
    frozenset({int, float}): "float8",
    frozenset({date}): "date",
}


def _equals(column: str, value: Any, n: int) -> tuple[str, dict[str, Any], int]:
    """A ``picks`` group ``(where, params, n)`` for ``column = value``, the value bound (on SQLite
    every group's read is then one prepared statement)."""
    return f"{column} = :g", {"g": value}, n


def _in(values: Iterable[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


# --- assembling rows -------------------------------------------------------------------------


def _round(value: float | None, unit: str) -> float | None:
    if value is None:
        return None
    return round(float(value), 6 if unit == "rate" else 3)


def kpi_row(
    name: str,
    group: str | None,
    actual: float | None,
    count: int,
    targets: Mapping[str, float],
    p90: float | None = None,
    baseline: Mapping[str, float] | None = None,
) -> dict:
    """One KPI row: baseline (``[kpi.baseline]``, where it stood before), actual, target, gap
    (= actual - target), met, count; p90 for time KPIs."""
    unit, higher_better = KPIS[name]
    target = targets.get(name)
    actual = _round(actual, unit)
    gap = _round(actual - target, unit) if actual is not None and target is not None else None
    met = None if gap is None else (gap >= 0 if higher_better else gap <= 0)
    return {
        "kpi": name,
        "group": group,
        "baseline": (baseline or {}).get(name),
        "actual": actual,
        "target": target,
        "gap": gap,
        "count": count,
        "p90": _round(p90, unit),
        "unit": unit,
        "met": met,
        "node": None,
    }


def percent_decimals(actual: float | None, target: float | None, least: int = 2) -> int:
    """Decimals to show a rate in percent with, so that a miss never reads like the target."""
    digits = least
    if actual is None or target is None:
        return digits
    while digits < 4 and actual != target and round(actual * 100, digits) == round(target * 100, digits):
        digits += 1
    return digits


def _sort_groups(groups: Iterable[str | None]) -> list[str | None]:
    return sorted(set(groups), key=lambda g: (g is None, g or ""))


def bottleneck(node_stats: list[dict]) -> dict | None:
    """The node with the largest mean of its share of breaches and its share of time over SLA
    (ties: the node name first in alphabetical order); None when no node breached."""
    breaches = sum(r["breaches"] for r in node_stats)
    over = sum(r["over_sla_seconds"] for r in node_stats)
    best = None
    for r in sorted(node_stats, key=lambda r: r["node"]):
        b_share = r["breaches"] / breaches if breaches else 0.0
        o_share = r["over_sla_seconds"] / over if over else 0.0
        score = (b_share + o_share) / 2
        if score > 0 and (best is None or score > best["score"]):
            best = {
                "node": r["node"],
                "score": score,
                "breach_share": b_share,
                "over_sla_share": o_share,
                "breaches": r["breaches"],
                "over_sla_seconds": r["over_sla_seconds"],
            }
    return best


def bottleneck_row(stats: list[dict]) -> dict:
    """The ``bottleneck`` row of ``report kpi``: ``node`` names it, ``actual`` is its score. The
    sum of time over SLA only weighs nodes against each other: the row gives its share, and
    ``report sla`` the node's lateness (business time past the deadline, p50/p90)."""
    b = bottleneck(stats)
    row = {
        "kpi": "bottleneck",
        "group": ALL,
        "baseline": None,
        "actual": None,
        "target": None,
        "gap": None,
        "count": 0,
        "p90": None,
        "unit": "share",
        "met": None,
        "node": None,
        "breach_share": None,
        "over_sla_share": None,
    }
    if b:
        row.update(
            actual=round(b["score"], 6),
            count=b["breaches"],
            node=b["node"],
            breach_share=round(b["breach_share"], 6),
            over_sla_share=round(b["over_sla_share"], 6),
        )
    return row


#: The time KPIs: (n, p50, p90) per group; the others are rates, (n, good) per group.
_TIME_KPIS = ("order_confirmation_minutes", "allocation_minutes", "cycle_time_hours")
#: The rows ``kpi_report`` can be asked for (``kpis``): the KPIs, and the bottleneck's row.
KPI_ROWS = (*KPIS, "bottleneck")


class PeriodReports:
    """The reports of one period, each cut read through one ``_Report``: a caller that asks for
    several (``report dashboard``) reads what they share once (the facts' state, the node sums
    the bottleneck and ``report sla`` weigh). ``kpi_report``, ``sla_report``,
    ``breaches_by_owner`` and ``cycle_time_histogram`` are these methods over a fresh one."""

    def __init__(
        self, session: Session, cfg: Config, *, now: datetime, period: Period = Period(), source: str = "auto"
    ) -> None:
        self.session, self.cfg, self.now, self.period, self.source = session, cfg, now, period, source
        self._reports: dict[str | None, _Report] = {}

    def report(self, by: str | None = None) -> _Report:
        """The period's ``_Report`` cut ``by`` (made on first use)."""
        if by not in self._reports:
            self._reports[by] = _Report(
                self.session, self.cfg, now=self.now, period=self.period, by=by, source=self.source
            )
        return self._reports[by]

    def kpis(self, *, by: str | None = None, kpis: Iterable[str] | None = None) -> list[dict]:
        """``kpi_report``'s rows; ``kpis``: only these (names of ``KPI_ROWS``), and only the work
        they need (no percentiles without a time KPI, no return reasons without the return rate,
        no node sums without the bottleneck)."""
        wanted = set(KPI_ROWS) if kpis is None else set(kpis)
        unknown = sorted(wanted - set(KPI_ROWS))
        if unknown:
            raise ValueError(f"unknown KPI {unknown[0]!r}: use one of {', '.join(KPI_ROWS)}")
        rep = self.report(by)
        rep.check_facts()
        counters = {c for name in wanted for c in _KPI_COUNTERS.get(name, ())}
        sums, facts_times = rep.order_kpis(times=bool(wanted & set(_TIME_KPIS)), counters=counters)
        tables: dict[str, Callable[[], Mapping]] = {
            "order_confirmation_minutes": lambda: facts_times["conf"],
            "allocation_minutes": lambda: facts_times["alloc"],
            "pick_accuracy": lambda: (
                rep.line_pick_accuracy()
                if rep.cut.line
                else {g: (v["picked"], v["picked_right"]) for g, v in sums.items()}
            ),
            "on_time_shipping": lambda: {g: (v["shipped"], v["on_time"]) for g, v in sums.items()},
            "fill_rate": rep.fill_rate,
            "perfect_order": lambda: {g: (v["delivered"], v["perfect"]) for g, v in sums.items()},
            "cycle_time_hours": lambda: rep.time_in_node(3600.0) if by == "node" else facts_times["cycle"],
            # SLA attainment of a node is that of its own visits
            "sla_attainment": lambda: (
                {r["node"]: (r["decided"], r["within"]) for r in rep.node_stats()}
                if by == "node"
                else {g: (v["decided"], v["within"]) for g, v in sums.items()}
            ),
            "return_rate": lambda: (
                rep.line_returns()
                if rep.cut.line
                else {g: (v["units_shipped"], v["units_returned"]) for g, v in sums.items() if v["units_shipped"]}
            ),
        }
        found = {name: table() for name, table in tables.items() if name in wanted}
        reasons = rep.return_reasons() if "return_rate" in wanted else {}
        groups: set[str | None] = set(sums)
        for table in found.values():
            groups.update(table)
        ordered = _sort_groups(groups) if by else [ALL]
        targets, baseline = self.cfg.kpi_targets, self.cfg.kpi_baseline
        rows: list[dict] = []
        for name in KPIS:
            if name not in wanted:
                continue
            for g in ordered:
                if name in _TIME_KPIS:
                    n, p50, p90 = found[name].get(g, (0, None, None))
                    rows.append(kpi_row(name, g, p50, n, targets, p90, baseline=baseline))
                else:
                    n, good = found[name].get(g, (0, 0))
                    rows.append(kpi_row(name, g, good / n if n else None, n, targets, baseline=baseline))
                    if name == "return_rate":
                        rows[-1]["top_reasons"] = reasons.get(g, [])
        if "bottleneck" in wanted:
            rows.append(bottleneck_row(rep.bottleneck_stats()))
        return rows

    def sla(self) -> list[dict]:
        """``sla_report``'s rows."""
        rep, cfg = self.report(), self.cfg
        stats = {r["node"]: r for r in rep.node_stats()}
        times = rep.time_in_node()
        late = rep.lateness()
        worst = bottleneck(list(stats.values()))
        target = cfg.kpi_targets.get("sla_attainment")
        out = []
        for node in _node_order(cfg, [*stats, *(n for n in times if n is not None)]):
            r = stats.get(
                node,
                {
                    "decided": 0,
                    "within": 0,
                    "breaches": 0,
                    "auto_actions": 0,
                    "escalations": 0,
                    "reminders": 0,
                    "over_sla_seconds": 0.0,
                },
            )
            n, p50, p90 = times.get(node, (0, None, None))
            _late_n, late50, late90 = late.get(node, (0, None, None))
            spec = cfg.nodes.get(node)
            attainment = r["within"] / r["decided"] if r["decided"] else None
            out.append(
                {
                    "node": node,
                    "owner": spec.owner if spec else None,
                    "completed": r["decided"],
                    "within_sla": r["within"],
                    "attainment": _round(attainment, "rate"),
                    "target": target,
                    "met": None if attainment is None or target is None else attainment >= target,
                    "p50_seconds": _round(p50, "seconds"),
                    "p90_seconds": _round(p90, "seconds"),
                    "sla_seconds": spec.sla_seconds if spec else None,
                    "breaches": r["breaches"],
                    "late_p50_seconds": _round(late50, "seconds"),
                    "late_p90_seconds": _round(late90, "seconds"),
                    "escalations": r["escalations"],
                    "reminders": r["reminders"],
                    "auto_actions": r["auto_actions"],
                    "bottleneck": bool(worst and worst["node"] == node),
                }
            )
        return out

    def owners(self) -> list[dict]:
        """``breaches_by_owner``'s rows: most breaches first, then by owner, no owner last."""
        rep = self.report()
        counts: dict[str | None, int] = {}
        if rep.visits():  # the bottleneck's pass over node_fact, added up by owner
            for r in rep._node_owner_sums():
                counts[r.owner] = counts.get(r.owner, 0) + int(r.breaches or 0)
        else:
            join, cond = rep.in_period("t")
            sql = (
                f"SELECT t.owner AS owner, COUNT(*) AS breaches FROM task t{join} "
                f"WHERE t.status <> 'skipped' AND {breached_sql('t')} AND {cond} GROUP BY t.owner"
            )
            counts = {r.owner: int(r.breaches) for r in rep.rows(sql)}
        ranked = sorted((o for o, n in counts.items() if n), key=lambda o: (-counts[o], o is None, o or ""))
        return [{"owner": owner, "breaches": counts[owner]} for owner in ranked]

    def histogram(self, *, at_least: float | None = None) -> dict:
        """``cycle_time_histogram``'s buckets."""
        rep = self.report()
        cycle_index = _index_name(None, "cycle")
        if rep.visits():
            indexed = _have_indexes(self.session, [None])
            hint = f" INDEXED BY {cycle_index}" if rep.sql.sqlite and indexed else ""
            values = (
                f"SELECT '{ALL}' AS g, f.cycle AS x FROM order_fact f{hint} WHERE f.cycle IS NOT NULL AND {rep.frange}"
            )
            n = rep.rows(f"SELECT COUNT(f.cycle) AS n FROM order_fact f{hint} WHERE {rep.frange}")[0].n
            if not n:
                return {"step": None, "buckets": [], "overflow_from": None}
            if indexed:  # with the cut's cycle index: step to the rank, no sort
                (p95,) = rep.pick("order_fact", cycle_index, "cycle", "1 = 1", {}, int(n), (0.95,))
            else:
                p95 = rep.rows(rep.sql.percentiles(values, (0.95,)))[0].p95
        else:
            hours = rep.sql.seconds("o.created_at", "o.shipped_at") + " / 3600.0"
            values = (
                f"SELECT '{ALL}' AS g, {hours} AS x FROM orders o "
                f"WHERE o.shipped_at IS NOT NULL AND {rep.created_in('o')}"
            )
            stats = rep.rows(rep.sql.percentiles(values, (0.95,)))
            if not stats or stats[0].n == 0:
                return {"step": None, "buckets": [], "overflow_from": None}
            p95 = stats[0].p95
        span = max(float(p95 or 0.0), float(at_least or 0.0), 0.0)
        step = nice_step(span)
        last = max(int(span // step), 0) + 1  # buckets 0..last-1, then last = overflow
        sql = (
            f"SELECT b, COUNT(*) AS n FROM (SELECT CASE WHEN x < 0 THEN 0 WHEN x >= {last * step} THEN {last} "
            f"ELSE CAST(x / {step} AS INTEGER) END AS b FROM ({values}) v) q GROUP BY b ORDER BY b"
        )
        counts = {int(r.b): int(r.n) for r in rep.rows(sql)}
        buckets = [
            {"start": i * step, "end": (i + 1) * step if i < last else None, "count": counts.get(i, 0)}
            for i in range(last + 1)
        ]
        if buckets and buckets[-1]["count"] == 0:
            buckets.pop()
        return {"step": step, "buckets": buckets, "overflow_from": last * step}


#: The order_fact counters each rate KPI divides (``PeriodReports.kpis`` sums only those wanted)
_KPI_COUNTERS = {
    "on_time_shipping": ("shipped", "on_time"),
    "perfect_order": ("delivered", "perfect"),
    "pick_accuracy": ("picked", "picked_right"),
    "sla_attainment": ("decided", "within"),
    "return_rate": ("units_shipped", "units_returned"),
}


def kpi_report(
    session: Session,
    cfg: Config,
    *,
    now: datetime,
    period: Period = Period(),
    by: str | None = None,
    source: str = "auto",
    kpis: Iterable[str] | None = None,
) -> list[dict]:
    """``report kpi``: rows ``{kpi, group, baseline, actual, target, gap, count, p90, unit, met, node}``.

    KPI-major (every group of one KPI, then the next KPI), then one ``bottleneck`` row for the
    whole selection (group ``all``): ``node`` names it (null when nothing breached), ``actual``
    is its score (the mean of its share of breaches and of time over SLA), ``count`` its
    breaches, with ``breach_share`` and ``over_sla_share`` beside (``sla_report`` has its lateness).
    ``source``: where the node cut's figures come from (``SOURCES``). ``kpis``: only the rows of
    these (``KPI_ROWS``; None: all), computing only what they need; a group is listed when it
    has orders or a figure of one of them.
    """
    return PeriodReports(session, cfg, now=now, period=period, source=source).kpis(by=by, kpis=kpis)


def _node_order(cfg: Config, names: Iterable[str]) -> list[str]:
    known = list(cfg.nodes)
    return sorted(set(names), key=lambda n: (known.index(n) if n in known else len(known), n))


def sla_report(
    session: Session, cfg: Config, *, now: datetime, period: Period = Period(), source: str = "auto"
) -> list[dict]:
    """``report sla``: per node, completed (decided) visits, within SLA, attainment, p50/p90 time
    in node (seconds, wall clock) against the SLA, breaches, their lateness (p50/p90 business
    seconds past the deadline), escalations, reminders, auto actions, and whether it is the
    bottleneck. ``source``: visit facts or task history (``SOURCES``)."""
    return PeriodReports(session, cfg, now=now, period=period, source=source).sla()


# --- dashboard series ------------------------------------------------------------------------


def breaches_by_owner(
    session: Session, cfg: Config, *, now: datetime, period: Period = Period(), source: str = "auto"
) -> list[dict]:
    """Breached node visits per owner role (auto nodes without an owner show as null)."""
    return PeriodReports(session, cfg, now=now, period=period, source=source).owners()


def nice_step(span: float, buckets: int = 12) -> float:
    """A round bucket width (1, 2, 2.5, 5 x 10^k) that covers ``span`` in about ``buckets`` steps."""
    import math

    if span <= 0:
        return 1.0
    raw = span / buckets
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def cycle_time_histogram(
    session: Session,
    cfg: Config,
    *,
    now: datetime,
    period: Period = Period(),
    at_least: float | None = None,
    source: str = "auto",
) -> dict:
    """Shipped orders by cycle time (hours) in round buckets up to about the p95, or to ``at_least``
    hours when that is further (so a target's mark lands on the axis); the last bucket holds
    everything longer. ``{step, buckets: [{start, end, count}], overflow_from}``. From order_fact's
    cycle times (the same expression) when the facts are current, else from the orders."""
    return PeriodReports(session, cfg, now=now, period=period, source=source).histogram(at_least=at_least)
