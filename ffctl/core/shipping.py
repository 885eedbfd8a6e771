"""Shipments (SPEC 9.2): an order ships in as many parts as the warehouse has stock for.

Per order line, with ``allocated`` = units served from stock (reserved now + shipped):

    reserved    = allocated - shipped
    to ship     = qty - cancelled - shipped
    backordered = qty - cancelled - allocated

- ``ship`` records one shipment: without lines, every reserved unit (an order whose workflow
  reserves nothing ships everything left); with lines, those quantities, never more than the
  line has reserved (or, reserving nothing, left to ship). Stock moves in ``stock.ShippedStock``,
  in the same transaction.
- An import's rows are what left: a different SKU or more units than the line had left to
  ship is a pick error (kept in ``pick_line``), a right pick its shipment line's ``picked_right``;
  stock moves for what left all the same.
- The order's ``auto = "ship"`` node completes, and the order becomes ``shipped`` (its
  ``shipped_at`` the last shipment's time), once every unit is shipped or cancelled; until then
  it is open, shown as ``partially_shipped`` once something left (``display_status``).
- ``cancel_lines`` cancels remainders and releases their reservations; cancelling everything
  left of a partially shipped order completes it as shipped.

The order row is locked first (as every order writer does), then stock: two ``ship`` runs on
one order are serial, and the second sees what the first took.

One path for one shipment and for thousands: a ``Shipper`` reads its orders, lines, shipments and
stock once, checks and plans each shipment in memory in the order given (a refused one changes
nothing), and writes them all with a few set-based statements. ``ship`` is a Shipper of one;
``import shipments`` is one per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit, stock
from ffctl.core.bulk import insert_rows, keyed_rows, text_array, time_texts
from ffctl.core.clock import shown
from ffctl.core.csvio import from_stored
from ffctl.core.csvio import stored_time as stored_text
from ffctl.core.errors import Conflict, NotFound, PermissionDenied, UsageError
from ffctl.core.models import Order, OrderLine, PickLine, Shipment, ShipmentLine
from ffctl.core.stock import reservations
from ffctl.core.store import is_postgresql
from ffctl.core.text import command
from ffctl.core.workflow.moves import OpenTask
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

ORDERS = Order.__table__
LINE = OrderLine.__table__
SHIPMENT = Shipment.__table__
SHIPMENT_LINE = ShipmentLine.__table__
PICK = PickLine.__table__

PARTIALLY_SHIPPED = "partially_shipped"


def display_status(status: str, shipped_units: int) -> str:
    """The status users see: an open order something has left for is ``partially_shipped``."""
    return PARTIALLY_SHIPPED if status == "open" and shipped_units > 0 else status


def partially_shipped_sql(orders_alias: str = "orders") -> str:
    """SQL condition on an orders row: open, and some unit has shipped (``order list --status``)."""
    return (
        f"{orders_alias}.status = 'open' AND EXISTS (SELECT 1 FROM shipment sh "
        f"WHERE sh.order_id = {orders_alias}.order_id)"
    )


@dataclass
class _Line:
    id: int
    line_no: int
    sku: str
    qty: int
    allocated: int
    shipped: int
    cancelled: int

    @property
    def reserved(self) -> int:
        return self.allocated - self.shipped

    @property
    def to_ship(self) -> int:
        return self.qty - self.cancelled - self.shipped


def _lines(session: Session, order_id: str) -> dict[int, _Line]:
    c = LINE.c
    return {
        r.line_no: _Line(*r)
        for r in session.execute(
            sa.select(c.id, c.line_no, c.sku, c.qty, c.allocated, c.shipped, c.cancelled)
            .where(c.order_id == order_id)
            .order_by(c.line_no)
        )
    }


def parse_line_spec(text: str, *, qty_optional: bool = False) -> tuple[int, int | None]:
    """``LINE_NO:QTY`` (``LINE_NO`` alone with ``qty_optional``) -> (line_no, qty or None)."""
    head, sep, tail = text.partition(":")
    try:
        line_no = int(head.strip())
        qty = int(tail.strip()) if sep else None
    except ValueError:
        raise UsageError(_("--line {text!r}: use LINE_NO:QTY with whole numbers, e.g. 1:4").format(text=text)) from None
    if qty is None and not qty_optional:
        raise UsageError(
            _("--line {text!r}: say how many units, as LINE_NO:QTY (e.g. {n}:4)").format(text=text, n=line_no)
        )
    if line_no <= 0:
        raise UsageError(_("--line {text!r}: line numbers start at 1").format(text=text))
    if qty is not None and qty <= 0:
        raise UsageError(_("--line {text!r}: the quantity must be a positive whole number").format(text=text))
    return line_no, qty


def _reserving(cfg: Config, order) -> bool:
    """Does the order's workflow reserve stock (has an ``auto = "allocate"`` node)?"""
    wf = next((w for w in cfg.workflows if w.name == order["workflow"]), None)
    return wf is not None and any(cfg.nodes[n].auto == "allocate" for n in wf.nodes if n in cfg.nodes)


