"""Orders' reservations: releasing them (cancel), consuming them (shipments), cancelling line
units, and recording deliveries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit
from ffctl.core.bulk import (
    keyed,
)
from ffctl.core.clock import shown
from ffctl.core.errors import Conflict, FfctlError, NotFound, UsageError
from ffctl.core.stock.common import ALLOC, LINE, ORDERS
from ffctl.core.stock.moves import _bulk_add, _lock_stock, _moves, _stock_of_skus
from ffctl.core.store import is_postgresql
from ffctl.core.text import command
from ffctl.i18n import _

DELIVERY_ISSUES = ("wrong_item", "short", "late", "damaged", "wrong_address", "documents")


def _lock_order_row(session: Session, order_id: str):
    stmt = sa.select(ORDERS).where(ORDERS.c.order_id == order_id)
    if is_postgresql(session):
        stmt = stmt.with_for_update()
    order = session.execute(stmt).mappings().first()
    if order is None:
        raise NotFound(_("no order {order_id!r}").format(order_id=order_id), hint=_("`ffctl order list` shows the orders in the store."))
    return order


def lock_for_orders(session: Session, order_ids: Iterable[str]) -> None:
    """Lock orders and the stock their reservations hold before working through them one by one.

    A caller that ships or cancels many orders in one transaction (an import) calls this first:
    the order rows, then every stock row of their reservations' SKUs, are each locked by one
    ordered statement, so the per-order ``ship`` / ``release_order`` calls that follow never
    wait for a stock row while holding another (which could close a cycle with a concurrent
    shipment or count). A no-op on SQLite, whose write transaction is already exclusive.
    """
    ids = sorted(set(order_ids))
    if not ids or not is_postgresql(session):
        return
    session.execute(sa.select(ORDERS.c.order_id).where(keyed(session, ORDERS.c.order_id, ids))
                    .order_by(ORDERS.c.order_id).with_for_update())
    skus = session.execute(sa.select(ALLOC.c.sku).distinct().where(keyed(session, ALLOC.c.order_id, ids))).scalars()
    _stock_of_skus(session, list(skus), lock=True, all_or_nothing=True)


def _take_reservations(session: Session, order_id: str, *, consume: bool) -> list[dict]:
    """Remove an order's allocations and take them off stock.allocated (and on_hand if consumed)."""
    allocs = [dict(r) for r in session.execute(
        sa.select(ALLOC.c.id, ALLOC.c.line_id, ALLOC.c.sku, ALLOC.c.warehouse, ALLOC.c.qty)
        .where(ALLOC.c.order_id == order_id).order_by(ALLOC.c.id)
    ).mappings()]
    if not allocs:
        return []
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for a in allocs:
        totals[(a["sku"], a["warehouse"])] += a["qty"]
    rows = _lock_stock(session, totals)
    missing = [k for k in totals if k not in rows]
    if missing:  # cannot happen while the FK-free allocation rows match stock; refuse rather than guess
        raise FfctlError(_("order {order_id}: reservations in {missing} have no stock row").format(order_id=order_id, missing=missing))
    by_id = {rows[k]["id"]: -q for k, q in totals.items()}
    _bulk_add(session, "stock", "allocated", by_id, guard="t.allocated + :q >= 0", what=_("stock"))
    if consume:
        _bulk_add(session, "stock", "on_hand", by_id, guard="t.on_hand + :q >= t.allocated", what=_("stock"))
    session.execute(sa.delete(ALLOC).where(ALLOC.c.order_id == order_id))
    return allocs


def release_order(session: Session, order_id: str, *, at: datetime, actor: str) -> int:
    """Free every reservation of an order (cancel calls this); returns the units released."""
    _lock_order_row(session, order_id)
    allocs = _take_reservations(session, order_id, consume=False)
    session.execute(sa.update(LINE).where(LINE.c.order_id == order_id, LINE.c.allocated != 0).values(allocated=0))
    return sum(a["qty"] for a in allocs)


class LineShipment(NamedTuple):
    """What one shipment takes of one order line (``core/shipping.py`` decides, this module moves stock)."""

    line_id: int
    line_sku: str
    sku: str  # what left (a wrong pick differs from line_sku)
    qty: int  # units that left
    counted: int  # units the line counts as shipped (at most what it had left to ship)


