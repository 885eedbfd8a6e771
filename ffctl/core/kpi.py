"""Fulfillment KPIs against targets (SPEC §7), computed in SQL on both backends.

Every number is an aggregate the database computes (GROUP BY, window functions, and
``percentile_cont`` on PostgreSQL or a ROW_NUMBER/COUNT rank pick on SQLite); Python only
receives one row per group (or per group and node) and lays the rows out. Nothing here loads
orders, tasks or lines into Python.

Definitions (the history these read is written by the workflow, imports and ``ship``/``deliver``):

- order_confirmation_minutes: created_at -> first completion (completed or auto_approved) of the
  order's first node, i.e. its lowest-``seq`` task that was not skipped. Median is ``actual``.
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
time over SLA (wall-clock time past the deadline, up to completion or ``now`` for open tasks).
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
    """How a dimension groups orders: joins onto ``orders o`` and the group expression."""

    joins: str = ""
    expr: str = f"'{ALL}'"
    customer: bool = False  # needs ``LEFT JOIN customer c``
    task_expr: str | None = None  # for task-level facts (node cut: the task's own node)
    line: str | None = None  # for line-level facts: "sku" or "category" of the line itself


def _cut(by: str | None, sql: _Sql) -> _Cut:
    if by is None:
        return _Cut()
    if by == "region":
        return _Cut(expr="COALESCE(o.region, c.region)", customer=True)
    if by == "channel":
        return _Cut(expr="o.channel")
    if by == "team":
        return _Cut(expr="o.sales_rep")
    if by == "customer":
        return _Cut(expr="o.customer")
    if by == "week":
        return _Cut(expr=sql.local_week("o.created_at"))
    if by == "product":
        return _Cut(
            joins=" JOIN (SELECT order_id, sku AS g FROM order_line GROUP BY order_id, sku) gx ON gx.order_id = o.order_id",
            expr="gx.g", line="sku",
        )
    if by == "category":
        return _Cut(
            joins=(" JOIN (SELECT l.order_id, p.category AS g FROM order_line l LEFT JOIN product p ON p.sku = l.sku"
                   " GROUP BY l.order_id, p.category) gx ON gx.order_id = o.order_id"),
            expr="gx.g", line="category",
        )
    if by == "node":
        return _Cut(
            joins=(" JOIN (SELECT order_id, node AS g FROM task WHERE status <> 'skipped'"
                   " GROUP BY order_id, node) gx ON gx.order_id = o.order_id"),
            expr="gx.g", task_expr="t.node",
        )
    raise ValueError(f"unknown dimension {by!r}: use one of {', '.join(DIMENSIONS)}")


# --- the report ------------------------------------------------------------------------------

class _Report:
    def __init__(self, session: Session, cfg, *, now: datetime, period: Period, by: str | None) -> None:
        self.s, self.cfg, self.now, self.period, self.by = session, cfg, now, period, by
        self.sql = _Sql(session, cfg.timezone, now)
        self.cut = _cut(by, self.sql)
        self.params: dict[str, Any] = {"now": now, "tz": cfg.timezone}
        conds = []
        if period.start is not None:
            conds.append("o.created_at >= :start")
            self.params["start"] = period.start
        if period.end is not None:
            conds.append("o.created_at < :end")
            self.params["end"] = period.end
        self.range = " AND ".join(conds) or "1 = 1"
        self.customer_join = " LEFT JOIN customer c ON c.customer = o.customer" if self.cut.customer else ""

    # -- plumbing --
    def rows(self, sql: str) -> list:
        stmt = sa.text(sql)
        binds = [sa.bindparam(k, type_=UTCDateTime) for k in ("now", "start", "end") if f":{k}" in sql]
        if binds:
            stmt = stmt.bindparams(*binds)
        params = {k: v for k, v in self.params.items() if f":{k}" in sql}
        return self.s.execute(stmt, params).all()

    def orders_from(self, *, extra_join: str = "", cut: bool = True) -> str:
        joins = self.customer_join + (self.cut.joins if cut else "")
        return f"FROM orders o{joins}{extra_join}"

    def task_group(self) -> tuple[str, str]:
        """(group expression, joins) for rows of ``task t`` joined to ``orders o``."""
        if self.cut.task_expr:
            return self.cut.task_expr, self.customer_join
        return self.cut.expr, self.customer_join + self.cut.joins

    @staticmethod
    def _key(g: Any) -> str | None:
        if g is None:
            return None
        if isinstance(g, (date, datetime)):
            return g.isoformat()[:10]
        return str(g)

    def percentiles(self, values: str) -> dict[str | None, tuple[int, float | None, float | None]]:
        return {self._key(r.g): (int(r.n), r.p50, r.p90) for r in self.rows(self.sql.percentiles(values, (0.5, 0.9)))}

    def rate(self, values: str) -> dict[str | None, tuple[int, int]]:
        sql = f"SELECT g, COUNT(*) AS n, SUM(ok) AS good FROM ({values}) v GROUP BY g"
        return {self._key(r.g): (int(r.n), int(r.good or 0)) for r in self.rows(sql)}

    # -- the KPIs --
    def first_done(self) -> str:
        """Per order in the period: when its first (not skipped) node was first passed."""
        return (
            "SELECT t.order_id, MIN(t.completed_at) AS done FROM task t JOIN ("
            "SELECT t0.order_id, MIN(t0.seq) AS seq FROM task t0 JOIN orders o ON o.order_id = t0.order_id "
            f"WHERE t0.status <> 'skipped' AND {self.range} GROUP BY t0.order_id"
            ") f ON f.order_id = t.order_id AND f.seq = t.seq "
            f"WHERE t.outcome IN {_in(PASSED)} GROUP BY t.order_id"
        )

    def allocation_done(self, nodes: list[str]) -> str:
        return (
            "SELECT t.order_id, MIN(t.completed_at) AS done FROM task t JOIN orders o ON o.order_id = t.order_id "
            f"WHERE t.node IN {_in(nodes)} AND t.outcome IN {_in(PASSED)} AND {self.range} GROUP BY t.order_id"
        )

    def confirmation(self):
        values = (
            f"SELECT {self.cut.expr} AS g, {self.sql.seconds('o.created_at', 'fd.done')} / 60.0 AS x "
            f"{self.orders_from()} JOIN ({self.first_done()}) fd ON fd.order_id = o.order_id WHERE {self.range}"
        )
        return self.percentiles(values)

    def allocation(self):
        nodes = [name for name, spec in self.cfg.nodes.items() if spec.auto == "allocate"]
        if not nodes:
            return {}
        values = (
            f"SELECT {self.cut.expr} AS g, {self.sql.seconds('fd.done', 'ad.done')} / 60.0 AS x "
            f"{self.orders_from()} JOIN ({self.first_done()}) fd ON fd.order_id = o.order_id "
            f"JOIN ({self.allocation_done(nodes)}) ad ON ad.order_id = o.order_id WHERE {self.range}"
        )
        return self.percentiles(values)

    def pick_accuracy(self):
        if self.cut.line == "sku":
            g, joins = "COALESCE(ol.sku, pl.sku)", self.customer_join
            extra = ""
        elif self.cut.line == "category":
            g, joins = "lp.category", self.customer_join
            extra = " LEFT JOIN product lp ON lp.sku = COALESCE(ol.sku, pl.sku)"
        else:
            g, joins, extra = self.cut.expr, self.customer_join + self.cut.joins, ""
        values = (
            f"SELECT {g} AS g, CASE WHEN ol.sku = pl.sku AND ol.qty = pl.qty THEN 1 ELSE 0 END AS ok "
            f"FROM pick_line pl JOIN orders o ON o.order_id = pl.order_id{joins} "
            f"LEFT JOIN order_line ol ON ol.order_id = pl.order_id AND ol.line_no = pl.line_no{extra} "
            f"WHERE {self.range}"
        )
        return self.rate(values)

    def _on_time(self) -> str:
        return f"(o.promised_ship_date IS NOT NULL AND {self.sql.local_date('o.shipped_at')} <= o.promised_ship_date)"

    def on_time(self):
        values = (
            f"SELECT {self.cut.expr} AS g, CASE WHEN {self._on_time()} THEN 1 ELSE 0 END AS ok "
            f"{self.orders_from()} WHERE o.shipped_at IS NOT NULL AND {self.range}"
        )
        return self.rate(values)

    def perfect(self):
        mismatched_line = (
            "EXISTS (SELECT 1 FROM order_line l WHERE l.order_id = o.order_id AND NOT EXISTS ("
            "SELECT 1 FROM pick_line p WHERE p.order_id = l.order_id AND p.line_no = l.line_no "
            "AND p.sku = l.sku AND p.qty = l.qty))"
        )
        stray_pick = (
            "EXISTS (SELECT 1 FROM pick_line p WHERE p.order_id = o.order_id AND NOT EXISTS ("
            "SELECT 1 FROM order_line l WHERE l.order_id = p.order_id AND l.line_no = p.line_no "
            "AND l.sku = p.sku AND l.qty = p.qty))"
        )
        picked = "EXISTS (SELECT 1 FROM pick_line p WHERE p.order_id = o.order_id)"
        in_full = f"NOT ({picked} AND ({mismatched_line} OR {stray_pick}))"
        values = (
            f"SELECT {self.cut.expr} AS g, CASE WHEN o.shipped_at IS NOT NULL AND {self._on_time()} "
            f"AND COALESCE(o.delivery_issue, d.issue) IS NULL AND {in_full} THEN 1 ELSE 0 END AS ok "
            f"{self.orders_from(extra_join=' LEFT JOIN delivery d ON d.order_id = o.order_id')} "
            f"WHERE (o.delivered_at IS NOT NULL OR d.order_id IS NOT NULL) AND {self.range}"
        )
        return self.rate(values)

    def cycle_time(self):
        if self.by == "node":
            values = (
                f"SELECT t.node AS g, {self.sql.seconds('t.entered_at', 't.completed_at')} / 3600.0 AS x "
                f"FROM task t JOIN orders o ON o.order_id = t.order_id{self.customer_join} "
                f"WHERE t.completed_at IS NOT NULL AND t.status NOT IN ('skipped', 'cancelled') AND {self.range}"
            )
        else:
            values = (
                f"SELECT {self.cut.expr} AS g, {self.sql.seconds('o.created_at', 'o.shipped_at')} / 3600.0 AS x "
                f"{self.orders_from()} WHERE o.shipped_at IS NOT NULL AND {self.range}"
            )
        return self.percentiles(values)

    def node_stats(self, *, cut: bool = True) -> list[dict]:
        """Per (group, node): decided, within SLA, breaches, auto actions, seconds over SLA, escalations."""
        g, joins = self.task_group() if cut else (f"'{ALL}'", "")
        end = "COALESCE(t.completed_at, :now)"
        sql = (
            f"SELECT {g} AS g, t.node AS node, "
            f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} THEN 1 ELSE 0 END) AS decided, "
            f"SUM(CASE WHEN t.outcome IN {_in(DECIDED)} AND (t.deadline IS NULL OR t.completed_at <= t.deadline) "
            f"THEN 1 ELSE 0 END) AS within, "
            f"SUM(CASE WHEN t.sla_state = 'breached' THEN 1 ELSE 0 END) AS breaches, "
            f"SUM(CASE WHEN t.outcome IN {_in(AUTO_ACTIONS)} THEN 1 ELSE 0 END) AS auto_actions, "
            f"SUM(CASE WHEN t.deadline IS NOT NULL AND {end} > t.deadline "
            f"THEN {self.sql.seconds('t.deadline', end)} ELSE 0 END) AS over_sla_seconds "
            f"FROM task t JOIN orders o ON o.order_id = t.order_id{joins} "
            f"WHERE t.status <> 'skipped' AND {self.range} GROUP BY 1, 2"
        )
        stats = {
            (self._key(r.g), r.node): {
                "group": self._key(r.g), "node": r.node, "decided": int(r.decided or 0), "within": int(r.within or 0),
                "breaches": int(r.breaches or 0), "auto_actions": int(r.auto_actions or 0),
                "over_sla_seconds": float(r.over_sla_seconds or 0.0), "escalations": 0, "reminders": 0,
            }
            for r in self.rows(sql)
        }
        eg = ("e.node" if self.cut.task_expr else g) if cut else f"'{ALL}'"
        ev = (
            f"SELECT {eg} AS g, e.node AS node, "
            "SUM(CASE WHEN e.event = 'escalated' THEN 1 ELSE 0 END) AS escalations, "
            "SUM(CASE WHEN e.event = 'reminded' THEN 1 ELSE 0 END) AS reminders "
            f"FROM event e JOIN orders o ON o.order_id = e.order_id{joins} "
            f"WHERE e.event IN ('escalated', 'reminded') AND {self.range} GROUP BY 1, 2"
        )
        for r in self.rows(ev):
            key = (self._key(r.g), r.node)
            row = stats.setdefault(key, {
                "group": key[0], "node": r.node, "decided": 0, "within": 0, "breaches": 0, "auto_actions": 0,
                "over_sla_seconds": 0.0, "escalations": 0, "reminders": 0,
            })
            row["escalations"] += int(r.escalations or 0)
            row["reminders"] += int(r.reminders or 0)
        return list(stats.values())

    def time_in_node(self) -> dict[str | None, tuple[int, float | None, float | None]]:
        values = (
            f"SELECT t.node AS g, {self.sql.seconds('t.entered_at', 't.completed_at')} AS x "
            f"FROM task t JOIN orders o ON o.order_id = t.order_id "
            f"WHERE t.completed_at IS NOT NULL AND t.status NOT IN ('skipped', 'cancelled') AND {self.range}"
        )
        return self.percentiles(values)


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


def _sort_groups(groups: Iterable[str | None]) -> list[str | None]:
    return sorted(set(groups), key=lambda g: (g is None, g or ""))


def bottlenecks(node_stats: list[dict]) -> dict[str | None, dict]:
    """Per group: the node with the largest mean of breach share and over-SLA-time share."""
    by_group: dict[str | None, list[dict]] = {}
    for row in node_stats:
        by_group.setdefault(row["group"], []).append(row)
    out = {}
    for group, rows in by_group.items():
        breaches = sum(r["breaches"] for r in rows)
        over = sum(r["over_sla_seconds"] for r in rows)
        best = None
        for r in rows:
            b_share = r["breaches"] / breaches if breaches else 0.0
            o_share = r["over_sla_seconds"] / over if over else 0.0
            score = (b_share + o_share) / 2
            if score > 0 and (best is None or score > best["score"] or (score == best["score"] and r["node"] < best["node"])):
                best = {"node": r["node"], "score": score, "breach_share": b_share, "over_sla_share": o_share,
                        "breaches": r["breaches"], "over_sla_seconds": r["over_sla_seconds"]}
        out[group] = best
    return out


def kpi_report(session: Session, cfg, *, now: datetime, period: Period = Period(), by: str | None = None) -> list[dict]:
    """``report kpi``: rows ``{kpi, group, actual, target, gap, count, p90, unit, met, node}``.

    KPI-major (every group of one KPI, then the next KPI), then one ``bottleneck`` row per
    group: ``node`` names it, ``actual`` is its score (mean of its breach share and over-SLA
    share), ``count`` its breaches; ``node`` is null when nothing breached.
    """
    rep = _Report(session, cfg, now=now, period=period, by=by)
    targets = cfg.kpi_targets
    times = {
        "order_confirmation_minutes": rep.confirmation(),
        "allocation_minutes": rep.allocation(),
        "cycle_time_hours": rep.cycle_time(),
    }
    rates = {
        "pick_accuracy": rep.pick_accuracy(),
        "on_time_shipping": rep.on_time(),
        "perfect_order": rep.perfect(),
    }
    stats = rep.node_stats()
    sla: dict[str | None, list[int]] = {}
    for r in stats:
        acc = sla.setdefault(r["group"], [0, 0])
        acc[0] += r["decided"]
        acc[1] += r["within"]
    groups: set[str | None] = set(sla)
    for table in (*times.values(), *rates.values()):
        groups.update(table)
    ordered = _sort_groups(groups) if by else [ALL]
    rows: list[dict] = []
    for name in KPIS:
        for g in ordered:
            if name in times:
                n, p50, p90 = times[name].get(g, (0, None, None))
                rows.append(kpi_row(name, g, p50, n, targets, p90))
            elif name in rates:
                n, good = rates[name].get(g, (0, 0))
                rows.append(kpi_row(name, g, good / n if n else None, n, targets))
            else:
                decided, within = sla.get(g, (0, 0))
                rows.append(kpi_row(name, g, within / decided if decided else None, decided, targets))
    worst = bottlenecks(rep.node_stats(cut=False) if by == "node" else stats)
    for g in ([ALL] if by in (None, "node") else ordered):
        b = worst.get(g)
        row = {"kpi": "bottleneck", "group": g, "actual": None, "target": None, "gap": None, "count": 0,
               "p90": None, "unit": "share", "met": None, "node": None,
               "breach_share": None, "over_sla_share": None, "over_sla_seconds": 0.0}
        if b:
            row.update(actual=round(b["score"], 6), count=b["breaches"], node=b["node"],
                       breach_share=round(b["breach_share"], 6), over_sla_share=round(b["over_sla_share"], 6),
                       over_sla_seconds=round(b["over_sla_seconds"], 1))
        rows.append(row)
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
    worst = bottlenecks(list(stats.values())).get(ALL)
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
    sql = (
        "SELECT t.owner AS owner, COUNT(*) AS breaches FROM task t JOIN orders o ON o.order_id = t.order_id "
        f"WHERE t.sla_state = 'breached' AND {rep.range} GROUP BY t.owner ORDER BY 2 DESC, 1"
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