def _unknown_line(order_id: str, line_no: int, lines: dict[int, _Line]) -> NotFound:
    return NotFound(
        _("order {order} has no line {line} (its lines: {lines})").format(
            order=order_id, line=line_no, lines=", ".join(map(str, lines)) or "none"
        ),
        hint=_("`{cmd}` lists its lines.").format(cmd=command("order", "show", order_id)),
    )


def _shipments(session: Session, order_id: str) -> list[dict]:
    rows = (
        session.execute(
            sa.select(SHIPMENT)
            .where(SHIPMENT.c.order_id == order_id)
            .order_by(SHIPMENT.c.shipped_at, SHIPMENT.c.shipment_id)
        )
        .mappings()
        .all()
    )
    lines: dict[str, list[tuple]] = {}
    for r in session.execute(
        sa.select(SHIPMENT_LINE.c.shipment_id, SHIPMENT_LINE.c.line_no, SHIPMENT_LINE.c.sku, SHIPMENT_LINE.c.qty)
        .where(SHIPMENT_LINE.c.order_id == order_id)
        .order_by(SHIPMENT_LINE.c.line_no)
    ):
        lines.setdefault(r.shipment_id, []).append((r.line_no, r.sku, r.qty))
    return [dict(r, lines=lines.get(r["shipment_id"], [])) for r in rows]


def _same(given, stored) -> bool:
    return given is None or given == stored


def _already(shipments: list[dict], at: datetime, carrier, tracking, lines: list[tuple] | None) -> dict | None:
    """The recorded shipment this one repeats (same time, carrier, tracking, and lines when given)."""
    for sh in shipments:
        if (
            sh["shipped_at"] == at
            and _same(carrier, sh["carrier"])
            and _same(tracking, sh["tracking"])
            and (lines is None or sorted(lines) == sorted((ln, q) for ln, _s, q in sh["lines"]))
        ):
            return sh
    return None


def _check_node(session: Session, cfg: Config, order, actor: str, manual: bool) -> None:
    from ffctl.core import workflow

    order_id, node = order["order_id"], order["node"]
    spec = cfg.nodes.get(node) if node else None
    if node is not None and (spec is None or spec.auto != "ship"):
        ship_nodes = [n for n, s in cfg.nodes.items() if s.auto == "ship"]
        owner = (
            _(" (owner {owner})").format(owner=spec.owner)
            if spec is not None and spec.owner
            else (
                _(" (completed by `ffctl {command}`)").format(command=spec.auto)
                if spec is not None and spec.auto
                else ""
            )
        )
        raise Conflict(
            _("order {order_id} is at node {node}{owner}; it can ship only from ").format(
                order_id=order_id, node=node, owner=owner
            )
            + (" or ".join(ship_nodes) if ship_nodes else _('a node with auto = "ship"')),
            hint=_("`{command}` shows where it is.").format(command=command("order", "show", order_id)),
        )
    if manual and node is not None:
        task = workflow.current_task(session, order_id, lock=True)
        if task is not None and not workflow.may_act(session, cfg, task, actor):
            need = " or ".join(workflow.assignees(session, task) + ["admin"])
            raise PermissionDenied(
                _("{actor} may not ship order {order_id} from {node}: it needs a member of {need}").format(
                    actor=actor, order_id=order_id, node=node, need=need
                )
            )


@dataclass(frozen=True)
class ShipmentRequest:
    """One shipment to record: ``lines`` (``(line_no, qty)``) is a person's ``ship --line``,
    refused beyond what the line has reserved; ``picks`` (``(line_no, sku or None, qty)``) what
    an import's rows say left; neither: every reserved unit."""

    order_id: str
    at: datetime
    carrier: str | None = None
    tracking: str | None = None
    lines: Sequence[tuple[int, int]] | None = None
    picks: Sequence[tuple[int, str | None, int]] | None = None
    shipment_id: str | None = None