def ship_lines(session: Session, order_id: str, items: Sequence[LineShipment], *, at: datetime, actor: str,
               ref: str) -> dict:
    """Move stock for one shipment of an order (its row already locked by the caller).

    Per line: the units that left come out of the line's reservations first (on hand and allocated
    both fall, warehouse by warehouse), the rest out of unreserved stock of that SKU (on hand falls
    where some is available; what no stock row covers is counted as ``untracked``). A wrong SKU
    consumes none of the line's reservation: the reservation of what the line counts as shipped is
    released. ``order_line.shipped`` grows by ``counted`` and ``allocated`` stays reserved + shipped.
    Returns ``{"reserved": n, "unreserved": n, "untracked": n}`` units.
    """
    if not items:
        return {"reserved": 0, "unreserved": 0, "untracked": 0}
    line_ids = sorted({i.line_id for i in items})
    lines = {r.id: {"allocated": r.allocated, "shipped": r.shipped} for r in session.execute(
        sa.select(LINE.c.id, LINE.c.allocated, LINE.c.shipped).where(LINE.c.id.in_(line_ids)))}
    allocs: dict[int, list[dict]] = defaultdict(list)
    for r in session.execute(sa.select(ALLOC.c.id, ALLOC.c.line_id, ALLOC.c.warehouse, ALLOC.c.qty)
                             .where(ALLOC.c.order_id == order_id).order_by(ALLOC.c.qty.desc(), ALLOC.c.warehouse)):
        allocs[r.line_id].append(dict(r._mapping))
    skus = {i.sku for i in items} | {i.line_sku for i in items}
    rows = _stock_of_skus(session, sorted(skus), lock=True)
    stock_by_sku: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        stock_by_sku[r["sku"]].append(r)
    row_of = {(r["sku"], r["warehouse"]): r for r in rows}
    on_hand_delta: dict[int, int] = defaultdict(int)
    alloc_delta: dict[int, int] = defaultdict(int)
    alloc_change: dict[int, int] = {}  # allocation id -> new qty (0: deleted)
    moves: dict[tuple[str, str], int] = defaultdict(int)
    line_updates = []
    totals = {"reserved": 0, "unreserved": 0, "untracked": 0}
    for item in items:
        line = lines[item.line_id]
        reserved_line = line["allocated"] - line["shipped"]
        take = min(item.counted, reserved_line)  # reservation units this shipment uses up
        left = item.qty
        for a in allocs[item.line_id]:
            if take <= 0:
                break
            have = alloc_change.get(a["id"], a["qty"])
            n = min(have, take)
            if n <= 0:
                continue
            alloc_change[a["id"]] = have - n
            row = row_of[(item.line_sku, a["warehouse"])]
            alloc_delta[row["id"]] -= n
            row["allocated"] -= n
            take -= n
            if item.sku == item.line_sku:  # the reserved units are the ones that left
                on_hand_delta[row["id"]] -= n
                row["on_hand"] -= n
                moves[(item.sku, a["warehouse"])] -= n
                left -= n
                totals["reserved"] += n
        # the rest left from unreserved stock: the warehouses with the most available first
        for row in sorted(stock_by_sku.get(item.sku, []), key=lambda r: (r["allocated"] - r["on_hand"], r["warehouse"])):
            if left <= 0:
                break
            n = min(row["on_hand"] - row["allocated"], left)
            if n <= 0:
                continue
            on_hand_delta[row["id"]] -= n
            row["on_hand"] -= n
            moves[(item.sku, row["warehouse"])] -= n
            left -= n
            totals["unreserved"] += n
        totals["untracked"] += max(left, 0)
        reserved_after = reserved_line - min(item.counted, reserved_line)
        shipped_after = line["shipped"] + item.counted
        line["allocated"], line["shipped"] = reserved_after + shipped_after, shipped_after
        line_updates.append({"i": item.line_id, "a": line["allocated"], "s": shipped_after})
    _bulk_add(session, "stock", "allocated", {k: v for k, v in alloc_delta.items() if v}, guard="t.allocated + :q >= 0",
              what=_("stock"))
    _bulk_add(session, "stock", "on_hand", {k: v for k, v in on_hand_delta.items() if v},
              guard="t.on_hand + :q >= t.allocated", what=_("stock"))
    gone = [a for a, q in alloc_change.items() if q == 0]
    if gone:
        session.execute(sa.delete(ALLOC).where(ALLOC.c.id.in_(gone)))
    for a, q in alloc_change.items():
        if q:
            session.execute(sa.update(ALLOC).where(ALLOC.c.id == a).values(qty=q))
    for u in {u["i"]: u for u in line_updates}.values():  # a line twice in one shipment: its last state
        done = session.execute(sa.update(LINE).where(LINE.c.id == u["i"]).values(allocated=u["a"], shipped=u["s"]))
        if done.rowcount != 1:
            raise Conflict(_("order {order_id} changed while it was being shipped; nothing was written, run it again").format(order_id=order_id))
    _moves(session, [{"sku": k[0], "warehouse": k[1], "delta": d, "kind": "ship", "reason": None, "ref": ref,
                      "actor": actor, "at": at} for k, d in sorted(moves.items()) if d])
    return totals


