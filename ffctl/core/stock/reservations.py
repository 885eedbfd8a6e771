"""Orders' reservations: releasing them (cancel), consuming them (shipments), cancelling line
units, and recording deliveries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit
from ffctl.core.bulk import among, insert_rows, int_array, keyed, keyed_rows, time_texts
from ffctl.core.clock import shown
from ffctl.core.errors import Conflict, FfctlError, NotFound, UsageError
from ffctl.core.stock.common import ALLOC, LINE, ORDERS, _parts
from ffctl.core.stock.moves import _bulk_add, _lock_stock, _raw, _stock_of_skus, _update_all
from ffctl.core.store import is_postgresql
from ffctl.core.text import command
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config

DELIVERY_ISSUES = ("wrong_item", "short", "late", "damaged", "wrong_address", "documents")


# statements of the one-order paths, built once per process (the demo delivers ~1,700 orders)
_ORDER_ROW = sa.select(ORDERS).where(ORDERS.c.order_id == sa.bindparam("order_id"))
_LOCKED_ORDER_ROW = _ORDER_ROW.with_for_update()
_DELIVERED = (
    sa.update(ORDERS)
    .where(ORDERS.c.order_id == sa.bindparam("order_id_"))
    .values(
        status="delivered",
        delivered_at=sa.bindparam("at_", type_=ORDERS.c.delivered_at.type),
        delivery_issue=sa.bindparam("issue_"),
    )
)


def _lock_order_rows(session: Session, order_ids: Sequence[str]) -> dict[str, Any]:
    """The rows of ``order_ids`` that exist, by id; locked in id order on PostgreSQL."""
    if len(order_ids) == 1:
        stmt = _LOCKED_ORDER_ROW if is_postgresql(session) else _ORDER_ROW
        row = session.execute(stmt, {"order_id": order_ids[0]}).mappings().first()
        return {row["order_id"]: row} if row is not None else {}
    found: dict[str, Any] = {}
    for part in _parts(session, sorted(set(order_ids))):
        stmt = sa.select(ORDERS).where(keyed(session, ORDERS.c.order_id, part)).order_by(ORDERS.c.order_id)
        if is_postgresql(session):
            stmt = stmt.with_for_update()
        found.update((row["order_id"], row) for row in session.execute(stmt).mappings())
    return found


def _lock_order_row(session: Session, order_id: str):
    order = _lock_order_rows(session, [order_id]).get(order_id)
    if order is None:
        raise _no_order(order_id)
    return order


def _no_order(order_id: str) -> NotFound:
    return NotFound(
        _("no order {order_id!r}").format(order_id=order_id),
        hint=_("`ffctl order list` shows the orders in the store."),
    )


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
    session.execute(
        sa.select(ORDERS.c.order_id)
        .where(keyed(session, ORDERS.c.order_id, ids))
        .order_by(ORDERS.c.order_id)
        .with_for_update()
    )
    skus = session.execute(sa.select(ALLOC.c.sku).distinct().where(keyed(session, ALLOC.c.order_id, ids))).scalars()
    _stock_of_skus(session, list(skus), lock=True, all_or_nothing=True)


def _take_reservations(session: Session, order_id: str, *, consume: bool) -> list[dict]:
    """Remove an order's allocations and take them off stock.allocated (and on_hand if consumed)."""
    allocs = [
        dict(r)
        for r in session.execute(
            sa.select(ALLOC.c.id, ALLOC.c.line_id, ALLOC.c.sku, ALLOC.c.warehouse, ALLOC.c.qty)
            .where(ALLOC.c.order_id == order_id)
            .order_by(ALLOC.c.id)
        ).mappings()
    ]
    if not allocs:
        return []
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for a in allocs:
        totals[(a["sku"], a["warehouse"])] += a["qty"]
    rows = _lock_stock(session, totals)
    missing = [k for k in totals if k not in rows]
    if missing:  # cannot happen while the FK-free allocation rows match stock; refuse rather than guess
        raise FfctlError(
            _("order {order_id}: reservations in {missing} have no stock row").format(
                order_id=order_id, missing=missing
            )
        )
    by_id = {rows[k]["id"]: -q for k, q in totals.items()}
    _bulk_add(session, "stock", "allocated", by_id, guard="t.allocated + :q >= 0", what=_("stock"))
    if consume:
        _bulk_add(session, "stock", "on_hand", by_id, guard="t.on_hand + :q >= t.allocated", what=_("stock"))
    session.execute(sa.delete(ALLOC).where(ALLOC.c.order_id == order_id))
    return allocs