class _Finished(NamedTuple):
    """An order every unit of which is now shipped or cancelled."""

    order_id: str
    node: str | None  # its current node (None: its workflow has finished)
    at: datetime  # when (the ship node completes then)
    shipped_at: datetime  # its last shipment's time
    carrier: str | None
    tracking: str | None


@dataclass
class _OrderState:
    row: dict  # order_id, status, node, workflow
    task: OpenTask | None = None
    lines: dict[int, _Line] = field(default_factory=dict)
    shipments: list[dict] = field(default_factory=list)  # recorded, by time: shipment_id, shipped_at, ..., lines
    latest: tuple[datetime, str] | None = None  # its latest event, when later than the earliest request


def _aware(value) -> datetime:
    """A time read through the driver (``bulk.keyed_rows``) as an aware UTC datetime."""
    return from_stored(value) if isinstance(value, str) else value.replace(tzinfo=timezone.utc)


def _aware_times():
    """``_aware``, remembered: a batch's tasks share a handful of deadlines."""
    memo: dict = {}

    def aware(value) -> datetime:
        found = memo.get(value)
        if found is None:
            found = memo[value] = _aware(value)
        return found

    return aware


class Shipper:
    """Shipments of many orders: the store read once (orders and stock locked), each shipment
    checked and planned in memory in the order given (``plan``), all written by a few set-based
    statements (``write``). The one path of the rules above: ``ship`` is one shipment of it,
    ``import shipments`` a batch (``many``: stock locked as many-row lockers take it)."""

    def __init__(
        self,
        session: Session,
        cfg: Config,
        requests: Sequence[ShipmentRequest],
        *,
        actor: str,
        write: bool = True,
        many: bool = False,
    ) -> None:
        """``write`` False: only ``plan`` (what each shipment would do; nothing locked, stock not read)."""
        self.session, self.cfg, self.actor, self.writes = session, cfg, actor, write
        lock = write
        self.orders: dict[str, _OrderState] = {}
        ids = sorted({r.order_id for r in requests})
        aware = _aware_times()
        # with its open task, which the ship node's completion closes (``_complete``)
        for oid, status, node, workflow, tid, tnode, twf, seq, deadline, held in keyed_rows(
            session,
            "SELECT o.order_id, o.status, o.node, o.workflow, t.id, t.node, t.workflow, t.seq, t.deadline, t.held_at "
            "FROM orders o LEFT JOIN task t ON t.order_id = o.order_id AND t.status = 'open' WHERE {where}",
            "o.order_id",
            ids,
            tail=" ORDER BY o.order_id FOR UPDATE OF o" if lock and is_postgresql(session) else "",
        ):
            self.orders[oid] = _OrderState(
                {"order_id": oid, "status": status, "node": node, "workflow": workflow},
                None
                if tid is None
                else OpenTask(tid, oid, tnode, twf, seq, None if deadline is None else aware(deadline), held),
            )
        known = sorted(self.orders)
        given = sorted({r.shipment_id for r in requests if r.shipment_id is not None})
        self.owner: dict[str, str] = {}  # shipment id -> its order, of every shipment id looked at
        orders = self.orders
        for row in keyed_rows(
            session,
            "SELECT order_id, id, line_no, sku, qty, allocated, shipped, cancelled FROM order_line WHERE {where}",
            "order_id",
            known,
            tail=" ORDER BY order_id, line_no",
        ):
            orders[row[0]].lines[row[2]] = _Line(*row[1:])
        recorded = {
            sid: {
                "shipment_id": sid,
                "order_id": oid,
                "shipped_at": _aware(at),
                "carrier": carrier,
                "tracking": tracking,
                "lines": [],
            }
            for sid, oid, at, carrier, tracking in keyed_rows(
                session,
                "SELECT shipment_id, order_id, shipped_at, carrier, tracking FROM shipment WHERE {where}",
                "order_id",
                known,
            )
        }
        if recorded:
            for sid, line_no, sku, qty in keyed_rows(
                session,
                "SELECT shipment_id, line_no, sku, qty FROM shipment_line WHERE {where}",
                "order_id",
                known,
                tail=" ORDER BY line_no",
            ):
                recorded[sid]["lines"].append((line_no, sku, qty))
            for sid, sh in recorded.items():
                orders[sh["order_id"]].shipments.append(sh)
                self.owner[sid] = sh["order_id"]
            for st in orders.values():
                st.shipments.sort(key=_SHIPMENT_ORDER)
        # the ids looked up: those given, and the next few "<order>/<n>" ids each order may take
        unnamed: dict[str, int] = {}
        for r in requests:
            if r.shipment_id is None and r.order_id in self.orders:
                unnamed[r.order_id] = unnamed.get(r.order_id, 0) + 1
        wanted = given + [
            f"{oid}/{len(self.orders[oid].shipments) + k}" for oid, n in unnamed.items() for k in range(1, n + 1)
        ]
        self.looked_up = set(wanted)
        self._look_up(wanted)
        if requests and known:
            earliest = min(r.at for r in requests)
            for oid, latest in audit.later_events(session, known, earliest).items():
                self.orders[oid].latest = latest
        skus = {x.sku for st in self.orders.values() for x in st.lines.values()}
        skus |= {sku for r in requests for _ln, sku, _q in (r.picks or ()) if sku is not None}
        self.stock: stock.ShippedStock = stock.ShippedStock(
            session,
            known,
            {x.id: (x.allocated, x.shipped) for st in self.orders.values() for x in st.lines.values()},
            skus,
            lock=lock,
            all_or_nothing=many,
            stock=write,
        )
        self.shipment_rows: list[tuple] = []
        self.line_rows: list[tuple] = []
        self.pick_rows: list[tuple] = []
        self.events: list[dict] = []  # "shipped" of shipments that leave something to ship
        self.last_events: list[dict] = []  # ... and of those that finish their order (after its node completes)
        self.finished: list[_Finished] = []
        self.reserving: dict[str | None, bool] = {}  # workflow -> whether it reserves stock
        self.ship_nodes = frozenset(n for n, spec in cfg.nodes.items() if spec.auto == "ship")  # _check_node passes
        self.text = time_texts()  # a batch's shipments repeat a few times
        self.words = _DetailWords()

    def known(self, order_id: str) -> bool:
        return order_id in self.orders

    def _look_up(self, ids: Sequence[str]) -> None:
        self.owner.update(
            keyed_rows(
                self.session,
                "SELECT shipment_id, order_id FROM shipment WHERE {where}",
                "shipment_id",
                sorted(set(ids)),
            )
        )

    def _next_id(self, order_id: str) -> str:
        n = len(self.orders[order_id].shipments) + 1
        while True:
            sid = f"{order_id}/{n}"
            if sid not in self.looked_up:
                self.looked_up.add(sid)
                self._look_up([sid])
            if sid not in self.owner:
                return sid
            n += 1

    def plan(self, req: ShipmentRequest, *, manual: bool = False) -> dict | None:
        """Check one shipment against the store as the shipments planned before it left it, and plan
        it; None if exactly this shipment was recorded already. Raises ``FfctlError`` (nothing of it
        planned) when it is refused. Returns ``{shipment_id, order_id, at, lines: [{line_no, sku,
        qty, error}], units, complete, status, still_to_ship}``."""
        order_id, at, carrier, tracking, picks = req.order_id, req.at, req.carrier, req.tracking, req.picks
        st = self.orders.get(order_id)
        if st is None:
            raise NotFound(
                _("no order {order_id!r}").format(order_id=order_id),
                hint=_("`ffctl order list` shows the orders in the store."),
            )
        order, cfg = st.row, self.cfg
        status = order["status"]
        tz = cfg.timezone
        shipments = st.shipments
        if req.shipment_id is not None:
            owner = self.owner.get(req.shipment_id)
            if owner is not None:
                if owner != order_id:
                    raise Conflict(
                        _("shipment {id} belongs to order {other}, not {order}").format(
                            id=req.shipment_id, other=owner, order=order_id
                        )
                    )
                return None
        wanted: list[tuple[int, str | None, int]] | None = None
        if req.lines is not None:
            wanted = [(ln, None, q) for ln, q in req.lines]
        elif picks is not None:
            wanted = [(ln, s, q) for ln, s, q in picks if q > 0]
        if req.shipment_id is None and shipments:
            same_lines = None if not wanted else [(ln, q) for ln, _s, q in wanted]
            repeat = _already(shipments, at, carrier, tracking, same_lines)
            # the same shipment again: an import's rows, a person's same --line, or a plain `ship` with nothing left
            if repeat is not None and (
                picks is not None
                or same_lines is not None
                or status in ("shipped", "delivered")
                or not any(x.reserved for x in st.lines.values())
            ):
                return None
        if status in ("shipped", "delivered"):
            last = shipments[-1] if shipments else None
            raise Conflict(
                _("order {order_id} was already shipped (at {shown}").format(
                    order_id=order_id, shown=shown(last["shipped_at"] if last else None, tz)
                )
                + (_(", {carrier}").format(carrier=last["carrier"]) if last and last["carrier"] else "")
                + ")"
            )
        if status == "cancelled":
            raise Conflict(_("order {order_id} is cancelled; it cannot ship").format(order_id=order_id))
        if status == "on_hold":
            raise Conflict(
                _("order {order_id} is on hold; release it before shipping").format(order_id=order_id),
                hint=_("`{command}`").format(command=command("order", "release", order_id)),
            )
        if manual or (order["node"] is not None and order["node"] not in self.ship_nodes):
            _check_node(self.session, cfg, order, self.actor, manual)
        if st.latest is not None and st.latest[0] > at:
            raise audit.earlier_conflict(order_id, at, st.latest, tz)
        reserving = self.reserving.get(order["workflow"])
        if reserving is None:
            reserving = self.reserving[order["workflow"]] = _reserving(cfg, order)
        items, out_lines, errors = _decide(
            order_id,
            st.lines,
            wanted,
            picks is not None and bool(wanted),
            reserving or any(x.allocated > x.shipped for x in st.lines.values()),
        )
        # nothing below refuses: the shipment is planned
        sid = req.shipment_id or self._next_id(order_id)
        taken = self.stock
        moved = taken.take(order_id, items, at=at, ref=sid)
        left = 0
        for line in st.lines.values():
            line.allocated, line.shipped = taken.line(line.id)
            left += line.qty - line.cancelled - line.shipped
        if st.latest is None or st.latest[0] < at:
            st.latest = (at, "shipped")
        rows: dict[int, list] = {}
        for ln in out_lines:  # one row per line (a line reported twice in one shipment is summed)
            no = ln["line_no"]
            if no in rows:
                rows[no][1] += ln["qty"]
            else:
                rows[no] = [ln["sku"], ln["qty"]]
        shipments.append(
            {
                "shipment_id": sid,
                "order_id": order_id,
                "shipped_at": at,
                "carrier": carrier,
                "tracking": tracking,
                "lines": [(no, sku, qty) for no, (sku, qty) in sorted(rows.items())],
            }
        )
        if len(shipments) > 1 and _SHIPMENT_ORDER(shipments[-2]) > _SHIPMENT_ORDER(shipments[-1]):
            shipments.sort(key=_SHIPMENT_ORDER)
        self.owner[sid] = order_id
        if left == 0:
            order["status"] = "shipped"
        if not self.writes:
            return {"shipment_id": sid, "order_id": order_id, "complete": left == 0}
        when = self.text(at)
        self.shipment_rows.append((sid, order_id, when, carrier, tracking))
        right = {ln for ln, _s, _q, e in errors if e is None}  # pick accuracy's right picks: flags, no rows
        line_rows = self.line_rows
        for no, (sku, qty) in rows.items():
            line_rows.append((sid, order_id, no, sku, qty, int(no in right)))
        if len(right) < len(errors):
            self.pick_rows.extend((order_id, sid, ln, s, q, e) for ln, s, q, e in errors if e is not None)
        units = sum(ln["qty"] for ln in out_lines)
        node = order["node"]
        if left == 0:
            last = shipments[-1]
            self.finished.append(
                _Finished(
                    order_id,
                    node,
                    at,
                    last["shipped_at"],
                    carrier if carrier is not None else last["carrier"],
                    tracking if tracking is not None else last["tracking"],
                )
            )
        (self.last_events if left == 0 else self.events).append(
            {
                "event": "shipped",
                "at": at,
                "actor": self.actor,
                "order_id": order_id,
                "node": node,
                "detail": _shipped_detail(sid, out_lines, carrier, tracking, moved, left, self.words),
            }
        )
        return {
            "shipment_id": sid,
            "order_id": order_id,
            "at": at,
            "carrier": carrier,
            "tracking": tracking,
            "lines": out_lines,
            "units": units,
            "complete": left == 0,
            "status": "shipped" if left == 0 else PARTIALLY_SHIPPED,
            "still_to_ship": left,
        }

    def write(self) -> None:
        """Write every planned shipment, in the caller's transaction."""
        session = self.session
        self.stock.write(session, actor=self.actor)
        insert_rows(
            session, "shipment", ("shipment_id", "order_id", "shipped_at", "carrier", "tracking"), self.shipment_rows
        )
        insert_rows(
            session,
            "shipment_line",
            ("shipment_id", "order_id", "line_no", "sku", "qty", "picked_right"),
            self.line_rows,
        )
        insert_rows(session, "pick_line", ("order_id", "shipment_id", "line_no", "sku", "qty", "error"), self.pick_rows)
        audit.record_many(session, self.events)
        orders = self.orders
        _complete(
            session,
            self.cfg,
            self.finished,
            actor=self.actor,
            tasks=[t for t in (orders[f.order_id].task for f in self.finished if f.node is not None) if t is not None],
        )
        audit.record_many(session, self.last_events)