def cancel_line_units(session: Session, order_id: str, line_id: int, qty: int) -> int:
    """Cancel ``qty`` unshipped units of an order line (its order row locked by the caller),
    releasing as much of its reservation as the line no longer needs; returns units released."""
    line = session.execute(sa.select(LINE.c.qty, LINE.c.allocated, LINE.c.shipped, LINE.c.cancelled)
                           .where(LINE.c.id == line_id)).one()
    remaining = line.qty - line.cancelled - line.shipped
    if qty > remaining:
        raise Conflict(_("order {order_id}: only {remaining} units of the line are left to cancel").format(order_id=order_id, remaining=remaining))
    reserved = line.allocated - line.shipped
    backordered = remaining - reserved
    release = max(qty - backordered, 0)  # cancel the backorder first, then the reservation
    if release:
        allocs = session.execute(sa.select(ALLOC.c.id, ALLOC.c.sku, ALLOC.c.warehouse, ALLOC.c.qty)
                                 .where(ALLOC.c.line_id == line_id).order_by(ALLOC.c.qty, ALLOC.c.warehouse)).all()
        rows = _lock_stock(session, {(a.sku, a.warehouse) for a in allocs})
        left = release
        deltas: dict[int, int] = defaultdict(int)
        for a in allocs:
            if left <= 0:
                break
            n = min(a.qty, left)
            deltas[rows[(a.sku, a.warehouse)]["id"]] -= n
            if n == a.qty:
                session.execute(sa.delete(ALLOC).where(ALLOC.c.id == a.id))
            else:
                session.execute(sa.update(ALLOC).where(ALLOC.c.id == a.id).values(qty=a.qty - n))
            left -= n
        _bulk_add(session, "stock", "allocated", dict(deltas), guard="t.allocated + :q >= 0", what=_("stock"))
    session.execute(sa.update(LINE).where(LINE.c.id == line_id)
                    .values(cancelled=line.cancelled + qty, allocated=line.allocated - release))
    return release


def deliver(session: Session, cfg, order_id: str, *, at: datetime, actor: str, issue: str | None = None) -> bool:
    """Record a delivery (with an optional issue); True if recorded, False if already recorded so."""
    from ffctl.core.models import Delivery

    if issue is not None and issue not in DELIVERY_ISSUES:
        raise UsageError(_("unknown delivery issue {issue!r}: use one of {names}").format(issue=issue, names=', '.join(DELIVERY_ISSUES)))
    order = _lock_order_row(session, order_id)
    status = order["status"]
    if status == "delivered":
        found = session.get(Delivery, order_id)
        if found is not None and found.delivered_at == at and found.issue == issue:
            return False
        when = shown(found.delivered_at if found else None, cfg.timezone)
        raise Conflict(_("order {order_id} was already delivered (at {when})").format(order_id=order_id, when=when))
    if status != "shipped":
        where = _(" at node {node}").format(node=order["node"]) if order["node"] else ""
        raise Conflict(_("order {order_id} has not shipped (it is {status}{where}); record the shipment first").format(order_id=order_id, status=status, where=where),
                       hint=_("`{command}`").format(command=command('ship', order_id)))
    audit.refuse_earlier(session, order_id, at, cfg.timezone)  # not before its shipment, nor any later event
    session.execute(sa.insert(Delivery.__table__).values(order_id=order_id, delivered_at=at, issue=issue))
    session.execute(sa.update(ORDERS).where(ORDERS.c.order_id == order_id)
                    .values(status="delivered", delivered_at=at, delivery_issue=issue))
    audit.record(session, event="delivered", at=at, actor=actor, order_id=order_id, node=order["node"],
                 detail=_("issue: {issue}").format(issue=issue) if issue else _("delivered without issue"))
    return True
