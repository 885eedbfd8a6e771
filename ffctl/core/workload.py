"""``report workload``: per role or person, is work arriving faster than it is done? (SPEC 9.3)

A node visit (a ``task`` row; skipped visits never count) belongs to its owner role (auto nodes
without one: group None) and to the person who closed it (``completed_by``; the sweep's name for
automatic actions). Over the period ``[start, end)`` (``--from``/``--to``, times of the visits,
not of the orders):

- arrived: visits that entered in the period (a role's only: work reaches a role, not a person).
- completed: visits closed by a decision (completed, approved, rejected, automatic ones) in it.
- handling time: p50/p90 over the completed visits of the business time from entering to that
  decision, in the node's calendar, less the time holds stopped the clock (``paused_seconds``);
  counted in SQL by the reports' own business-time table (``kpi._BusinessTime``).
- per business day: arrived and completed over the period's business days, up to the command
  clock: the local dates on which a calendar of the group's nodes has working time (any date,
  for a node without a calendar). ``BusinessCalendar.between`` decides a date, so holidays and
  time zones are the SLA clocks' own.
- open now: visits running at the command clock (entered by then, not closed by then; held ones
  included: they still wait); the oldest of them, its order and node, and its age in business time.
- breached / breach share: by the one breach rule (``workflow.breached``: stopped after the
  deadline, or still running past it at the command clock). A role's share is over the visits
  that arrived in the period (the base ``sla replay`` uses); a person's over the visits they closed.

Every figure is a GROUP BY (or a window) in the database; Python receives one row per group and
node, and counts business days over the period's dates. When the report facts are current
(``kpi._Report.visits``) the figures read ``work_fact`` (``refresh`` keeps it: each visit's
handling time counted once, when it is written), the p50/p90 stepping to their ranks through its
(group, handling) index; otherwise the task history (the generic path the facts are tested against).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.clock import local_date, start_of_day

# the reports' SQL plumbing (dialect fragments, percentiles, the business-time calendar table): shared, not copied
from ffctl.core.kpi import (
    _STOPPED,
    DECIDED,
    STORE,
    History,
    Period,
    _BusinessTime,
    _equals,
    _in,
    _Report,
    _Sql,
    _stamp,
    empty_for_rebuild,
    write_changes,
)
from ffctl.core.models import UTCDateTime
from ffctl.core.workflow import breached_sql, stopped_sql
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config
    from ffctl.core.store import Store

BY = ("role", "person")
#: the grouping column of a visit per ``--by`` (task and work_fact name them alike)
_GROUP = {"role": "t.owner", "person": "t.completed_by"}
#: work_fact's index of each grouping's handling times (``_Report.picks`` steps through it)
_HANDLING_INDEX = {"role": "ix_work_fact_role", "person": "ix_work_fact_person"}


@dataclass
class _Group:
    arrived: int = 0
    breached_arrived: int = 0
    completed: int = 0
    breached_completed: int = 0
    first_entered: datetime | None = None
    nodes: set[str] = field(default_factory=set)
    handled: int = 0  # decided visits with a handling time (the facts' p50/p90 rank them)
    handling: tuple[int, float | None, float | None] = (0, None, None)
    open_now: int | None = None
    oldest: Any = None


def workload_report(
    session: Session,
    cfg: Config,
    *,
    now: datetime,
    period: Period = Period(),
    by: str = "role",
    source: str = "auto",
    handling: bool = True,
) -> list[dict]:
    """One row per role (or person): ``{group, arrived, completed, business_days, arrived_per_day,
    completed_per_day, handling_p50_seconds, handling_p90_seconds, open_now, oldest_open_order,
    oldest_open_node, oldest_open_since, oldest_open_seconds, breached, breach_share}``; figures a
    person has no share of (arrivals, open visits) are None. Groups sorted by name, None last.
    ``source``: as the other reports' (``kpi.SOURCES``): the facts when current, or the task history.
    ``handling`` False: the handling-time percentiles are not computed (None; the dashboard does not
    show them, and their rank steps are most of the report's time at a million visits)."""
    if by not in BY:
        raise ValueError(_("unknown grouping {by!r}: use one of {names}").format(by=by, names=", ".join(BY)))
    query = _Query(session, cfg, now, period, source)
    g = _GROUP[by]
    groups: dict[str | None, _Group] = {}

    def group(key: str | None) -> _Group:
        return groups.setdefault(key, _Group())

    def tally(kind: str) -> Iterator[tuple[_Group, int, int]]:
        """Per group and node, the visits ``kind`` counts: (the group, visits, breached visits)."""
        for r in query.tally(kind, by):
            row = group(r.g)
            row.nodes.add(r.node)
            row.first_entered = min(filter(None, (row.first_entered, r.first)), default=None)
            if kind != "arrived":
                row.handled += int(r.h or 0)
            yield row, int(r.n), int(r.breached or 0)

    if by == "role":
        for row, n, breached in tally("arrived"):
            row.arrived += n
            row.breached_arrived += breached
    for row, n, breached in tally(by):
        row.completed += n
        row.breached_completed += breached
    first = min((x.first_entered for x in groups.values() if x.first_entered), default=None)
    if groups and query.facts:
        first = None if period.start else query.first_entered(by)  # only the period's start needs it
        keys = [key for key in groups if groups[key].handled] if handling else []
        for key, (p50, p90) in zip(keys, query.handling(by, [(key, groups[key].handled) for key in keys])):
            groups[key].handling = (groups[key].handled, p50, p90)
    elif groups and handling:
        visits = (
            f"SELECT {g} AS g, t.node AS node, t.entered_at AS a, t.completed_at AS b, "
            f"t.paused_seconds AS held FROM task t WHERE {query.decided}"
        )
        business = _BusinessTime(query.sql, cfg).values(visits, less="held")
        for r in query.rows(query.sql.percentiles(business, (0.5, 0.9))):
            group(r.g).handling = (int(r.n), r.p50, r.p90)
    if by == "role":
        for key in groups:
            groups[key].open_now = 0
        for r in query.open_now(g):
            row = group(r.g)
            row.open_now, row.oldest = int(r.n), r
            row.nodes.add(r.node)
    start = period.start or first
    end = min(period.end or now, now)
    return [
        _row(key, groups[key], cfg, start, end, now, by) for key in sorted(groups, key=lambda k: (k is None, k or ""))
    ]


def _row(
    key: str | None, row: _Group, cfg: Config, start: datetime | None, end: datetime, now: datetime, by: str
) -> dict:
    days = business_days([_clock(cfg, n) for n in sorted(row.nodes)], start, end, cfg.timezone) if start else 0
    _n, p50, p90 = row.handling
    oldest = row.oldest
    base, breached = (row.arrived, row.breached_arrived) if by == "role" else (row.completed, row.breached_completed)
    return {
        "group": key,
        "arrived": row.arrived if by == "role" else None,
        "completed": row.completed,
        "business_days": days,
        "arrived_per_day": round(row.arrived / days, 3) if days and by == "role" else None,
        "completed_per_day": round(row.completed / days, 3) if days else None,
        "handling_p50_seconds": None if p50 is None else round(float(p50), 3),
        "handling_p90_seconds": None if p90 is None else round(float(p90), 3),
        "open_now": row.open_now,
        "oldest_open_order": oldest.order_id if oldest else None,
        "oldest_open_node": oldest.node if oldest else None,
        "oldest_open_since": oldest.entered_at if oldest else None,
        "oldest_open_seconds": round(_clock(cfg, oldest.node).between(oldest.entered_at, now)) if oldest else None,
        "breached": breached,
        "breach_share": round(breached / base, 6) if base else None,
    }


def _clock(cfg: Config, node: str):
    """The node's SLA clock; a node the config no longer has counts wall-clock time, as in the reports."""
    from ffctl.core.calendar import WALL_CLOCK

    return cfg.calendar(node) if node in cfg.nodes else WALL_CLOCK


def business_days(clocks: Iterable, start: datetime, end: datetime, tz: str) -> int:
    """How many local dates in [start, end) have working time in at least one of ``clocks`` (each
    date in its own calendar's time zone; a wall clock, in ``tz``, has working time every day)."""
    dates: set[date] = set()
    for clock in set(clocks):
        zone_name = getattr(clock, "timezone", None) or tz
        day = local_date(start, zone_name)
        last = local_date(end - timedelta(microseconds=1), zone_name)
        while day <= last:
            if day not in dates:
                lo = max(start, start_of_day(day, zone_name))
                hi = min(end, start_of_day(day + timedelta(days=1), zone_name))
                if clock.between(lo, hi) > 0:
                    dates.add(day)
            day += timedelta(days=1)
    return len(dates)


class _Query:
    """The period as SQL conditions on a visit's times, and statements with UTC times bound; the
    visits read from ``work_fact`` (``facts``) or the task history, both aliased ``t``."""

    def __init__(self, session: Session, cfg: Config, now: datetime, period: Period, source: str) -> None:
        self.s = session
        # the reports' rule for when the facts are current (and their session settings: no JIT, work_mem)
        self.report = _Report(session, cfg, now=now, period=Period(), by=None, source=source)
        self.sql: _Sql = self.report.sql
        self.facts = self.report.visits()
        self.params: dict[str, Any] = {"now": now, "start": period.start, "end": period.end}
        self.period = period
        self.hint = (lambda name: f" INDEXED BY {name}") if self.sql.sqlite else (lambda name: "")
        # the one breach rule, over the facts' copy of when the clock stopped
        self.breached = breached_sql("t", stop="t.stopped_at") if self.facts else breached_sql("t")

    def within(self, column: str, *, literal: bool = False) -> str:
        """The period on ``column``; ``literal``: its bounds written in (for ``_Report.picks``)."""
        start, end = (
            f"'{_stamp(b)}'" if literal and b else f":{k}"
            for k, b in (("start", self.period.start), ("end", self.period.end))
        )
        bounds = [f"{column} >= {start}" if self.period.start else "", f"{column} < {end}" if self.period.end else ""]
        return " AND ".join(b for b in bounds if b) or "1 = 1"

    @property
    def decided(self) -> str:
        """The task history's visits closed by a decision in the period."""
        return f"t.outcome IN {_in(DECIDED)} AND {self.within('t.completed_at')}"

    def tally(self, kind: str, by: str) -> Sequence[sa.Row]:
        """Per group and node: visits (n), breached ones, the first entry (task history only) and
        how many have a handling time (h, facts only); ``kind``: "arrived" (a role's arrivals in
        the period) or the grouping of the decisions in it ("role", "person")."""
        g = _GROUP[by]
        if not self.facts:
            where = f"t.status <> 'skipped' AND {self.within('t.entered_at')}" if kind == "arrived" else self.decided
            return self.rows(
                f"SELECT {g} AS g, t.node AS node, COUNT(*) AS n, SUM(CASE WHEN {self.breached} THEN 1 ELSE 0 END) "
                f"AS breached, MIN(t.entered_at) AS first, 0 AS h FROM task t WHERE {where} GROUP BY {g}, t.node",
                first=True,
            )
        return self.rows(_tally_sql(self.sql, kind, g, self.breached, *self._days()))

    def _days(self) -> tuple[int | None, int | None, list[tuple[str | None, str | None]]]:
        """The period as (first, end) whole UTC days work_day counts, and the time ranges at its
        edges work_fact's rows count (bound names; None: open); all rows when no day is whole."""
        start, end = self.period.start, self.period.end
        d0 = d1 = None
        if start is not None:  # the first day that starts at or after it
            since = start - _EPOCH
            d0 = since.days + (since != timedelta(days=since.days))
        if end is not None:
            d1 = (end - _EPOCH).days
        if d0 is not None and d1 is not None and d0 >= d1:
            return d0, d0, [("start", "end")]
        edges: list[tuple[str | None, str | None]] = []
        if d0 is not None:
            self.params["lo"] = _EPOCH + timedelta(days=d0)
            edges.append(("start", "lo"))
        if d1 is not None:
            self.params["hi"] = _EPOCH + timedelta(days=d1)
            edges.append(("hi", "end"))
        return d0, d1, edges

    def first_entered(self, by: str) -> datetime | None:
        """When the first visit counted entered (the period's start when it has none): arrivals
        entered up to the end, visits decided up to it (a person's)."""
        arrived = self.hint("ix_work_fact_arrived")
        firsts = [  # the earliest by the entry index (a MIN over the decision index read every decision)
            f"SELECT t.entered_at FROM work_fact t{arrived} WHERE t.done_at IS NOT NULL "
            f"AND {self.within('t.done_at')} ORDER BY t.entered_at LIMIT 1"
        ]
        if by == "role":
            firsts.append(
                f"SELECT t.entered_at FROM work_fact t{arrived} WHERE {self.within('t.entered_at')} "
                "ORDER BY t.entered_at LIMIT 1"
            )
        found = [UTCDateTime().process_result_value(r[0], None) for sql in firsts for r in self.rows(sql)]
        return min(filter(None, found), default=None)

    def handling(self, by: str, groups: list[tuple[str | None, int]]) -> list[list[float]]:
        """Per (group, n): the exact p50 and p90 of the handling times of its ``n`` visits decided in
        the period, stepped to through work_fact's (group, handling, done_at) index."""
        column = _GROUP[by].replace("t.", "x.")
        period = self.within("x.done_at", literal=True)
        picks = [(f"{column} IS NULL", {}, n) if key is None else _equals(column, key, n) for key, n in groups]
        return self.report.picks(
            "work_fact", _HANDLING_INDEX[by], "handling", [(f"{w} AND {period}", extra, n) for w, extra, n in picks]
        )

    def rows(self, sql: str, *, first: bool = False) -> Sequence[sa.Row]:
        stmt = sa.text(sql)
        binds = [sa.bindparam(k, type_=UTCDateTime) for k in _TIMES if f":{k}" in sql]
        columns: Mapping[str, Any] = {"first": UTCDateTime} if first else {}
        query = stmt.bindparams(*binds).columns(**columns) if columns else stmt.bindparams(*binds)
        return self.s.execute(query, {k: v for k, v in self.params.items() if f":{k}" in sql}).all()

    def open_now(self, g: str) -> Sequence[sa.Row]:
        """Per group: visits running at the command clock, and the one that entered first."""
        if self.facts:  # the few open (or closed after the clock) visits: two reads of ix_work_fact_open
            visits = (
                f"(SELECT * FROM work_fact w{self.hint('ix_work_fact_open')} WHERE w.completed_at IS NULL UNION ALL "
                f"SELECT * FROM work_fact w{self.hint('ix_work_fact_open')} WHERE w.completed_at > :now) t WHERE 1 = 1"
            )
            key = "t.task_id"
        else:
            visits = "task t WHERE t.status <> 'skipped' AND (t.completed_at IS NULL OR t.completed_at > :now)"
            key = "t.id"
        sql = (
            "SELECT g, node, order_id, entered_at, n FROM ("
            f"SELECT {g} AS g, t.node AS node, t.order_id AS order_id, t.entered_at AS entered_at, "
            f"COUNT(*) OVER (PARTITION BY {g}) AS n, "
            f"ROW_NUMBER() OVER (PARTITION BY {g} ORDER BY t.entered_at, {key}) AS rn "
            f"FROM {visits} AND t.entered_at <= :now) q WHERE rn = 1"
        )
        stmt = sa.text(sql).bindparams(sa.bindparam("now", type_=UTCDateTime)).columns(entered_at=UTCDateTime)
        return self.s.execute(stmt, {"now": self.params["now"]}).all()


# --- the facts ---------------------------------------------------------------------------------

_TIMES = ("now", "start", "end", "lo", "hi")  # the statements' time parameters
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: work_day's rows: (kind, the work_fact column of the group, of the day's time, only decided visits)
_KINDS = {
    "arrived": ("owner", "entered_at", False),
    "role": ("owner", "done_at", True),
    "person": ("completed_by", "done_at", True),
}