_SHIPMENT_ORDER = itemgetter("shipped_at", "shipment_id")


def _decide(
    order_id: str, by_no: dict[int, _Line], wanted: list[tuple] | None, picked: bool, reserving: bool
) -> tuple[list, list[dict], list[tuple]]:
    """What one shipment takes of each line: ``(stock.LineShipment items, lines shown, pick rows)``.

    ``picked`` (an import's rows): what left, a different SKU or more units than the line had left
    to ship a pick error, stock moving for what left. Otherwise a person's quantities (``wanted``;
    None: everything reserved, or left to ship when the workflow reserves nothing), refused beyond it.
    """
    items: list[stock.LineShipment] = []
    out_lines: list[dict] = []
    errors: list[tuple] = []  # pick rows: (line_no, sku, qty, error)
    if picked:
        assert wanted is not None  # an import's picks
        seen: dict[int, int] = {}
        for line_no, sku, qty in wanted:
            line = by_no.get(line_no)
            if line is None:
                raise _unknown_line(order_id, line_no, by_no)
            sku = sku or line.sku  # a row without a sku ships the line's
            left = line.to_ship - seen.get(line_no, 0)
            error = "wrong_sku" if sku != line.sku else ("too_many" if qty > left else None)
            counted = min(qty, max(left, 0))
            seen[line_no] = seen.get(line_no, 0) + counted
            items.append(stock.LineShipment(line.id, line.sku, sku, qty, counted))
            out_lines.append({"line_no": line_no, "sku": sku, "qty": qty, "error": error})
            errors.append((line_no, sku, qty, error))
        return items, out_lines, errors
    asked: dict[int, int] = {}
    if wanted is not None:
        for line_no, _sku, qty in wanted:
            if line_no not in by_no:
                raise _unknown_line(order_id, line_no, by_no)
            if qty <= 0:
                raise UsageError(
                    _("line {line}: the quantity must be a positive whole number, not {qty}").format(
                        line=line_no, qty=qty
                    )
                )
            asked[line_no] = asked.get(line_no, 0) + qty
    else:
        asked = {no: (x.reserved if reserving else x.to_ship) for no, x in by_no.items()}
        asked = {no: q for no, q in asked.items() if q > 0}
        if not asked:
            raise Conflict(
                _("order {order} has nothing allocated and unshipped to ship").format(order=order_id),
                hint=_("`{cmd}` reserves stock for it; `{show}` shows what is backordered.").format(
                    cmd=command("allocate", order_id), show=command("order", "show", order_id)
                ),
            )
    over = []
    for line_no, qty in sorted(asked.items()):
        line = by_no[line_no]
        can = line.reserved if reserving else line.to_ship
        if qty > can:
            over.append(
                _("line {line} ({sku}) has {can} allocated and unshipped, not {qty}").format(
                    line=line_no, sku=line.sku, can=can, qty=qty
                )
                if reserving
                else _("line {line} ({sku}) has {can} left to ship, not {qty}").format(
                    line=line_no, sku=line.sku, can=can, qty=qty
                )
            )
    if over:
        raise Conflict(
            _("order {order}: cannot ship more than is allocated: {what}; nothing was shipped").format(
                order=order_id, what="; ".join(over)
            ),
            hint=_("`{cmd}` shows what each line has allocated.").format(cmd=command("order", "show", order_id)),
        )
    for line_no, qty in sorted(asked.items()):
        line = by_no[line_no]
        items.append(stock.LineShipment(line.id, line.sku, line.sku, qty, qty))
        out_lines.append({"line_no": line_no, "sku": line.sku, "qty": qty, "error": None})
    return items, out_lines, errors