def release_order(session: Session, order_id: str, *, at: datetime, actor: str) -> int:
    """Free every reservation of an order (cancel calls this); returns the units released.

    A line keeps ``allocated`` = what it shipped: shipped units consumed their reservation already."""
    _lock_order_row(session, order_id)
    allocs = _take_reservations(session, order_id, consume=False)
    session.execute(
        sa.update(LINE)
        .where(LINE.c.order_id == order_id, LINE.c.allocated != LINE.c.shipped)
        .values(allocated=LINE.c.shipped)
    )
    return sum(a["qty"] for a in allocs)


class LineShipment(NamedTuple):
    """What one shipment takes of one order line (``core/shipping.py`` decides, this module moves stock)."""

    line_id: int
    line_sku: str
    sku: str  # what left (a wrong pick differs from line_sku)
    qty: int  # units that left
    counted: int  # units the line counts as shipped (at most what it had left to ship)


class ShippedStock:
    """Stock that shipments take, for many shipments of many orders: planned in memory one
    shipment after another (``take``, in the order they are recorded), written by a few
    set-based statements (``write``). ``shipping.Shipper`` plans them.

    Per line: the units that left come out of the line's reservations first (on hand and allocated
    both fall, warehouse by warehouse), the rest out of unreserved stock of that SKU (on hand falls
    where some is available; what no stock row covers is counted as ``untracked``). A wrong SKU
    consumes none of the line's reservation: the reservation of what the line counts as shipped is
    released. ``order_line.shipped`` grows by ``counted`` and ``allocated`` stays reserved + shipped.

    ``lines``: ``{line_id: (allocated, shipped)}`` of every line the shipments may take from;
    ``skus``: every SKU they may take (lines' and picked). The stock rows of those SKUs are locked
    (with ``all_or_nothing``, as the many-row lockers take them), after the caller locked the orders.
    """

    def __init__(
        self,
        session: Session,
        order_ids: Iterable[str],
        lines: dict[int, tuple[int, int]],
        skus: Iterable[str],
        *,
        lock: bool = True,
        all_or_nothing: bool = False,
        stock: bool = True,
    ) -> None:
        self.lines = {i: [a, s] for i, (a, s) in lines.items()}  # line id -> [allocated, shipped]
        self.allocs: dict[int, list[dict]] = defaultdict(list)
        self.stock = stock  # False: only the lines' states are followed (planning what a batch would do)
        ids = sorted(set(order_ids)) if stock else []
        alloc_skus: set[str] = set()
        for alloc_id, line_id, sku, warehouse, qty in keyed_rows(
            session,
            "SELECT id, line_id, sku, warehouse, qty FROM allocation WHERE {where}",
            "order_id",
            ids,
            tail=" ORDER BY qty DESC, warehouse",
        ):
            self.allocs[line_id].append({"id": alloc_id, "warehouse": warehouse, "qty": qty})
            alloc_skus.add(sku)
        rows = (
            _stock_of_skus(session, sorted(set(skus) | alloc_skus), lock=lock, all_or_nothing=all_or_nothing)
            if stock
            else []
        )
        self.by_sku: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            self.by_sku[r["sku"]].append(r)
        self.row_of = {(r["sku"], r["warehouse"]): r for r in rows}
        self.on_hand_delta: dict[int, int] = defaultdict(int)
        self.alloc_delta: dict[int, int] = defaultdict(int)
        self.alloc_change: dict[int, int] = {}  # allocation id -> new qty (0: deleted)
        self.changed_lines: set[int] = set()
        self.moves: list[tuple] = []  # (sku, warehouse, delta, ref, at)

    def line(self, line_id: int) -> tuple[int, int]:
        """A line's (allocated, shipped) after the shipments taken so far."""
        a, s = self.lines[line_id]
        return a, s

    def take(self, order_id: str, items: Sequence[LineShipment], *, at: datetime, ref: str) -> dict:
        """Plan one shipment (``ref``) of an order; returns ``{"reserved", "unreserved", "untracked"}`` units."""
        moves: dict[tuple[str, str], int] = {}
        reserved = unreserved = untracked = 0
        alloc_change, row_of, alloc_delta, on_hand_delta = (
            self.alloc_change,
            self.row_of,
            self.alloc_delta,
            self.on_hand_delta,
        )
        tracked = self.stock
        for item in items:
            line = self.lines[item.line_id]
            reserved_line = line[0] - line[1]
            take = min(item.counted, reserved_line)  # reservation units this shipment uses up
            left = item.qty if tracked else 0
            right_sku = item.sku == item.line_sku  # the reserved units are the ones that left
            for a in self.allocs.get(item.line_id, ()) if tracked and take > 0 else ():
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
                if right_sku:
                    on_hand_delta[row["id"]] -= n
                    row["on_hand"] -= n
                    key = (item.sku, a["warehouse"])
                    moves[key] = moves.get(key, 0) - n
                    left -= n
                    reserved += n
            # the rest left from unreserved stock: the warehouses with the most available first
            for row in (
                sorted(self.by_sku.get(item.sku, []), key=lambda r: (r["allocated"] - r["on_hand"], r["warehouse"]))
                if left > 0
                else ()
            ):
                if left <= 0:
                    break
                n = min(row["on_hand"] - row["allocated"], left)
                if n <= 0:
                    continue
                on_hand_delta[row["id"]] -= n
                row["on_hand"] -= n
                key = (item.sku, row["warehouse"])
                moves[key] = moves.get(key, 0) - n
                left -= n
                unreserved += n
            if left > 0:
                untracked += left
            reserved_after = reserved_line - min(item.counted, reserved_line)
            line[1] += item.counted
            line[0] = reserved_after + line[1]
            self.changed_lines.add(item.line_id)
        if moves:
            self.moves.extend((k[0], k[1], d, ref, at) for k, d in sorted(moves.items()) if d)
        return {"reserved": reserved, "unreserved": unreserved, "untracked": untracked}

    def write(self, session: Session, *, actor: str) -> None:
        """Write what every ``take`` planned, in the caller's transaction."""
        _take_stock(
            session,
            {
                i: (self.alloc_delta.get(i, 0), self.on_hand_delta.get(i, 0))
                for i in self.alloc_delta.keys() | self.on_hand_delta.keys()
                if self.alloc_delta.get(i, 0) or self.on_hand_delta.get(i, 0)
            },
        )
        gone = sorted(a for a, q in self.alloc_change.items() if q == 0)
        if is_postgresql(session):
            for part in _parts(session, gone):  # among: a hashed semi-join, whatever the statistics say
                session.execute(sa.delete(ALLOC).where(among(session, ALLOC.c.id, part)))
        elif gone:  # the driver's executemany: SQLAlchemy's handling of IN lists cost more than the deletes
            _raw(session).executemany("DELETE FROM allocation WHERE id = ?", [(a,) for a in gone])
        _bulk_set(
            session, "allocation", ("qty",), {a: (q,) for a, q in self.alloc_change.items() if q}, what=_("allocation")
        )
        _bulk_set(
            session,
            "order_line",
            ("allocated", "shipped"),
            {i: tuple(self.lines[i]) for i in self.changed_lines},
            what=_("order line"),
        )
        text = time_texts()
        insert_rows(
            session,
            "stock_move",
            ("sku", "warehouse", "delta", "ref", "at"),
            [(s, w, d, ref, text(at)) for s, w, d, ref, at in self.moves],
            {"kind": "ship", "reason": None, "actor": actor},
        )