def _day(sql: _Sql, column: str) -> str:
    """The UTC day (days since 1970) of a stored time, from its date alone: exact at midnight."""
    if sql.sqlite:
        return f"CAST(julianday(substr({column}, 1, 10)) - 2440587.5 AS INTEGER)"
    return f"(CAST({column} AS DATE) - DATE '1970-01-01')"


def _tally_sql(
    sql: _Sql,
    kind: str,
    g: str,
    breached: str,
    d0: int | None,
    d1: int | None,
    edges: list[tuple[str | None, str | None]],
) -> str:
    """Per group and node (g, node, n, breached, first, h): work_day's whole days [d0, d1) (None:
    open) and work_fact's rows in the edge ranges (bound parameter names) of the period. work_day
    counts the breaches of stopped visits only: the running visits of those days (few: open now)
    are counted by the breach rule at the report's clock."""
    _g, column, decided = _KINDS[kind]
    hint = (lambda name: f" INDEXED BY {name}") if sql.sqlite else (lambda name: "")
    index = "ix_work_fact_done" if decided else "ix_work_fact_arrived"

    def between(col: str, lo: str | None, hi: str | None) -> str:
        return " AND ".join([f"{col} >= :{lo}" if lo else "1 = 1", f"{col} < :{hi}" if hi else "1 = 1"])

    parts = []
    if d0 is None or d1 is None or d0 < d1:
        days = " AND ".join(
            [f"d.day >= {d0}" if d0 is not None else "1 = 1", f"d.day < {d1}" if d1 is not None else "1 = 1"]
        )
        parts.append(
            "SELECT CASE WHEN d.null_g = 1 THEN NULL ELSE d.g END AS g, d.node AS node, d.n AS n, d.breached AS breached, "
            f"d.handled AS h FROM work_day d WHERE d.kind = '{kind}' AND {days}"
        )
        if not decided:  # decided visits have stopped: work_day has their breaches
            inner = between(f"t.{column}", "lo" if d0 is not None else None, "hi" if d1 is not None else None)
            parts.append(
                f"SELECT {g} AS g, t.node AS node, 0 AS n, 1 AS breached, 0 AS h FROM work_fact t"
                f"{hint('ix_work_fact_open')} WHERE t.completed_at IS NULL AND t.stopped_at IS NULL AND {inner} "
                f"AND {breached}"
            )
    for lo, hi in edges:
        parts.append(
            f"SELECT {g} AS g, t.node AS node, COUNT(*) AS n, SUM(CASE WHEN {breached} THEN 1 ELSE 0 END) AS breached, "
            f"COUNT(t.handling) AS h FROM work_fact t{hint(index)} WHERE "
            f"{'t.done_at IS NOT NULL AND ' if decided else ''}{between(f't.{column}', lo, hi)} GROUP BY {g}, t.node"
        )
    return (
        "SELECT g, node, SUM(n) AS n, SUM(breached) AS breached, NULL AS first, SUM(h) AS h FROM ("
        + " UNION ALL ".join(parts)
        + ") q GROUP BY g, node HAVING SUM(n) > 0"
    )