class _DetailWords:
    """The "shipped" detail's words, translated once per Shipper (a batch says them thousands of times)."""

    def __init__(self) -> None:
        self.shipment, self.carrier, self.tracking = (
            _("shipment {id}"),
            _("carrier {carrier}"),
            _("tracking {tracking}"),
        )
        self.counts: dict[tuple[str, int], str] = {}

    def count(self, what: str, n: int) -> str:
        found = self.counts.get((what, n))
        if found is None:
            if what == "reserved":
                text = ngettext("{n} unit from reservations", "{n} units from reservations", n)
            elif what == "untracked":
                text = ngettext("{n} unit not in the stock records", "{n} units not in the stock records", n)
            else:
                text = ngettext("{n} unit still to ship", "{n} units still to ship", n)
            found = self.counts[(what, n)] = text.format(n=n)
        return found


def _shipped_detail(
    sid: str, out_lines: list[dict], carrier, tracking, moved: dict, left: int, words: _DetailWords | None = None
) -> str:
    """The "shipped" event's detail: the shipment, its lines, carrier, where its units came from, what is left."""
    words = words or _DetailWords()
    notes = [
        words.shipment.format(id=sid),
        ", ".join(
            f"L{ln['line_no']} {ln['sku']} {ln['qty']}" + (f" ({ln['error'].replace('_', ' ')})" if ln["error"] else "")
            for ln in out_lines
        ),
    ]
    if carrier:
        notes.append(words.carrier.format(carrier=carrier))
    if tracking:
        notes.append(words.tracking.format(tracking=tracking))
    if moved["reserved"]:
        notes.append(words.count("reserved", moved["reserved"]))
    if moved["untracked"]:
        notes.append(words.count("untracked", moved["untracked"]))
    if left:
        notes.append(words.count("left", left))
    return "; ".join(notes)