def _take_stock(session: Session, deltas: dict[int, tuple[int, int]]) -> None:
    """``allocated += a, on_hand += h`` of each stock row id (``{id: (a, h)}``), one statement (one
    row version each) on PostgreSQL, executemany on SQLite; neither may go below zero nor on hand
    below allocated, else nothing is written (the transaction rolls back)."""
    if not deltas:
        return
    ids = sorted(deltas)
    guard = "t.allocated + {a} >= 0 AND t.on_hand + {h} >= t.allocated + {a}"
    if is_postgresql(session):
        _update_all(
            session,
            "UPDATE stock AS t SET allocated = t.allocated + v.a, on_hand = t.on_hand + v.h "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:adds AS bigint[]), CAST(:hands AS bigint[])) AS v(id, a, h) "
            "WHERE t.id = v.id AND " + guard.format(a="v.a", h="v.h"),
            {
                "ids": int_array(ids),
                "adds": int_array(deltas[i][0] for i in ids),
                "hands": int_array(deltas[i][1] for i in ids),
            },
            len(ids),
            _("stock"),
        )
    else:
        _update_all(
            session,
            "UPDATE stock AS t SET allocated = t.allocated + :a, on_hand = t.on_hand + :h WHERE t.id = :id AND "
            + guard.format(a=":a", h=":h"),
            ({"id": i, "a": deltas[i][0], "h": deltas[i][1]} for i in ids),
            len(ids),
            _("stock"),
        )


