"""Why an order was not perfect (SPEC 9.5): failed components, one primary cause, a Pareto.

A *miss* is an order shipped in full (``shipped_at`` set) with at least one failed component:

- ``late``: not shipped on time (its last shipment's local date after the promised ship date,
  or no promised date: the perfect-order KPI's own rule, ``kpi.on_time``);
- ``short``: some unit cancelled (it did not ship in full);
- ``wrong_item``: a pick error recorded for one of its shipments;
- ``delivery_issue``: delivered with an issue;
- ``returned``: some unit came back (``ffctl return``, ``import returns``).

A delivered order without any is perfect; a shipped order not yet delivered and without any is
not judged yet (it is in no list).

The primary cause is the first of these that applies, in the order an order lives them (what
failed earliest pushed everything after it):

1. ``stockout:SKU`` — late or short, and it waited at an allocation node (``auto = "allocate"``)
   past that visit's SLA until a receipt of one of its SKUs came in: the SKU and the supplier of
   the last receipt received during that wait (the receipt's supplier, else the product's).
2. ``hold:REASON`` — late, and it was put on hold: the first hold's reason (a person stopped it;
   its SLA clocks paused meanwhile, so no node breach shows that wait).
3. ``node:NAME`` — late, and a node visit breached (``workflow.breached``): the node with the
   most business time over its SLA (each node's calendar, the reports' ``_BusinessTime``; ties:
   the node name first in alphabetical order), shown with its owner role.
4. ``pick_error`` — a pick error (the SKU picked for the first wrong line).
5. ``delivery:ISSUE`` — the delivery issue.
6. ``returned:REASON`` — the reason with the most units returned (ties: alphabetical).
7. ``unexplained:late`` / ``unexplained:short`` — nothing in its history explains it.

The misses are facts (``miss_fact``), rewritten with ``order_fact`` by ``kpi.refresh_facts``
for the orders the audit trail names since its last run, so ``report misses`` reads one row per
missed order. ``why_not_perfect`` runs the same SQL for one order, live.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.models import UTCDateTime
from ffctl.core.stock import allocation_nodes
from ffctl.core.workflow import breached_sql, stopped_sql

if TYPE_CHECKING:
    from ffctl.core.config import Config
    from ffctl.core.kpi import History

COMPONENTS = ("late", "short", "wrong_item", "delivery_issue", "returned")
#: ``--by`` dimensions: cause and the cause's node, role, SKU, supplier (miss_fact columns), and
#: the order's region and channel (order_fact columns).
DIMENSIONS = ("cause", "node", "role", "sku", "supplier", "region", "channel")
_MISS_COLUMNS = (
    "order_id, created_at, late, short, wrong_item, delivery_issue, returned, cause, node, role, sku, supplier"
)


def _in(values) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _owner_case(cfg: Config, col: str) -> str:
    whens = " ".join(
        f"WHEN '{n.replace(chr(39), chr(39) * 2)}' THEN '{s.owner.replace(chr(39), chr(39) * 2)}'"
        for n, s in sorted(cfg.nodes.items())
        if s.owner
    )
    return f"(CASE {col} {whens} END)" if whens else "NULL"


def misses_select(sql, cfg: Config, scope: str, h: History | None = None) -> str:
    """SELECT of miss_fact's columns for the missed orders among ``orders o`` rows meeting
    ``scope`` (a condition on ``o``; its parameters are the caller's, plus ``:tz``), read from
    history ``h`` (``kpi.History``: the store's tables by default)."""
    from ffctl.core.kpi import STORE, _BusinessTime

    h = h or STORE

    alloc = allocation_nodes(cfg)
    stopped = stopped_sql("t")
    breached = breached_sql("t", now="NULL")  # stopped past the deadline: these orders have shipped
    shipped = f"SELECT o.order_id FROM {h('orders')} o WHERE o.shipped_at IS NOT NULL AND {scope}"
    late = (
        f"CASE WHEN o.promised_ship_date IS NOT NULL AND {sql.local_date('o.shipped_at')} <= o.promised_ship_date "
        "THEN 0 ELSE 1 END"
    )
    base = (
        f"SELECT o.order_id, o.created_at, {late} AS late, "
        "CASE WHEN COALESCE(lu.cancelled, 0) > 0 THEN 1 ELSE 0 END AS short, "
        "CASE WHEN pe.order_id IS NOT NULL THEN 1 ELSE 0 END AS wrong_item, pe.sku AS pick_sku, "
        "COALESCE(o.delivery_issue, d.issue) AS issue, "
        "CASE WHEN ru.order_id IS NOT NULL THEN 1 ELSE 0 END AS returned "
        f"FROM {h('orders')} o LEFT JOIN {h('delivery')} d ON d.order_id = o.order_id "
        f"LEFT JOIN (SELECT order_id, SUM(cancelled) AS cancelled FROM {h('order_line')} WHERE order_id IN ({shipped}) "
        "GROUP BY order_id) lu ON lu.order_id = o.order_id "
        f"LEFT JOIN (SELECT pl.order_id, MIN(pl.sku) AS sku FROM {h('pick_line')} pl WHERE pl.error IS NOT NULL "
        f"AND pl.order_id IN ({shipped}) GROUP BY pl.order_id) pe ON pe.order_id = o.order_id "
        f"LEFT JOIN (SELECT DISTINCT order_id FROM {h('return_line')} WHERE order_id IN ({shipped})) ru "
        "ON ru.order_id = o.order_id "
        f"WHERE o.shipped_at IS NOT NULL AND o.status <> 'cancelled' AND {scope}"
    )
    stockout = (
        "SELECT order_id, sku, supplier, node FROM (SELECT t.order_id, r.sku, COALESCE(r.supplier, p.supplier) AS "
        "supplier, t.node, ROW_NUMBER() OVER (PARTITION BY t.order_id ORDER BY r.received_at DESC, r.sku) AS rn "
        f"FROM {h('task')} t JOIN {h('order_line')} l ON l.order_id = t.order_id "
        "JOIN receipt r ON r.sku = l.sku AND r.status = 'received' AND r.received_at > t.entered_at "
        f"AND r.received_at <= {stopped} LEFT JOIN product p ON p.sku = r.sku "
        f"WHERE t.node IN {_in(alloc) if alloc else '(NULL)'} AND t.status <> 'skipped' AND {breached} "
        f"AND t.order_id IN ({shipped})) x WHERE rn = 1"
    )
    visits = (
        f"SELECT t.id AS g, t.order_id AS order_id, t.node AS node, t.deadline AS a, {stopped} AS b FROM {h('task')} t "
        f"WHERE t.status <> 'skipped' AND {breached} AND t.order_id IN ({shipped})"
    )
    # the visit's order and node passed through: joined back to task by id, PostgreSQL scanned every task
    over = _BusinessTime(sql, cfg).values(visits, keep=("order_id", "node"))
    worst = (
        "SELECT order_id, node FROM (SELECT bt.order_id, bt.node, ROW_NUMBER() OVER (PARTITION BY bt.order_id "
        "ORDER BY SUM(bt.x) DESC, bt.node) AS rn "
        f"FROM ({over}) bt GROUP BY bt.order_id, bt.node) x WHERE rn = 1"
    )
    hold = (
        f"SELECT e.order_id, e.detail AS reason, e.node FROM {h('event')} e WHERE e.id IN (SELECT MIN(eh.id) FROM "
        f"{h('event')} eh WHERE eh.event = 'held' AND eh.order_id IN ({shipped}) GROUP BY eh.order_id)"
    )
    returned = (
        "SELECT order_id, reason, sku FROM (SELECT order_id, reason, MIN(sku) AS sku, ROW_NUMBER() OVER "
        f"(PARTITION BY order_id ORDER BY SUM(qty) DESC, reason) AS rn FROM {h('return_line')} "
        f"WHERE order_id IN ({shipped}) GROUP BY order_id, reason) x WHERE rn = 1"
    )
    timely = "(m.late = 1 OR m.short = 1)"
    cause = (
        "CASE WHEN so.sku IS NOT NULL THEN 'stockout:' || so.sku "
        "WHEN hd.order_id IS NOT NULL THEN 'hold:' || COALESCE(hd.reason, '-') "
        "WHEN bn.node IS NOT NULL THEN 'node:' || bn.node "
        "WHEN m.wrong_item = 1 THEN 'pick_error' "
        "WHEN m.issue IS NOT NULL THEN 'delivery:' || m.issue "
        "WHEN rr.reason IS NOT NULL THEN 'returned:' || rr.reason "
        "WHEN m.late = 1 THEN 'unexplained:late' ELSE 'unexplained:short' END"
    )
    node = (
        "CASE WHEN so.sku IS NOT NULL THEN so.node WHEN hd.order_id IS NOT NULL THEN hd.node "
        "WHEN bn.node IS NOT NULL THEN bn.node END"
    )
    sku = (
        "CASE WHEN so.sku IS NOT NULL THEN so.sku WHEN bn.node IS NOT NULL OR hd.order_id IS NOT NULL THEN NULL "
        "WHEN m.wrong_item = 1 THEN m.pick_sku WHEN m.issue IS NOT NULL THEN NULL ELSE rr.sku END"
    )
    return (
        f"SELECT m.order_id, m.created_at, m.late, m.short, m.wrong_item, "
        f"CASE WHEN m.issue IS NOT NULL THEN 1 ELSE 0 END, m.returned, {cause}, {node}, "
        f"{_owner_case(cfg, node)}, {sku}, "
        f"CASE WHEN so.sku IS NOT NULL THEN so.supplier ELSE (SELECT p.supplier FROM product p WHERE p.sku = {sku}) END "
        f"FROM ({base}) m "
        f"LEFT JOIN ({stockout}) so ON so.order_id = m.order_id AND {timely} "
        f"LEFT JOIN ({worst}) bn ON bn.order_id = m.order_id AND m.late = 1 "
        f"LEFT JOIN ({hold}) hd ON hd.order_id = m.order_id AND m.late = 1 "
        f"LEFT JOIN ({returned}) rr ON rr.order_id = m.order_id "
        "WHERE m.late + m.short + m.wrong_item + m.returned > 0 OR m.issue IS NOT NULL"
    )


def refresh_sql(sql, cfg: Config, h: History) -> str:
    """INSERT ... SELECT of miss_fact rows of every order of history ``h`` (``kpi.History``: the
    store's, or the changed orders' copies)."""
    return f"INSERT INTO miss_fact ({_MISS_COLUMNS}) {misses_select(sql, cfg, '1 = 1', h)}"


def why_not_perfect(session: Session, cfg: Config, order_id: str, now: datetime) -> dict | None:
    """One order's failed components and primary cause, from its history now (None: the order is
    perfect, or not shipped in full, or shipped and not judged yet)."""
    from ffctl.core.kpi import _Sql

    sql = _Sql(session, cfg.timezone, now)
    row = session.execute(
        sa.text(misses_select(sql, cfg, "o.order_id = :oid")), {"oid": order_id, "tz": cfg.timezone}
    ).first()
    if row is None:
        return None
    _oid, _created, *flags, cause, node, role, sku, supplier = row
    return {
        "components": [c for c, f in zip(COMPONENTS, flags) if f],
        "cause": cause,
        "node": node,
        "role": role,
        "sku": sku,
        "supplier": supplier,
    }


def describe(why: dict | None) -> str | None:
    """``why_not_perfect`` in words (``order show``'s table)."""
    from ffctl.i18n import _

    if why is None:
        return None
    kind, _sep, what = why["cause"].partition(":")
    if kind == "stockout":
        text = _("waited for stock of {sku}").format(sku=what)
        if why["supplier"]:
            text += " " + _("(supplier {supplier})").format(supplier=why["supplier"])
    elif kind == "node":
        text = _("node {node} ran over its SLA the longest").format(node=what)
        if why["role"]:
            text += " " + _("(owner {role})").format(role=why["role"])
    elif kind == "hold":
        text = _("held: {reason}").format(reason=what)
    elif kind == "pick_error":
        text = _("a pick error") + (f" ({why['sku']})" if why["sku"] else "")
    elif kind == "delivery":
        text = _("delivery issue: {issue}").format(issue=what)
    elif kind == "returned":
        text = _("returned: {reason}").format(reason=what)
    else:
        text = _("nothing in its history explains it")
    return _("{components}; cause: {cause}").format(
        components=", ".join(c.replace("_", " ") for c in why["components"]), cause=text
    )


# --- the report ------------------------------------------------------------------------------


def _source(by: str) -> tuple[str, str]:
    """(FROM clause over miss_fact mf, group expression) for a ``--by`` dimension."""
    if by not in DIMENSIONS:
        raise ValueError(f"unknown dimension {by!r}: use one of {', '.join(DIMENSIONS)}")
    if by in ("region", "channel"):
        return "miss_fact mf JOIN order_fact f ON f.order_id = mf.order_id", f"f.{by}"
    return "miss_fact mf", f"mf.{by}"


def _period(period, params: dict) -> str:
    cond = []
    if period.start is not None:
        cond.append("mf.created_at >= :start")
        params["start"] = period.start
    if period.end is not None:
        cond.append("mf.created_at < :end")
        params["end"] = period.end
    return " AND ".join(cond) or "1 = 1"


def _statement(text: str, params: dict):
    stmt = sa.text(text)
    binds = [sa.bindparam(k, type_=UTCDateTime) for k in ("start", "end") if k in params]
    return stmt.bindparams(*binds) if binds else stmt


def pareto(session: Session, cfg: Config, *, period, by: str = "cause") -> list[dict]:
    """``report misses``: rows ``{group, orders, share, cumulative_share, role, supplier}``, the
    most orders first (ties: by group); share of every miss in the period. ``role``/``supplier``
    (``--by cause``): the owner role of a node cause, the supplier of a stockout."""
    source, g = _source(by)
    params: dict = {}
    where = _period(period, params)
    extra = (
        ", MAX(mf.role) AS role, MAX(mf.supplier) AS supplier" if by == "cause" else ", NULL AS role, NULL AS supplier"
    )
    rows = session.execute(
        _statement(f"SELECT {g} AS g, COUNT(*) AS n{extra} FROM {source} WHERE {where} GROUP BY {g}", params), params
    ).all()
    rows = sorted(rows, key=lambda r: (-r.n, r.g is None, r.g or ""))
    total = sum(r.n for r in rows)
    out, running = [], 0
    for r in rows:
        running += r.n
        row = {
            "group": r.g,
            "orders": int(r.n),
            "share": round(r.n / total, 6),
            "cumulative_share": round(running / total, 6),
        }
        if by == "cause":
            row.update(
                role=r.role if str(r.g).startswith("node:") else None,
                supplier=r.supplier if str(r.g).startswith("stockout:") else None,
            )
        out.append(row)
    return out


def missed_orders(
    session: Session, cfg: Config, *, period, by: str = "cause", group: str | None = None, batch: int = 5000
) -> Iterator[dict]:
    """The missed orders (streamed, by order id), optionally only those of one ``group`` of ``by``
    (``node`` alone matches every ``node:...`` cause when ``by`` is cause)."""
    source, g = _source(by)
    params: dict = {}
    where = _period(period, params)
    if group is not None:
        if by == "cause" and ":" not in group and group not in ("pick_error",):
            where += f" AND {g} LIKE :family"
            params["family"] = group.replace("%", "").replace("_", "\\_") + ":%"
            where += " ESCAPE '\\'"
        else:
            where += f" AND {g} = :group"
            params["group"] = group
    cols = (
        "mf.order_id, mf.created_at, mf.late, mf.short, mf.wrong_item, mf.delivery_issue, mf.returned, "
        "mf.cause, mf.node, mf.role, mf.sku, mf.supplier"
    )
    if "order_fact f" not in source:
        source += " LEFT JOIN order_fact f ON f.order_id = mf.order_id"
    text = f"SELECT {cols}, f.region, f.channel FROM {source} WHERE {where}"
    after = ""
    while True:
        rows = session.execute(
            _statement(f"{text} AND mf.order_id > :after ORDER BY mf.order_id LIMIT {batch}", params),
            {**params, "after": after},
        ).all()
        for r in rows:
            flags = (r.late, r.short, r.wrong_item, r.delivery_issue, r.returned)
            yield {
                "order_id": r.order_id,
                "created_at": UTCDateTime().process_result_value(r.created_at, None),
                "components": [c for c, f in zip(COMPONENTS, flags) if f],
                "cause": r.cause,
                "node": r.node,
                "role": r.role,
                "sku": r.sku,
                "supplier": r.supplier,
                "region": r.region,
                "channel": r.channel,
            }
        if len(rows) < batch:
            return
        after = rows[-1].order_id