def ship(
    session: Session,
    cfg: Config,
    order_id: str,
    *,
    at: datetime,
    actor: str,
    carrier: str | None = None,
    tracking: str | None = None,
    lines: Sequence[tuple[int, int]] | None = None,
    picks: Sequence[tuple[int, str, int]] | None = None,
    shipment_id: str | None = None,
    manual: bool = False,
) -> dict | None:
    """Record one shipment of an order (a ``Shipper`` of one); None if exactly this shipment was
    recorded already. ``lines``/``picks``: see ``ShipmentRequest``; ``manual``: a person's ``ffctl
    ship``, allowed to the ship node's people. Returns what ``Shipper.plan`` does."""
    request = ShipmentRequest(order_id, at, carrier, tracking, lines, picks, shipment_id)
    shipper = Shipper(session, cfg, [request], actor=actor)
    done = shipper.plan(request, manual=manual)
    if done is not None:
        shipper.write()
    return done


def _complete(
    session: Session, cfg: Config, finished: Sequence[_Finished], *, actor: str, tasks: list | None = None
) -> None:
    """Every unit shipped or cancelled: the ship node completes (at each order's own time) and the
    order is shipped, with its last shipment's time, carrier and tracking, at its next node; set-based,
    one UPDATE of each order. ``tasks``: the orders' open tasks, when the caller has read them."""
    from ffctl.core import workflow

    if not finished:
        return
    at_of = {f.order_id: f.at for f in finished if f.node is not None}
    moved: dict[str, str | None] = {}
    if at_of:  # while the order is still open: complete_auto moves open orders only
        moved = workflow.complete_auto_moves(
            session, cfg, list(at_of), "ship", at=at_of, actor=actor, tasks=tasks, move_orders=False
        )
    last = {f.order_id: f for f in finished}
    ids = sorted(last)
    nodes = [moved.get(i, last[i].node) for i in ids]  # an order not moved stays where it is
    if is_postgresql(session):
        session.execute(
            sa.text(
                "UPDATE orders AS o SET status = 'shipped', shipped_at = v.at, carrier = v.carrier, "
                "tracking = v.tracking, node = v.node FROM unnest(CAST(:ids AS text[]), CAST(:ats AS timestamp[]), "
                "CAST(:carriers AS text[]), CAST(:trackings AS text[]), CAST(:nodes AS text[])) "
                "AS v(id, at, carrier, tracking, node) WHERE o.order_id = v.id"
            ),
            {
                "ids": text_array(ids),
                "ats": text_array(stored_text(last[i].shipped_at) for i in ids),
                "carriers": text_array(last[i].carrier for i in ids),
                "trackings": text_array(last[i].tracking for i in ids),
                "nodes": text_array(nodes),
            },
        )
        return
    session.flush()
    raw: Any = session.connection().connection.driver_connection
    text = time_texts()
    raw.executemany(
        "UPDATE orders SET status = 'shipped', shipped_at = ?, carrier = ?, tracking = ?, node = ? WHERE order_id = ?",
        [(text(last[i].shipped_at), last[i].carrier, last[i].tracking, n, i) for i, n in zip(ids, nodes)],
    )


