"""``report flow``: the paths orders actually took through their workflows (SPEC 9.7).

Read from the node visits (``task``, skipped visits left out) of the orders created in the
period, aggregated in SQL:

- edges: directly-follows pairs of nodes (an order's visit to A, then its next visit to B) with
  how many times they were taken and the median business time from entering A to entering B
  (the time the order spent at A), counted in A's calendar by the reports' own business-time
  SQL (``kpi._BusinessTime``): wall-clock time for a node without a calendar;
- rework per node: visits, the orders that visited, rejects (visits closed by a reject, which
  send the order back) and revisits (visits beyond an order's first to the node);
- variants: the distinct sequences of nodes, with the orders and share of orders on each, most
  common first (``top`` of them; the rest are counted together).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ffctl.core.kpi import Period, _BusinessTime, _node_order, _Report

SEP = "\t"  # between node names in one SQL value (no node name holds a tab: config keys are words)
REJECTED = ("rejected", "auto_rejected")


# An order's visits in the order they were entered are its tasks in id order: each is written
# when the order enters the node, and its timeline never runs backwards (SPEC 9.1). By id, the
# windows read ix_task_order (order_id, then the row id) in order instead of sorting every visit.


def _visits(rep: _Report) -> str:
    """Every visit of the period's orders, with the next visit of the same order."""
    join, cond = rep.in_period("t")
    return (
        "SELECT t.order_id, t.node, t.entered_at, t.outcome, "
        "LEAD(t.node) OVER (PARTITION BY t.order_id ORDER BY t.id) AS next_node, "
        "LEAD(t.entered_at) OVER (PARTITION BY t.order_id ORDER BY t.id) AS next_at "
        f"FROM task t{join} WHERE t.status <> 'skipped' AND {cond}"
    )


def _paths(rep: _Report) -> str:
    """One row per order of the period: its nodes in visit order, joined by ``SEP``."""
    join, cond = rep.in_period("t")
    if not rep.sql.sqlite:
        return (f"SELECT t.order_id, string_agg(t.node, '{SEP}' ORDER BY t.id) AS path "
                f"FROM task t{join} WHERE t.status <> 'skipped' AND {cond} GROUP BY t.order_id")
    # SQLite before 3.44 has no ORDER BY inside an aggregate; as a window function it is ordered
    return (
        "SELECT order_id, path FROM ("
        f"SELECT t.order_id, group_concat(t.node, '{SEP}') OVER (PARTITION BY t.order_id ORDER BY t.id "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS path, "
        "ROW_NUMBER() OVER (PARTITION BY t.order_id ORDER BY t.id) AS rn "
        f"FROM task t{join} WHERE t.status <> 'skipped' AND {cond}) p WHERE rn = 1"
    )


def flow_report(session: Session, cfg, *, now: datetime, period: Period = Period(), top: int = 10) -> dict:
    """``{orders, edges: [{from, to, count, median_business_seconds}], rework: [{node, visits,
    orders, rejects, revisits}], variants: [{path, orders, share}], variants_total,
    other_orders}``; edges and rework in the config's node order."""
    rep = _Report(session, cfg, now=now, period=period, by=None)
    timed = (f"SELECT v.node || '{SEP}' || v.next_node AS g, v.node AS node, v.entered_at AS a, v.next_at AS b "
             f"FROM ({_visits(rep)}) v WHERE v.next_node IS NOT NULL")
    # one pass: the count of each pair is the n of its median (every visit of a report's orders
    # falls inside the span the business time is counted over)
    stats = {tuple(r.g.split(SEP)): (int(r.n), r.p50)
             for r in rep.rows(rep.sql.percentiles(_BusinessTime(rep.sql, cfg).values(timed), (0.5,)))}
    order = {n: i for i, n in enumerate(_node_order(cfg, {n for pair in stats for n in pair}))}
    edges = [{"from": a, "to": b, "count": n, "median_business_seconds": None if p50 is None else round(float(p50), 1)}
             for (a, b), (n, p50) in sorted(stats.items(), key=lambda kv: (order[kv[0][0]], order[kv[0][1]]))]

    join, cond = rep.in_period("t")
    rejected = ", ".join(f"'{o}'" for o in REJECTED)
    rework_rows = {r.node: r for r in rep.rows(
        "SELECT t.node AS node, COUNT(*) AS visits, COUNT(DISTINCT t.order_id) AS orders, "
        f"SUM(CASE WHEN t.outcome IN ({rejected}) THEN 1 ELSE 0 END) AS rejects "
        f"FROM task t{join} WHERE t.status <> 'skipped' AND {cond} GROUP BY t.node")}
    rework = [{"node": node, "visits": int(r.visits), "orders": int(r.orders), "rejects": int(r.rejects or 0),
               "revisits": int(r.visits) - int(r.orders)}
              for node in _node_order(cfg, rework_rows) for r in (rework_rows[node],)]

    # the top paths, and over every path (window functions over the groups) the orders and paths
    total = distinct = 0
    variants = []
    for r in rep.rows(f"SELECT path, COUNT(*) AS n, SUM(COUNT(*)) OVER () AS total, COUNT(*) OVER () AS k "
                      f"FROM ({_paths(rep)}) p GROUP BY path ORDER BY COUNT(*) DESC, path LIMIT :top", {"top": top}):
        total, distinct = int(r.total), int(r.k)
        variants.append({"path": r.path.split(SEP), "orders": int(r.n)})
    for v in variants:
        v["share"] = round(v["orders"] / total, 4)
    return {"orders": total, "edges": edges, "rework": rework, "variants": variants, "variants_total": distinct,
            "other_orders": total - sum(v["orders"] for v in variants)}