def _bulk_set(session: Session, table: str, columns: Sequence[str], values: dict[int, tuple], *, what: str) -> None:
    """Set integer ``columns`` of rows by id: one ``UPDATE ... FROM unnest`` on PostgreSQL, the
    driver's executemany on SQLite; a row that is not there aborts (the transaction rolls back)."""
    if not values:
        return
    ids = sorted(values)
    if is_postgresql(session):
        arrays = ", ".join(f"CAST(:c{n} AS bigint[])" for n in range(len(columns)))
        names = ", ".join(f"c{n}" for n in range(len(columns)))
        sets = ", ".join(f"{c} = v.c{n}" for n, c in enumerate(columns))
        params = {f"c{n}": int_array(values[i][n] for i in ids) for n in range(len(columns))}
        sql = (
            f"UPDATE {table} AS t SET {sets} FROM unnest(CAST(:ids AS bigint[]), {arrays}) "
            f"AS v(id, {names}) WHERE t.id = v.id"
        )
        _update_all(session, sql, {"ids": int_array(ids), **params}, len(ids), what)
    else:
        sql = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?"
        _update_all(session, sql, (values[i] + (i,) for i in ids), len(ids), what)


def cancel_line_units(session: Session, order_id: str, line_id: int, qty: int) -> int:
    """Cancel ``qty`` unshipped units of an order line (its order row locked by the caller),
    releasing as much of its reservation as the line no longer needs; returns units released."""
    line = session.execute(
        sa.select(LINE.c.qty, LINE.c.allocated, LINE.c.shipped, LINE.c.cancelled).where(LINE.c.id == line_id)
    ).one()
    remaining = line.qty - line.cancelled - line.shipped
    if qty > remaining:
        raise Conflict(
            _("order {order_id}: only {remaining} units of the line are left to cancel").format(
                order_id=order_id, remaining=remaining
            )
        )
    reserved = line.allocated - line.shipped
    backordered = remaining - reserved
    release = max(qty - backordered, 0)  # cancel the backorder first, then the reservation
    if release:
        allocs = session.execute(
            sa.select(ALLOC.c.id, ALLOC.c.sku, ALLOC.c.warehouse, ALLOC.c.qty)
            .where(ALLOC.c.line_id == line_id)
            .order_by(ALLOC.c.qty, ALLOC.c.warehouse)
        ).all()
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
    session.execute(
        sa.update(LINE)
        .where(LINE.c.id == line_id)
        .values(cancelled=line.cancelled + qty, allocated=line.allocated - release)
    )
    return release