def cancel_lines(
    session: Session,
    cfg: Config,
    order_id: str,
    lines: Iterable[tuple[int, int | None]],
    *,
    at: datetime,
    actor: str,
    reason: str,
) -> dict:
    """Cancel what is left of some lines (``(line_no, qty or None = all left)``), releasing their
    reservations. Cancelling everything left of an order that shipped something completes it as
    shipped; of an order nothing shipped for, it is refused (cancel the order instead)."""
    if not reason or not reason.strip():
        raise UsageError(_("--reason is required: say why the lines are cancelled"))
    order = reservations._lock_order_row(session, order_id)
    status = order["status"]
    if status in ("shipped", "delivered", "cancelled"):
        raise Conflict(_("order {order} is {status}; nothing is left to cancel").format(order=order_id, status=status))
    audit.refuse_earlier(session, order_id, at, cfg.timezone)
    by_no = _lines(session, order_id)
    asked: dict[int, int] = {}
    for line_no, qty in lines:
        line = by_no.get(line_no)
        if line is None:
            raise _unknown_line(order_id, line_no, by_no)
        asked[line_no] = asked.get(line_no, 0) + (line.to_ship if qty is None else qty)
    over = [
        _("line {line} has {left} left to ship, not {qty}").format(line=no, left=by_no[no].to_ship, qty=q)
        for no, q in sorted(asked.items())
        if q > by_no[no].to_ship or q <= 0
    ]
    if over:
        raise Conflict(
            _("order {order}: cannot cancel {what}; nothing was cancelled").format(order=order_id, what="; ".join(over))
        )
    shipped_any = any(x.shipped for x in by_no.values())
    left_after = sum(x.to_ship for x in by_no.values()) - sum(asked.values())
    if left_after == 0 and not shipped_any:
        raise Conflict(
            _("that cancels every unit of order {order}: cancel the order instead").format(order=order_id),
            hint=_("`{cmd}`").format(cmd=command("order", "cancel", order_id, "--reason", reason)),
        )
    released = 0
    for line_no, qty in sorted(asked.items()):
        released += stock.cancel_line_units(session, order_id, by_no[line_no].id, qty)
    node = order["node"]
    detail = ", ".join(f"L{no} {by_no[no].sku} {q}" for no, q in sorted(asked.items())) + f"; {reason}"
    if released:
        detail += ngettext("; released {n} reserved unit", "; released {n} reserved units", released).format(n=released)
    audit.record(session, event="line_cancelled", at=at, actor=actor, order_id=order_id, node=node, detail=detail)
    if left_after == 0:
        last = session.execute(
            sa.select(SHIPMENT.c.shipped_at, SHIPMENT.c.carrier, SHIPMENT.c.tracking)
            .where(SHIPMENT.c.order_id == order_id)
            .order_by(SHIPMENT.c.shipped_at.desc(), SHIPMENT.c.shipment_id.desc())
            .limit(1)
        ).first()
        _complete(
            session,
            cfg,
            [
                _Finished(
                    order_id,
                    node,
                    at,
                    last.shipped_at if last else at,
                    last.carrier if last else None,
                    last.tracking if last else None,
                )
            ],
            actor=actor,
        )
    return {
        "order_id": order_id,
        "lines": [{"line_no": no, "cancelled": q} for no, q in sorted(asked.items())],
        "released": released,
        "still_to_ship": left_after,
        "status": "shipped" if left_after == 0 else display_status("open", int(shipped_any)),
    }


def shipped_units(session: Session, order_id: str) -> int:
    return session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(LINE.c.shipped), 0)).where(LINE.c.order_id == order_id)
    ).scalar_one()
