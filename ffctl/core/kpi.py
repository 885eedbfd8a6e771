"""Fulfillment KPIs against targets (SPEC §7), computed in SQL on both backends.

Every number is an aggregate the database computes (GROUP BY, window functions, and
``percentile_cont`` on PostgreSQL or a ROW_NUMBER/COUNT rank pick on SQLite); Python only
receives one row per group (or per node) and lays the rows out. Nothing here loads orders,
tasks or lines into Python. A report first writes one row of facts per order of its period
into a temporary table (reading task and pick_line once), then every KPI is one GROUP BY or
one percentile query over those rows.

Definitions (the history these read is written by the workflow, imports and ``ship``/``deliver``):

- order_confirmation_minutes: created_at -> first completion (completed or auto_approved) of the
  order's first node that was not skipped. That is the order's earliest completion of any
  node, since no later node can be entered before the first one is passed. Median is ``actual``.
- allocation_minutes: that first completion -> first completion of a node whose config says
  ``auto = "allocate"``. Median.
- pick_accuracy: pick_line rows whose (order_id, line_no) order line has the same SKU and qty
  / pick_line rows.
- on_time_shipping: shipped orders whose shipped date in ``[defaults] timezone`` is on or before
  promised_ship_date / shipped orders (an order without a promised date cannot be on time).
- perfect_order: delivered orders that shipped on time, in full with the right SKUs (every order
  line picked with its SKU and qty, nothing else picked; an order without pick lines counts as
  picked as ordered) and had no delivery issue / delivered orders.
- cycle_time_hours: created_at -> shipped_at, median; with ``--by node`` it is the time spent in
  each node per visit (entered -> left).
- sla_attainment: node tasks closed by a decision (completed, auto_approved, rejected,
  auto_rejected) with completed_at <= deadline / those tasks. Skipped and cancelled visits and
  open tasks do not count.

Targets and gaps: ``gap = actual - target`` for every KPI (plain arithmetic, so its sign reads
differently per KPI: for the time KPIs lower is better and a positive gap misses; for rates
higher is better and a negative gap misses). ``met`` says whether the target is met without
knowing the direction.

The bottleneck is the node with the largest mean of its share of breaches and its share of
time over SLA (wall-clock time past the deadline, up to completion or ``now`` for open tasks),
over every node visit of the period's orders (one for the report, whatever the cut).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.clock import parse_date, parse_time, start_of_day, zone
from ffctl.core.models import UTCDateTime

#: KPI name -> (unit, higher_is_better). The order is the report's order.
KPIS: dict[str, tuple[str, bool]] = {
    "order_confirmation_minutes": ("minutes", False),
    "allocation_minutes": ("minutes", False),
    "pick_accuracy": ("rate", True),
    "on_time_shipping": ("rate", True),
    "perfect_order": ("rate", True),
    "cycle_time_hours": ("hours", False),
    "sla_attainment": ("rate", True),
}
DIMENSIONS = ("product", "category", "region", "channel", "team", "customer", "node", "week")
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
            raise ValueError(f"{option} {text!r}: {exc}") from None

    period = Period(bound(start, "--from", False), bound(end, "--to", True))
    if period.start and period.end and period.end <= period.start:
        raise ValueError(f"--to {end!r} is not after --from {start!r}")
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
        return int(t.astimezone(zi).utcoffset().total_seconds() // 60)

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
        self.sqlite = session.get_bind().dialect.name == "sqlite"
        self.tz = tz
        self._offsets: list[tuple[datetime | None, int]] | None = None
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
            for pragma in ("cache_size = -131072", "mmap_size = 1073741824"):
                self._session.execute(sa.text(f"PRAGMA {pragma}"))
        else:
            self._session.execute(sa.text("SET LOCAL jit = off"))
            self._session.execute(sa.text("SET LOCAL work_mem = '128MB'"))

    def seconds(self, a: str, b: str) -> str:
        """Seconds from a to b."""
        if self.sqlite:
            return f"((julianday({b}) - julianday({a})) * 86400.0)"
        return f"EXTRACT(EPOCH FROM ({b} - {a}))"

    def _sqlite_shift(self, col: str) -> str:
        """A SQLite datetime modifier moving UTC ``col`` to local time (zone offsets as a CASE)."""
        if self._offsets is None:
            lo, hi = self._session.execute(sa.text("SELECT MIN(created_at), MAX(created_at) FROM orders")).one()
            lo = UTCDateTime().process_result_value(lo, None) or self._now
            hi = UTCDateTime().process_result_value(hi, None) or self._now
            self._offsets = utc_offsets(self.tz, min(lo, self._now), max(hi, self._now) + timedelta(days=400))
        first = self._offsets[0][1]
        if len(self._offsets) == 1:
            return f"'{first:+d} minutes'"
        whens = []
        for (_, minutes), (until, _) in zip(self._offsets, self._offsets[1:]):
            whens.append(f"WHEN {col} < '{_stamp(until)}' THEN '{minutes:+d} minutes'")
        return f"(CASE {' '.join(whens)} ELSE '{self._offsets[-1][1]:+d} minutes' END)"

    def local_date(self, col: str) -> str:
        if self.sqlite:
            return f"date({col}, {self._sqlite_shift(col)})"
        return f"CAST(({col} AT TIME ZONE 'UTC') AT TIME ZONE :tz AS DATE)"

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


# --- cuts ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Cut:
    """How a dimension groups orders.

    Single-valued dimensions are an expression over ``orders o`` (and ``customer c``); product,
    category and node can put one order in several groups, so they are a mapping subquery of
    (order_id, g) rows. ``line`` cuts line-level facts by the line's own SKU or category.
    """

    expr: str | None = f"'{ALL}'"
    customer: bool = False  # the expression needs ``LEFT JOIN customer c``
    mapping: str | None = None
    line: str | None = None


def _cut(by: str | None, sql: _Sql) -> _Cut:
    if by is None:
        return _Cut()
    single = {
        "region": ("COALESCE(o.region, c.region)", True),
        "channel": ("o.channel", False),
        "team": ("o.sales_rep", False),
        "customer": ("o.customer", False),
    }
    if by in single:
        expr, customer = single[by]
        return _Cut(expr=expr, customer=customer)
    if by == "week":
        return _Cut(expr=sql.local_week("o.created_at"))
    if by == "product":
        return _Cut(expr=None, mapping="SELECT order_id, sku AS g FROM order_line GROUP BY order_id, sku", line="sku")
    if by == "category":
        return _Cut(expr=None, line="category", mapping=(
            "SELECT l.order_id, p.category AS g FROM order_line l LEFT JOIN product p ON p.sku = l.sku "
            "GROUP BY l.order_id, p.category"))
    if by == "node":
        return _Cut(expr=None, mapping="SELECT order_id, node AS g FROM task WHERE status <> 'skipped' GROUP BY order_id, node")
    raise ValueError(f"unknown dimension {by!r}: use one of {', '.join(DIMENSIONS)}")


# --- the report ------------------------------------------------------------------------------

FACTS = "kpi_fact"


class _Report:
    """One report over the orders of a period.

    ``build_facts`` writes one row per order (a temporary table, dropped at the end of the
    transaction) with everything the order-level KPIs need; every KPI is then a GROUP BY or a
    percentile over those rows, so the big tables (task, pick_line) are read once per report.
    """

    def __init__(self, session: Session, cfg, *, now: datetime, period: Period, by: str | None) -> None:
        self.s, self.cfg, self.now, self.period, self.by = session, cfg, now, period, by
        self.sql = _Sql(session, cfg.timezone, now)
        self.sql.tune()
        self.cut = _cut(by, self.sql)
        self.params: dict[str, Any] = {"now": now, "tz": cfg.timezone}
        conds = []
        if period.start is not None:
            conds.append("o.created_at >= :start")
            self.params["start"] = period.start
        if period.end is not None:
            conds.append("o.created_at < :end")
            self.params["end"] = period.end
        self.ranged = bool(conds)
        self.range = " AND ".join(conds) or "1 = 1"
        self.customer_join = " LEFT JOIN customer c ON c.customer = o.customer" if self.cut.customer else ""
        self.facts_built = False

    # -- plumbing --
    def _statement(self, sql: str):
        stmt = sa.text(sql)
        binds = [sa.bindparam(k, type_=UTCDateTime) for k in ("now", "start", "end") if f":{k}" in sql]
        if binds:
            stmt = stmt.bindparams(*binds)
        return stmt, {k: v for k, v in self.params.items() if f":{k}" in sql}

    def rows(self, sql: str) -> list:
        stmt, params = self._statement(sql)
        return self.s.execute(stmt, params).all()

    def execute(self, sql: str) -> None:
        stmt, params = self._statement(sql)
        self.s.execute(stmt, params)

    def in_period(self, alias: str) -> tuple[str, str]:
        """(join, condition) restricting rows of ``alias`` (with an order_id) to the period's orders."""
        if not self.ranged:
            return "", "1 = 1"
        return f" JOIN orders o ON o.order_id = {alias}.order_id", self.range

    @staticmethod
    def _key(g: Any) -> str | None:
        if g is None:
            return None
        if isinstance(g, (date, datetime)):
            return g.isoformat()[:10]
        return str(g)

    def percentiles(self, values: str) -> dict[str | None, tuple[int, float | None, float | None]]:
        return {self._key(r.g): (int(r.n), r.p50, r.p90) for r in self.rows(self.sql.percentiles(values, (0.5, 0.9)))}

    # -- the per-order facts --
    def build_facts(self) -> None:
        """One row per order of the period: its group (single-valued cuts) and its KPI facts."""
        alloc_nodes = [name for name, spec in self.cfg.nodes.items() if spec.auto == "allocate"]
        is_alloc = f"t.node IN {_in(alloc_nodes)}" if alloc_nodes else "1 = 0"
        t_join, t_cond = self.in_period("t")
        per_order_tasks = (
            # an order's first completed visit is at its first node: no later node can be entered before it
            f"SELECT t.order_id, MIN(CASE WHEN t.outcome IN {_in(PASSED)} THEN t.completed_at END) AS first_done, "
            f"MIN(CASE WHEN t.outcome IN {_in(PASSED)} AND {is_alloc} THEN t.completed_at END) AS alloc_done, "
            f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} THEN 1 ELSE 0 END) AS decided, "
            f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} AND (t.deadline IS NULL OR t.completed_at <= t.deadline) "
            f"THEN 1 ELSE 0 END) AS within FROM task t{t_join} WHERE {t_cond} GROUP BY t.order_id"
        )
        p_join, p_cond = self.in_period("pl")
        per_order_picks = (
            "SELECT pl.order_id, COUNT(*) AS picked, "
            "SUM(CASE WHEN ol.sku = pl.sku AND ol.qty = pl.qty THEN 1 ELSE 0 END) AS picked_right "
            f"FROM pick_line pl{p_join} LEFT JOIN order_line ol ON ol.order_id = pl.order_id AND ol.line_no = pl.line_no "
            f"WHERE {p_cond} GROUP BY pl.order_id"
        )
        on_time = f"(o.promised_ship_date IS NOT NULL AND {self.sql.local_date('o.shipped_at')} <= o.promised_ship_date)"
        delivered = "(o.delivered_at IS NOT NULL OR d.order_id IS NOT NULL)"
        # in full with the right SKUs: every order line picked as ordered and nothing else picked
        # (pick lines are unique per order line); an order without pick lines was picked as ordered
        in_full = ("(pa.picked IS NULL OR (pa.picked_right = pa.picked AND pa.picked_right = "
                   "(SELECT COUNT(*) FROM order_line l WHERE l.order_id = o.order_id)))")
        self.drop_facts()
        suffix = "" if self.sql.sqlite else " ON COMMIT DROP"
        self.execute(
            f"CREATE TEMP TABLE {FACTS}{suffix} AS SELECT o.order_id AS order_id, {self.cut.expr or 'NULL'} AS g, "
            f"{self.sql.seconds('o.created_at', 'ta.first_done')} / 60.0 AS conf, "
            f"{self.sql.seconds('ta.first_done', 'ta.alloc_done')} / 60.0 AS alloc, "
            f"{self.sql.seconds('o.created_at', 'o.shipped_at')} / 3600.0 AS cycle, "
            "CASE WHEN o.shipped_at IS NOT NULL THEN 1 ELSE 0 END AS shipped, "
            f"CASE WHEN o.shipped_at IS NOT NULL AND {on_time} THEN 1 ELSE 0 END AS on_time, "
            f"CASE WHEN {delivered} THEN 1 ELSE 0 END AS delivered, "
            f"CASE WHEN {delivered} AND o.shipped_at IS NOT NULL AND {on_time} "
            f"AND COALESCE(o.delivery_issue, d.issue) IS NULL AND {in_full} THEN 1 ELSE 0 END AS perfect, "
            "COALESCE(pa.picked, 0) AS picked, COALESCE(pa.picked_right, 0) AS picked_right, "
            "COALESCE(ta.decided, 0) AS decided, COALESCE(ta.within, 0) AS within "
            f"FROM orders o{self.customer_join} LEFT JOIN ({per_order_tasks}) ta ON ta.order_id = o.order_id "
            f"LEFT JOIN ({per_order_picks}) pa ON pa.order_id = o.order_id "
            f"LEFT JOIN delivery d ON d.order_id = o.order_id WHERE {self.range}"
        )

    def drop_facts(self) -> None:
        self.execute(f"DROP TABLE IF EXISTS {'temp' if self.sql.sqlite else 'pg_temp'}.{FACTS}")

    def fact_percentiles(self, column: str) -> dict[str | None, tuple[int, float | None, float | None]]:
        """p50/p90 of a fact per group. On SQLite an index on (g, fact) first lets the window
        functions read each group in order instead of sorting the whole table again."""
        if self.sql.sqlite and not self.cut.mapping:
            self.execute(f"CREATE INDEX IF NOT EXISTS temp.{FACTS}_{column} ON {FACTS} (g, {column})")
        return self.percentiles(self.facts(column))

    def facts(self, column: str) -> str:
        """Rows (g, x) of the facts: x is ``column``; g the cut's group (one row per group of an order)."""
        if self.cut.mapping:
            return (f"SELECT gx.g AS g, f.{column} AS x FROM {FACTS} f "
                    f"JOIN ({self.cut.mapping}) gx ON gx.order_id = f.order_id")
        return f"SELECT f.g AS g, f.{column} AS x FROM {FACTS} f"

    def sums(self) -> dict[str | None, dict[str, int]]:
        """Per group: orders and the sums of the facts' counters."""
        counters = ("shipped", "on_time", "delivered", "perfect", "picked", "picked_right", "decided", "within")
        if self.cut.mapping:
            source = f"{FACTS} f JOIN ({self.cut.mapping}) gx ON gx.order_id = f.order_id"
            g = "gx.g"
        else:
            source, g = f"{FACTS} f", "f.g"
        cols = ", ".join(f"SUM(f.{c}) AS {c}" for c in counters)
        rows = self.rows(f"SELECT {g} AS g, COUNT(*) AS orders, {cols} FROM {source} GROUP BY {g}")
        return {self._key(r.g): {c: int(getattr(r, c) or 0) for c in ("orders", *counters)} for r in rows}

    # -- facts that are not per order --
    def line_pick_accuracy(self) -> dict[str | None, tuple[int, int]]:
        """Pick accuracy cut by each picked line's own SKU or category."""
        g = "COALESCE(ol.sku, pl.sku)" if self.cut.line == "sku" else "lp.category"
        extra = "" if self.cut.line == "sku" else " LEFT JOIN product lp ON lp.sku = COALESCE(ol.sku, pl.sku)"
        join, cond = self.in_period("pl")
        sql = (
            f"SELECT {g} AS g, COUNT(*) AS n, SUM(CASE WHEN ol.sku = pl.sku AND ol.qty = pl.qty THEN 1 ELSE 0 END) AS good "
            f"FROM pick_line pl{join} LEFT JOIN order_line ol ON ol.order_id = pl.order_id AND ol.line_no = pl.line_no"
            f"{extra} WHERE {cond} GROUP BY {g}"
        )
        return {self._key(r.g): (int(r.n), int(r.good or 0)) for r in self.rows(sql)}

    def time_in_node(self, unit_seconds: float = 1.0) -> dict[str | None, tuple[int, float | None, float | None]]:
        """Per node: visits left (not skipped or cancelled) and p50/p90 of the time spent in it."""
        join, cond = self.in_period("t")
        values = (
            f"SELECT t.node AS g, {self.sql.seconds('t.entered_at', 't.completed_at')} / {unit_seconds} AS x "
            f"FROM task t{join} WHERE t.completed_at IS NOT NULL AND t.status NOT IN ('skipped', 'cancelled') AND {cond}"
        )
        return self.percentiles(values)

    def node_stats(self) -> list[dict]:
        """Per node: decided, within SLA, breaches, auto actions, seconds over SLA, escalations, reminders."""
        end = "COALESCE(t.completed_at, :now)"
        join, cond = self.in_period("t")
        sql = (
            "SELECT t.node AS node, "
            f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} THEN 1 ELSE 0 END) AS decided, "
            f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} AND (t.deadline IS NULL OR t.completed_at <= t.deadline) "
            f"THEN 1 ELSE 0 END) AS within, "
            f"SUM(CASE WHEN t.sla_state = 'breached' THEN 1 ELSE 0 END) AS breaches, "
            f"SUM(CASE WHEN t.outcome IN {_in(AUTO_ACTIONS)} THEN 1 ELSE 0 END) AS auto_actions, "
            f"SUM(CASE WHEN t.deadline IS NOT NULL AND {end} > t.deadline "
            f"THEN {self.sql.seconds('t.deadline', end)} ELSE 0 END) AS over_sla_seconds "
            f"FROM task t{join} WHERE t.status <> 'skipped' AND {cond} GROUP BY t.node"
        )
        stats = {
            r.node: {"node": r.node, "decided": int(r.decided or 0), "within": int(r.within or 0),
                     "breaches": int(r.breaches or 0), "auto_actions": int(r.auto_actions or 0),
                     "over_sla_seconds": float(r.over_sla_seconds or 0.0), "escalations": 0, "reminders": 0}
            for r in self.rows(sql)
        }
        join, cond = self.in_period("e")
        events = (
            "SELECT e.node AS node, SUM(CASE WHEN e.event = 'escalated' THEN 1 ELSE 0 END) AS escalations, "
            "SUM(CASE WHEN e.event = 'reminded' THEN 1 ELSE 0 END) AS reminders "
            f"FROM event e{join} WHERE e.event IN ('escalated', 'reminded') AND {cond} GROUP BY e.node"
        )
        for r in self.rows(events):
            row = stats.setdefault(r.node, {"node": r.node, "decided": 0, "within": 0, "breaches": 0,
                                            "auto_actions": 0, "over_sla_seconds": 0.0, "escalations": 0,
                                            "reminders": 0})
            row["escalations"] += int(r.escalations or 0)
            row["reminders"] += int(r.reminders or 0)
        return list(stats.values())


