"""``report flow``: the paths orders actually took through their workflows (SPEC 9.7).

Read from the node visits (``task``, skipped visits left out) of the orders created in the
period:

- edges: directly-follows pairs of nodes (an order's visit to A, then its next visit to B) with
  how many times they were taken and the median business time from entering A to entering B
  (the time the order spent at A), counted in A's calendar by the reports' own business-time
  SQL (``kpi._BusinessTime``): wall-clock time for a node without a calendar, or for a time
  past the calendar table's span (400 days past the last order);
- rework per node: visits, the orders that visited, rejects (visits closed by a reject, which
  send the order back) and revisits (visits beyond an order's first to the node);
- variants: the distinct sequences of nodes, with the orders and share of orders on each, most
  common first (``top`` of them; the rest are counted together).

One definition of each: ``_visits_sql`` and ``_steps_sql`` (an order's visits, each with the
next one, and the business time between) and ``_paths_sql`` (an order's path and rejected nodes). The facts
(``flow_edge``, ``flow_path``), kept by ``kpi.refresh_facts`` through ``refresh``, are those
queries' rows written down; the report reads them when they are current and the queries
themselves otherwise (``source``, as ``kpi.SOURCES``). Edge counts, rework and variants are
counted in Python over the period's (path, rejects) groups (one row per distinct group, a few
hundred in a real store); an edge's exact median is an OFFSET into flow_edge's (node, next_node,
seconds) index, or a ranking of the task history on the generic path.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.kpi import (
    STORE,
    History,
    Period,
    _BusinessTime,
    _node_order,
    _Report,
    _Sql,
    empty_for_rebuild,
    write_changes,
)

if TYPE_CHECKING:
    from ffctl.core.config import Config
    from ffctl.core.store import Store

SEP = "\t"  # between node names in one SQL value (no node name holds a tab: config keys are words)
REJECTED = ("rejected", "auto_rejected")
_INDEXES = ("ix_flow_edge_seconds", "ix_flow_path_groups")  # built after a rebuild's inserts
_VISITS = "flow_visits"  # SQLite: the refreshed orders' visits, for the time of one refresh


# An order's visits in the order they were entered are its tasks in id order: each is written
# when the order enters the node, and its timeline never runs backwards (SPEC 9.1). By id, the
# windows read ix_task_order (order_id, then the row id) in order instead of sorting every visit.


def _visits_sql(scope: str, period: str, h: History = STORE) -> str:
    """Every visit of the orders in ``scope`` (a condition on task ``t``) created in ``period`` (a
    condition on orders ``o``) followed by another: (g: the task id, order_id, created_at, node,
    next_node, a: its entry, b: the next visit's), from history ``h`` (``kpi.History``)."""
    return (
        "SELECT * FROM (SELECT t.id AS g, t.order_id AS order_id, o.created_at AS created_at, t.node AS node, "
        "LEAD(t.node) OVER w AS next_node, t.entered_at AS a, LEAD(t.entered_at) OVER w AS b "
        f"FROM {h('task')} t JOIN {h('orders')} o ON o.order_id = t.order_id WHERE t.status <> 'skipped' AND {scope} "
        f"AND {period} WINDOW w AS (PARTITION BY t.order_id ORDER BY t.id)) v WHERE v.next_node IS NOT NULL"
    )


def _steps_sql(sql: _Sql, cfg: Config, visits: str) -> str:
    """``visits`` (``_visits_sql``'s rows) as (task_id, order_id, created_at, node, next_node,
    seconds): seconds the business time from the visit's entry to the next's in its node's
    calendar (wall-clock past the calendar table's span)."""
    values = _BusinessTime(sql, cfg).values(visits, keep=("order_id", "created_at", "node", "next_node", "a", "b"))
    return (
        f"SELECT s.g AS task_id, s.order_id, s.created_at, s.node, s.next_node, "
        f"COALESCE(s.x, {sql.seconds('s.a', 's.b')}) AS seconds FROM ({values}) s"
    )


def _paths_sql(sql: _Sql, scope: str, period: str, h: History = STORE) -> str:
    """One row per order in ``scope`` created in ``period`` with a visit: (order_id, created_at,
    path, rejects): its nodes in visit order, and the nodes of its visits closed by a reject,
    each joined by ``SEP`` ('' for none); from history ``h``."""
    rejected = ", ".join(f"'{o}'" for o in REJECTED)
    rejects = f"CASE WHEN t.outcome IN ({rejected}) THEN t.node END"
    source = (
        f"FROM {h('task')} t JOIN {h('orders')} o ON o.order_id = t.order_id WHERE t.status <> 'skipped' AND {scope} "
        f"AND {period}"
    )
    if not sql.sqlite:
        return (
            f"SELECT t.order_id, MIN(o.created_at) AS created_at, "
            f"string_agg(t.node, '{SEP}' ORDER BY t.id) AS path, "
            f"COALESCE(string_agg({rejects}, '{SEP}' ORDER BY t.id), '') AS rejects "
            f"{source} GROUP BY t.order_id"
        )
    # SQLite before 3.44 has no ORDER BY inside an aggregate; as a window function it is ordered
    frame = "OVER (PARTITION BY t.order_id ORDER BY t.id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
    return (
        "SELECT order_id, created_at, path, rejects FROM ("
        f"SELECT t.order_id AS order_id, o.created_at AS created_at, group_concat(t.node, '{SEP}') {frame} AS path, "
        f"COALESCE(group_concat({rejects}, '{SEP}') {frame}, '') AS rejects, "
        f"ROW_NUMBER() OVER (PARTITION BY t.order_id ORDER BY t.id) AS rn {source}) p WHERE rn = 1"
    )


# --- the facts --------------------------------------------------------------------------------


def fingerprint(cfg: Config) -> str:
    """What the flow facts depend on besides the data: the calendars of the nodes (the edges'
    business time). Part of ``kpi.fingerprint``: a change rebuilds the facts."""
    calendars = {}
    for node, spec in sorted(cfg.nodes.items()):
        if spec.calendar:
            c = cfg.calendars[spec.calendar]
            calendars[node] = [
                c.timezone,
                sorted((d, list(map(list, r))) for d, r in c.hours.items()),
                sorted(d.isoformat() for d in c.holidays),
            ]
    return hashlib.sha1(json.dumps(calendars, sort_keys=True).encode()).hexdigest()[:16]


def refresh(s: Session, sql: _Sql, cfg: Config, *, dirty: str | None, h: History = STORE) -> None:
    """Rewrite flow_edge and flow_path: every order's (``dirty`` None: called by the facts'
    rebuild), or the orders in the table ``dirty`` (the incremental refresh, reading history
    ``h``: their copies), in the refresh's transaction. A rebuild drops the report indexes and builds them after the inserts (a sorted
    build beats millions of inserts into each), where the role owns the tables."""
    from ffctl.core.models import FlowEdge, FlowPath

    indexes = [ix for table in (FlowEdge, FlowPath) for ix in table.__table__.indexes if ix.name in _INDEXES]
    if dirty is None:
        indexes = empty_for_rebuild(s, sql, ["flow_edge", "flow_path"], indexes)
    else:
        indexes = []

    def write(table: str, statement: str) -> None:
        if dirty is None:
            s.execute(sa.text(statement))
        else:  # only the rows that differ (dirty is kpi's fact_dirty)
            write_changes(s, sql, table, [statement])

    visits = _visits_sql("1 = 1", "1 = 1", h)
    staged = sql.sqlite and dirty is not None
    if staged:
        # written down first: SQLite then plans the calendar joins for a table of unknown (so
        # large) size and indexes the calendar's days, where for a few orders' visits it scanned them
        s.execute(sa.text(f"CREATE TEMP TABLE {_VISITS} AS {visits}"))
        visits = f"SELECT * FROM temp.{_VISITS}"
    write(
        "flow_edge",
        "INSERT INTO flow_edge (task_id, order_id, created_at, node, next_node, seconds) "
        + _steps_sql(sql, cfg, visits),
    )
    if staged:
        s.execute(sa.text(f"DROP TABLE temp.{_VISITS}"))
    write(
        "flow_path",
        "INSERT INTO flow_path (order_id, created_at, path, rejects) " + _paths_sql(sql, "1 = 1", "1 = 1", h),
    )
    for ix in indexes:
        ix.create(s.connection())
    if dirty is None and not sql.sqlite:
        s.execute(sa.text("ANALYZE flow_edge"))
        s.execute(sa.text("ANALYZE flow_path"))


def vacuum(store: Store) -> None:
    """PostgreSQL, after a rebuild has committed: mark the flow facts' pages all-visible, so an
    edge's median is an index-only scan (autovacuum would, some time later; until then the
    planner sorts the edge's rows). A role that does not own the tables is told and skips it."""
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE) flow_edge, flow_path")