def _day_sql(sql: _Sql, kind: str, rows: str, sign: int) -> str:
    """Add (``sign`` 1) or take away (-1) the work_fact rows of table ``rows`` (work_fact itself, or
    the rows a refresh wrote or deleted) from work_day's counts of ``kind`` (``_KINDS``)."""
    g, column, decided = _KINDS[kind]
    day = _day(sql, f"t.{column}")
    stopped = breached_sql("t", stop="t.stopped_at", now=_STOPPED)  # a running visit's breach waits for the clock
    return (
        "INSERT INTO work_day (kind, null_g, g, node, day, n, breached, handled) "
        f"SELECT '{kind}', CASE WHEN t.{g} IS NULL THEN 1 ELSE 0 END, COALESCE(t.{g}, ''), t.node, {day}, "
        f"{sign} * COUNT(*), {sign} * SUM(CASE WHEN {stopped} THEN 1 ELSE 0 END), {sign} * COUNT(t.handling) "
        f"FROM {rows} t WHERE {'t.done_at IS NOT NULL' if decided else '1 = 1'} "
        f"GROUP BY t.{g}, t.node, {day} "
        "ON CONFLICT (kind, null_g, g, node, day) DO UPDATE SET n = work_day.n + excluded.n, "
        "breached = work_day.breached + excluded.breached, handled = work_day.handled + excluded.handled"
    )