def deliver(
    session: Session, cfg: Config, order_id: str, *, at: datetime, actor: str, issue: str | None = None
) -> bool:
    """Record a delivery (with an optional issue); True if recorded, False if already recorded so."""
    return deliver_many(session, cfg, [(order_id, at, issue)], actor=actor)[0]


def deliver_many(
    session: Session, cfg: Config, deliveries: Sequence[tuple[str, datetime, str | None]], *, actor: str
) -> list[bool]:
    """Record deliveries ``(order_id, at, issue)``: per delivery True if recorded, False if the
    order was already recorded as delivered so. The orders are read (and locked, PostgreSQL) and
    their timelines checked together, and the rows written in a few statements: an hour's
    deliveries cost about what one does. The first refused delivery raises (the caller's
    transaction then writes none of them)."""
    from ffctl.core.models import Delivery

    for _order_id, _at, issue in deliveries:
        if issue is not None and issue not in DELIVERY_ISSUES:
            raise UsageError(
                _("unknown delivery issue {issue!r}: use one of {names}").format(
                    issue=issue, names=", ".join(DELIVERY_ISSUES)
                )
            )
    orders = _lock_order_rows(session, [order_id for order_id, _at, _issue in deliveries])
    done: dict[str, tuple[datetime, str | None]] = {}  # delivered by this call
    todo: list[tuple[str, datetime, str | None]] = []
    recorded: list[bool] = []
    for order_id, at, issue in deliveries:
        order = orders.get(order_id)
        if order is None:
            raise _no_order(order_id)
        status = "delivered" if order_id in done else order["status"]
        if status == "delivered":
            found = done.get(order_id)
            if found is None:
                row = session.get(Delivery, order_id)
                found = (row.delivered_at, row.issue) if row is not None else None
            if found == (at, issue):
                recorded.append(False)
                continue
            when = shown(found[0] if found else None, cfg.timezone)
            raise Conflict(_("order {order_id} was already delivered (at {when})").format(order_id=order_id, when=when))
        if status != "shipped":
            where = _(" at node {node}").format(node=order["node"]) if order["node"] else ""
            raise Conflict(
                _("order {order_id} has not shipped (it is {status}{where}); record the shipment first").format(
                    order_id=order_id, status=status, where=where
                ),
                hint=_("`{command}`").format(command=command("ship", order_id)),
            )
        done[order_id] = (at, issue)
        todo.append((order_id, at, issue))
        recorded.append(True)
    if not todo:
        return recorded
    # not before its shipment, nor any later event
    audit.refuse_earlier_many(session, [(order_id, at) for order_id, at, _issue in todo], cfg.timezone)
    session.execute(
        sa.insert(Delivery.__table__),
        [{"order_id": order_id, "delivered_at": at, "issue": issue} for order_id, at, issue in todo],
    )
    session.execute(_DELIVERED, [{"order_id_": order_id, "at_": at, "issue_": issue} for order_id, at, issue in todo])
    audit.record_many(
        session,
        [
            {
                "event": "delivered",
                "at": at,
                "actor": actor,
                "order_id": order_id,
                "node": orders[order_id]["node"],
                "detail": _("issue: {issue}").format(issue=issue) if issue else _("delivered without issue"),
            }
            for order_id, at, issue in todo
        ],
    )
    return recorded