# --- the report -------------------------------------------------------------------------------


def flow_report(
    session: Session, cfg: Config, *, now: datetime, period: Period = Period(), top: int = 10, source: str = "auto"
) -> dict:
    """``{orders, edges: [{from, to, count, median_business_seconds}], rework: [{node, visits,
    orders, rejects, revisits}], variants: [{path, orders, share}], variants_total,
    other_orders}``; edges and rework in the config's node order. ``source``: the flow facts
    or the task history (``kpi.SOURCES``)."""
    rep = _Report(session, cfg, now=now, period=period, by=None, source=source)
    facts = rep.visits()
    if facts:
        groups = f"SELECT p.path, p.rejects, COUNT(*) AS n FROM flow_path p WHERE {rep.created_in('p')} "
    else:
        groups = (
            f"SELECT p.path, p.rejects, COUNT(*) AS n FROM ({_paths_sql(rep.sql, '1 = 1', rep.created_in('o'))}) p "
        )
    paths: Counter[str] = Counter()
    visits: Counter[str] = Counter()
    orders_at: Counter[str] = Counter()
    rejects: Counter[str] = Counter()
    counts: Counter[tuple[str, str]] = Counter()
    for path, rejected, n in rep.rows(groups + "GROUP BY p.path, p.rejects"):
        n = int(n)
        nodes = path.split(SEP)
        paths[path] += n
        for node, k in Counter(nodes).items():
            visits[node] += k * n
            orders_at[node] += n
        for node in rejected.split(SEP) if rejected else ():
            rejects[node] += n
        for pair in zip(nodes, nodes[1:]):
            counts[pair] += n

    medians = _edge_medians(rep, cfg, counts) if facts else _generic_medians(rep, cfg)
    order = {n: i for i, n in enumerate(_node_order(cfg, {n for pair in counts for n in pair}))}
    edges = [
        {
            "from": a,
            "to": b,
            "count": n,
            "median_business_seconds": None if medians.get((a, b)) is None else round(float(medians[(a, b)]), 1),
        }
        for (a, b), n in sorted(counts.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]]))
    ]
    rework = [
        {
            "node": node,
            "visits": visits[node],
            "orders": orders_at[node],
            "rejects": rejects[node],
            "revisits": visits[node] - orders_at[node],
        }
        for node in _node_order(cfg, visits)
    ]
    total = sum(paths.values())
    ranked = sorted(paths.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    variants = [{"path": path.split(SEP), "orders": n, "share": round(n / total, 4)} for path, n in ranked]
    return {
        "orders": total,
        "edges": edges,
        "rework": rework,
        "variants": variants,
        "variants_total": len(paths),
        "other_orders": total - sum(n for _path, n in ranked),
    }


def _edge_medians(rep: _Report, cfg: Config, counts: Counter) -> dict[tuple[str, str], float]:
    """Each edge's exact median off flow_edge's (node, next_node, seconds, created_at) index: the
    edge's count in the period is its number of rows there (both come from the same refresh)."""
    return {
        (a, b): rep.pick(
            "flow_edge",
            "ix_flow_edge_seconds",
            "seconds",
            "x.node = :a AND x.next_node = :b",
            {"a": a, "b": b},
            n,
            ps=(0.5,),
        )[0]
        for (a, b), n in counts.items()
    }


def _generic_medians(rep: _Report, cfg: Config) -> dict[tuple[str, str], float]:
    """Each edge's median from the task history (window functions: ranks, or percentile_cont)."""
    steps = _steps_sql(rep.sql, cfg, _visits_sql("1 = 1", rep.created_in("o")))
    values = f"SELECT st.node || '{SEP}' || st.next_node AS g, st.seconds AS x FROM ({steps}) st"
    return {tuple(r.g.split(SEP)): r.p50 for r in rep.rows(rep.sql.percentiles(values, (0.5,)))}