def _in(values: Iterable[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


# --- assembling rows -------------------------------------------------------------------------

def _round(value: float | None, unit: str) -> float | None:
    if value is None:
        return None
    return round(float(value), 6 if unit == "rate" else 3)


def kpi_row(name: str, group: str | None, actual: float | None, count: int, targets: Mapping[str, float],
            p90: float | None = None) -> dict:
    """One KPI row: actual, target, gap (= actual - target), met, count; p90 for time KPIs."""
    unit, higher_better = KPIS[name]
    target = targets.get(name)
    actual = _round(actual, unit)
    gap = _round(actual - target, unit) if actual is not None and target is not None else None
    met = None if gap is None else (gap >= 0 if higher_better else gap <= 0)
    return {"kpi": name, "group": group, "actual": actual, "target": target, "gap": gap, "count": count,
            "p90": _round(p90, unit), "unit": unit, "met": met, "node": None}


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
            best = {"node": r["node"], "score": score, "breach_share": b_share, "over_sla_share": o_share,
                    "breaches": r["breaches"], "over_sla_seconds": r["over_sla_seconds"]}
    return best


def bottleneck_row(stats: list[dict]) -> dict:
    """The ``bottleneck`` row of ``report kpi``: ``node`` names it, ``actual`` is its score."""
    b = bottleneck(stats)
    row = {"kpi": "bottleneck", "group": ALL, "actual": None, "target": None, "gap": None, "count": 0,
           "p90": None, "unit": "share", "met": None, "node": None,
           "breach_share": None, "over_sla_share": None, "over_sla_seconds": 0.0}
    if b:
        row.update(actual=round(b["score"], 6), count=b["breaches"], node=b["node"],
                   breach_share=round(b["breach_share"], 6), over_sla_share=round(b["over_sla_share"], 6),
                   over_sla_seconds=round(b["over_sla_seconds"], 1))
    return row


def kpi_report(session: Session, cfg, *, now: datetime, period: Period = Period(), by: str | None = None) -> list[dict]:
    """``report kpi``: rows ``{kpi, group, actual, target, gap, count, p90, unit, met, node}``.

    KPI-major (every group of one KPI, then the next KPI), then one ``bottleneck`` row for the
    whole selection (group ``all``): ``node`` names it (null when nothing breached), ``actual``
    is its score (the mean of its share of breaches and of time over SLA), ``count`` its
    breaches, with ``breach_share``, ``over_sla_share`` and ``over_sla_seconds`` beside.
    """
    rep = _Report(session, cfg, now=now, period=period, by=by)
    rep.build_facts()  # a temporary table; on an error it goes with the rolled-back transaction
    sums = rep.sums()
    times = {
        "order_confirmation_minutes": rep.fact_percentiles("conf"),
        "allocation_minutes": rep.fact_percentiles("alloc"),
        "cycle_time_hours": rep.time_in_node(3600.0) if by == "node" else rep.fact_percentiles("cycle"),
    }
    picks = rep.line_pick_accuracy() if rep.cut.line else {g: (v["picked"], v["picked_right"]) for g, v in sums.items()}
    stats = rep.node_stats()
    rep.drop_facts()
    if by == "node":  # SLA attainment of a node is that of its own visits
        sla = {r["node"]: (r["decided"], r["within"]) for r in stats}
    else:
        sla = {g: (v["decided"], v["within"]) for g, v in sums.items()}
    rates = {
        "pick_accuracy": picks,
        "on_time_shipping": {g: (v["shipped"], v["on_time"]) for g, v in sums.items()},
        "perfect_order": {g: (v["delivered"], v["perfect"]) for g, v in sums.items()},
        "sla_attainment": sla,
    }
    groups: set[str | None] = set(sums)
    for table in (*times.values(), *rates.values()):
        groups.update(table)
    ordered = _sort_groups(groups) if by else [ALL]
    targets = cfg.kpi_targets
    rows: list[dict] = []
    for name in KPIS:
        for g in ordered:
            if name in times:
                n, p50, p90 = times[name].get(g, (0, None, None))
                rows.append(kpi_row(name, g, p50, n, targets, p90))
            else:
                n, good = rates[name].get(g, (0, 0))
                rows.append(kpi_row(name, g, good / n if n else None, n, targets))
    rows.append(bottleneck_row(stats))
    return rows


def _node_order(cfg, names: Iterable[str]) -> list[str]:
    known = list(cfg.nodes)
    return sorted(set(names), key=lambda n: (known.index(n) if n in known else len(known), n))


def sla_report(session: Session, cfg, *, now: datetime, period: Period = Period()) -> list[dict]:
    """``report sla``: per node, completed (decided) visits, within SLA, attainment, p50/p90 time
    in node (seconds, wall clock) against the SLA, breaches, escalations, reminders, auto actions,
    seconds over SLA, and whether it is the bottleneck."""
    rep = _Report(session, cfg, now=now, period=period, by=None)
    stats = {r["node"]: r for r in rep.node_stats()}
    times = rep.time_in_node()
    worst = bottleneck(list(stats.values()))
    target = cfg.kpi_targets.get("sla_attainment")
    out = []
    for node in _node_order(cfg, [*stats, *(n for n in times if n is not None)]):
        r = stats.get(node, {"decided": 0, "within": 0, "breaches": 0, "auto_actions": 0, "escalations": 0,
                             "reminders": 0, "over_sla_seconds": 0.0})
        n, p50, p90 = times.get(node, (0, None, None))
        spec = cfg.nodes.get(node)
        attainment = r["within"] / r["decided"] if r["decided"] else None
        out.append({
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
            "escalations": r["escalations"],
            "reminders": r["reminders"],
            "auto_actions": r["auto_actions"],
            "over_sla_seconds": round(r["over_sla_seconds"], 1),
            "bottleneck": bool(worst and worst["node"] == node),
        })
    return out


# --- dashboard series ------------------------------------------------------------------------

def breaches_by_owner(session: Session, cfg, *, now: datetime, period: Period = Period()) -> list[dict]:
    """Breached node visits per owner role (auto nodes without an owner show as null)."""
    rep = _Report(session, cfg, now=now, period=period, by=None)
    join, cond = rep.in_period("t")
    sql = (
        f"SELECT t.owner AS owner, COUNT(*) AS breaches FROM task t{join} "
        f"WHERE t.sla_state = 'breached' AND {cond} GROUP BY t.owner ORDER BY 2 DESC, 1"
    )
    return [{"owner": r.owner, "breaches": int(r.breaches)} for r in rep.rows(sql)]


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


def cycle_time_histogram(session: Session, cfg, *, now: datetime, period: Period = Period()) -> dict:
    """Shipped orders by cycle time (hours) in round buckets up to about the p95; the last bucket
    holds everything longer. ``{step, buckets: [{start, end, count}], overflow_from}``."""
    rep = _Report(session, cfg, now=now, period=period, by=None)
    hours = rep.sql.seconds("o.created_at", "o.shipped_at") + " / 3600.0"
    values = f"SELECT '{ALL}' AS g, {hours} AS x FROM orders o WHERE o.shipped_at IS NOT NULL AND {rep.range}"
    stats = rep.rows(rep.sql.percentiles(values, (0.95,)))
    if not stats or stats[0].n == 0:
        return {"step": None, "buckets": [], "overflow_from": None}
    p95 = max(float(stats[0].p95 or 0.0), 0.0)
    step = nice_step(p95)
    last = max(int(p95 // step), 0) + 1  # buckets 0..last-1, then last = overflow
    sql = (
        f"SELECT b, COUNT(*) AS n FROM (SELECT CASE WHEN x < 0 THEN 0 WHEN x >= {last * step} THEN {last} "
        f"ELSE CAST(x / {step} AS INTEGER) END AS b FROM ({values}) v) q GROUP BY b ORDER BY b"
    )
    counts = {int(r.b): int(r.n) for r in rep.rows(sql)}
    buckets = [{"start": i * step, "end": (i + 1) * step if i < last else None, "count": counts.get(i, 0)}
               for i in range(last + 1)]
    if buckets and buckets[-1]["count"] == 0:
        buckets.pop()
    return {"step": step, "buckets": buckets, "overflow_from": last * step}