#: work_fact's indexes a rebuild drops and builds after its inserts (a sorted build of each beats
#: millions of inserts into it)
_INDEXES = (
    "ix_work_fact_arrived",
    "ix_work_fact_done",
    "ix_work_fact_role",
    "ix_work_fact_person",
    "ix_work_fact_open",
)
_VISITS = "work_visits"


def refresh(s: Session, sql: _Sql, cfg: Config, *, dirty: str | None, h: History = STORE) -> None:
    """Rewrite work_fact: every visit's (``dirty`` None: the facts' rebuild), or the visits of the
    orders in the table ``dirty`` (the incremental refresh, reading history ``h``: their copies),
    in the refresh's transaction. The
    handling time is the report's own: ``_BusinessTime`` over entering -> decision, less holds."""
    from ffctl.core.models import WorkFact

    indexes = [ix for ix in WorkFact.__table__.indexes if ix.name in _INDEXES]
    if dirty is None:
        indexes = empty_for_rebuild(s, sql, ["work_fact", "work_day"], indexes)
    else:
        indexes = []
    decided = f"t.outcome IN {_in(DECIDED)}"
    visits = (
        f"SELECT t.id AS g, t.order_id, t.node AS node, t.owner, t.completed_by, t.entered_at, t.completed_at, "
        f"CASE WHEN {decided} THEN t.completed_at END AS done_at, {stopped_sql('t')} AS stopped_at, t.deadline, "
        f"t.entered_at AS a, CASE WHEN {decided} THEN t.completed_at END AS b, t.paused_seconds AS held "
        f"FROM {h('task')} t WHERE t.status <> 'skipped'"
    )
    staged = sql.sqlite and dirty is not None
    if staged:
        # as flow.refresh: written down first, SQLite indexes the calendar's days for a few orders' visits
        s.execute(sa.text(f"CREATE TEMP TABLE {_VISITS} AS {visits}"))
        visits = f"SELECT * FROM temp.{_VISITS}"
    keep = (
        "order_id",
        "node",
        "owner",
        "completed_by",
        "entered_at",
        "completed_at",
        "done_at",
        "stopped_at",
        "deadline",
    )
    business = _BusinessTime(sql, cfg).values(visits, less="held", keep=keep)
    insert = (
        f"INSERT INTO work_fact (task_id, {', '.join(keep)}, handling) "
        f"SELECT w.g, {', '.join(f'w.{c}' for c in keep)}, CASE WHEN w.done_at IS NOT NULL THEN w.x END "
        f"FROM ({business}) w"
    )

    def days(gone: str, new: str) -> None:  # work_day's counts follow the rows written
        for kind in _KINDS:
            s.execute(sa.text(_day_sql(sql, kind, gone, -1)))
            s.execute(sa.text(_day_sql(sql, kind, new, 1)))

    if dirty is None:
        s.execute(sa.text(insert))
        for kind in _KINDS:
            s.execute(sa.text(_day_sql(sql, kind, "work_fact", 1)))
    else:  # only the rows that differ (dirty is kpi's fact_dirty)
        write_changes(s, sql, "work_fact", [insert], on_change=days)
    if staged:
        s.execute(sa.text(f"DROP TABLE temp.{_VISITS}"))
    for ix in indexes:
        ix.create(s.connection())
    if dirty is None and not sql.sqlite:
        s.execute(sa.text("ANALYZE work_fact"))
        s.execute(sa.text("ANALYZE work_day"))


def vacuum(store: Store) -> None:
    """After a rebuild on PostgreSQL: set the visibility map, so the p50/p90 steps read the index
    alone (a role that does not own the table gets a warning, not an error)."""
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) work_fact, work_day")
