"""Shipments (SPEC 9.2): an order ships in as many parts as the warehouse has stock for.

Per order line, with ``allocated`` = units served from stock (reserved now + shipped):

    reserved    = allocated - shipped
    to ship     = qty - cancelled - shipped
    backordered = qty - cancelled - allocated

- ``ship`` records one shipment: without lines, every reserved unit (an order whose workflow
  reserves nothing ships everything left); with lines, those quantities, never more than the
  line has reserved (or, reserving nothing, left to ship). Stock moves in ``stock.ship_lines``,
  in the same transaction.
- An import's rows are what left: a different SKU or more units than the line had left to
  ship is a pick error (kept in ``pick_line``); stock moves for what left all the same.
- The order's ``auto = "ship"`` node completes, and the order becomes ``shipped`` (its
  ``shipped_at`` the last shipment's time), once every unit is shipped or cancelled; until then
  it is open, shown as ``partially_shipped`` once something left (``display_status``).
- ``cancel_lines`` cancels remainders and releases their reservations; cancelling everything
  left of a partially shipped order completes it as shipped.

The order row is locked first (as every order writer does), then stock: two ``ship`` runs on
one order are serial, and the second sees what the first took.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit, stock
from ffctl.core.clock import shown
from ffctl.core.errors import Conflict, NotFound, PermissionDenied, UsageError
from ffctl.core.models import Order, OrderLine, PickLine, Shipment, ShipmentLine
from ffctl.core.stock import reservations
from ffctl.core.text import command
from ffctl.i18n import _, ngettext

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
    return (f"{orders_alias}.status = 'open' AND EXISTS (SELECT 1 FROM shipment sh "
            f"WHERE sh.order_id = {orders_alias}.order_id)")


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
    return {r.line_no: _Line(*r) for r in session.execute(
        sa.select(c.id, c.line_no, c.sku, c.qty, c.allocated, c.shipped, c.cancelled)
        .where(c.order_id == order_id).order_by(c.line_no))}


def parse_line_spec(text: str, *, qty_optional: bool = False) -> tuple[int, int | None]:
    """``LINE_NO:QTY`` (``LINE_NO`` alone with ``qty_optional``) -> (line_no, qty or None)."""
    head, sep, tail = text.partition(":")
    try:
        line_no = int(head.strip())
        qty = int(tail.strip()) if sep else None
    except ValueError:
        raise UsageError(_("--line {text!r}: use LINE_NO:QTY with whole numbers, e.g. 1:4").format(text=text)) from None
    if qty is None and not qty_optional:
        raise UsageError(_("--line {text!r}: say how many units, as LINE_NO:QTY (e.g. {n}:4)").format(text=text, n=line_no))
    if line_no <= 0:
        raise UsageError(_("--line {text!r}: line numbers start at 1").format(text=text))
    if qty is not None and qty <= 0:
        raise UsageError(_("--line {text!r}: the quantity must be a positive whole number").format(text=text))
    return line_no, qty


def _reserving(cfg, order) -> bool:
    """Does the order's workflow reserve stock (has an ``auto = "allocate"`` node)?"""
    wf = next((w for w in cfg.workflows if w.name == order["workflow"]), None)
    return wf is not None and any(cfg.nodes[n].auto == "allocate" for n in wf.nodes if n in cfg.nodes)


def _unknown_line(order_id: str, line_no: int, lines: dict[int, _Line]) -> NotFound:
    return NotFound(_("order {order} has no line {line} (its lines: {lines})").format(
        order=order_id, line=line_no, lines=", ".join(map(str, lines)) or "none"),
        hint=_("`{cmd}` lists its lines.").format(cmd=command("order", "show", order_id)))


def _shipments(session: Session, order_id: str) -> list[dict]:
    rows = session.execute(sa.select(SHIPMENT).where(SHIPMENT.c.order_id == order_id)
                           .order_by(SHIPMENT.c.shipped_at, SHIPMENT.c.shipment_id)).mappings().all()
    lines: dict[str, list[tuple]] = {}
    for r in session.execute(sa.select(SHIPMENT_LINE.c.shipment_id, SHIPMENT_LINE.c.line_no, SHIPMENT_LINE.c.sku,
                                       SHIPMENT_LINE.c.qty).where(SHIPMENT_LINE.c.order_id == order_id)
                             .order_by(SHIPMENT_LINE.c.line_no)):
        lines.setdefault(r.shipment_id, []).append((r.line_no, r.sku, r.qty))
    return [dict(r, lines=lines.get(r["shipment_id"], [])) for r in rows]


def _same(given, stored) -> bool:
    return given is None or given == stored


def _already(shipments: list[dict], at: datetime, carrier, tracking, lines: list[tuple] | None) -> dict | None:
    """The recorded shipment this one repeats (same time, carrier, tracking, and lines when given)."""
    for sh in shipments:
        if sh["shipped_at"] == at and _same(carrier, sh["carrier"]) and _same(tracking, sh["tracking"]) \
                and (lines is None or sorted(lines) == sorted((ln, q) for ln, _s, q in sh["lines"])):
            return sh
    return None


def _check_node(session: Session, cfg, order, actor: str, manual: bool) -> None:
    from ffctl.core import workflow

    order_id, node = order["order_id"], order["node"]
    spec = cfg.nodes.get(node) if node else None
    if node is not None and (spec is None or spec.auto != "ship"):
        ship_nodes = [n for n, s in cfg.nodes.items() if s.auto == "ship"]
        owner = _(" (owner {owner})").format(owner=spec.owner) if spec is not None and spec.owner else \
            (_(" (completed by `ffctl {command}`)").format(command=spec.auto) if spec is not None and spec.auto else "")
        raise Conflict(
            _("order {order_id} is at node {node}{owner}; it can ship only from ").format(order_id=order_id, node=node, owner=owner)
            + (" or ".join(ship_nodes) if ship_nodes else _("a node with auto = \"ship\"")),
            hint=_("`{command}` shows where it is.").format(command=command('order', 'show', order_id)),
        )
    if manual and node is not None:
        task = workflow.current_task(session, order_id, lock=True)
        if task is not None and not workflow.may_act(session, cfg, task, actor):
            need = " or ".join(workflow.assignees(session, task) + ["admin"])
            raise PermissionDenied(_("{actor} may not ship order {order_id} from {node}: it needs a member of {need}").format(actor=actor, order_id=order_id, node=node, need=need))


def _next_id(session: Session, order_id: str) -> str:
    n = session.execute(sa.select(sa.func.count()).where(SHIPMENT.c.order_id == order_id)).scalar_one() + 1
    while session.get(Shipment, f"{order_id}/{n}") is not None:
        n += 1
    return f"{order_id}/{n}"


def ship(session: Session, cfg, order_id: str, *, at: datetime, actor: str, carrier: str | None = None,
         tracking: str | None = None, lines: Sequence[tuple[int, int]] | None = None,
         picks: Sequence[tuple[int, str, int]] | None = None, shipment_id: str | None = None,
         manual: bool = False) -> dict | None:
    """Record one shipment of an order; None if exactly this shipment was recorded already.

    ``lines``: ``(line_no, qty)`` to ship (a person's ``ffctl ship --line``), refused beyond what the
    line has reserved. ``picks``: ``(line_no, sku, qty)`` as an import reports them (what left).
    Neither: every reserved unit. Returns ``{shipment_id, order_id, at, lines: [{line_no, sku, qty,
    error}], units, complete, status, still_to_ship}``.
    """
    order = reservations._lock_order_row(session, order_id)
    status = order["status"]
    tz = cfg.timezone
    shipments = _shipments(session, order_id)
    if shipment_id is not None:
        found = session.get(Shipment, shipment_id)
        if found is not None:
            if found.order_id != order_id:
                raise Conflict(_("shipment {id} belongs to order {other}, not {order}").format(
                    id=shipment_id, other=found.order_id, order=order_id))
            return None
    wanted = None  # (line_no, sku or None, qty)
    if lines is not None:
        wanted = [(ln, None, q) for ln, q in lines]
    elif picks is not None:
        wanted = [(ln, s, q) for ln, s, q in picks if q > 0]
    if shipment_id is None and shipments:
        same_lines = None if not wanted else [(ln, q) for ln, _s, q in wanted]
        repeat = _already(shipments, at, carrier, tracking, same_lines)
        # the same shipment again: an import's rows, a person's same --line, or a plain `ship` with nothing left
        if repeat is not None and (picks is not None or same_lines is not None or status in ("shipped", "delivered")
                                   or not any(x.reserved for x in _lines(session, order_id).values())):
            return None
    if status in ("shipped", "delivered"):
        last = shipments[-1] if shipments else None
        raise Conflict(_("order {order_id} was already shipped (at {shown}").format(order_id=order_id, shown=shown(last['shipped_at'] if last else None, tz))
                       + (_(", {carrier}").format(carrier=last['carrier']) if last and last["carrier"] else "") + ")")
    if status == "cancelled":
        raise Conflict(_("order {order_id} is cancelled; it cannot ship").format(order_id=order_id))
    if status == "on_hold":
        raise Conflict(_("order {order_id} is on hold; release it before shipping").format(order_id=order_id),
                       hint=_("`{command}`").format(command=command('order', 'release', order_id)))
    _check_node(session, cfg, order, actor, manual)
    audit.refuse_earlier(session, order_id, at, tz)

    by_no = _lines(session, order_id)
    reserving = _reserving(cfg, order) or any(x.allocated > x.shipped for x in by_no.values())
    items: list[stock.LineShipment] = []
    out_lines: list[dict] = []
    errors: list[tuple] = []  # pick rows: (line_no, sku, qty, error)
    if picks is not None and wanted:  # an import: what left, pick errors recorded
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
    else:
        asked: dict[int, int] = {}
        if wanted is not None:
            for line_no, _sku, qty in wanted:
                if line_no not in by_no:
                    raise _unknown_line(order_id, line_no, by_no)
                if qty <= 0:
                    raise UsageError(_("line {line}: the quantity must be a positive whole number, not {qty}")
                                     .format(line=line_no, qty=qty))
                asked[line_no] = asked.get(line_no, 0) + qty
        else:
            asked = {no: (x.reserved if reserving else x.to_ship) for no, x in by_no.items()}
            asked = {no: q for no, q in asked.items() if q > 0}
            if not asked:
                raise Conflict(_("order {order} has nothing allocated and unshipped to ship").format(order=order_id),
                               hint=_("`{cmd}` reserves stock for it; `{show}` shows what is backordered.").format(
                                   cmd=command("allocate", order_id), show=command("order", "show", order_id)))
        over = []
        for line_no, qty in sorted(asked.items()):
            line = by_no[line_no]
            can = line.reserved if reserving else line.to_ship
            if qty > can:
                over.append(_("line {line} ({sku}) has {can} allocated and unshipped, not {qty}").format(
                    line=line_no, sku=line.sku, can=can, qty=qty) if reserving else
                    _("line {line} ({sku}) has {can} left to ship, not {qty}").format(
                    line=line_no, sku=line.sku, can=can, qty=qty))
        if over:
            raise Conflict(_("order {order}: cannot ship more than is allocated: {what}; nothing was shipped").format(
                order=order_id, what="; ".join(over)),
                hint=_("`{cmd}` shows what each line has allocated.").format(cmd=command("order", "show", order_id)))
        for line_no, qty in sorted(asked.items()):
            line = by_no[line_no]
            items.append(stock.LineShipment(line.id, line.sku, line.sku, qty, qty))
            out_lines.append({"line_no": line_no, "sku": line.sku, "qty": qty, "error": None})

    sid = shipment_id or _next_id(session, order_id)
    moved = stock.ship_lines(session, order_id, items, at=at, actor=actor, ref=sid)
    session.execute(sa.insert(SHIPMENT).values(shipment_id=sid, order_id=order_id, shipped_at=at, carrier=carrier,
                                               tracking=tracking))
    rows = {}
    for ln in out_lines:  # one row per line (a line reported twice in one shipment is summed)
        r = rows.setdefault(ln["line_no"], {"shipment_id": sid, "order_id": order_id, "line_no": ln["line_no"],
                                            "sku": ln["sku"], "qty": 0})
        r["qty"] += ln["qty"]
    if rows:
        session.execute(sa.insert(SHIPMENT_LINE), list(rows.values()))
    if errors:
        session.execute(sa.insert(PICK), [{"order_id": order_id, "shipment_id": sid, "line_no": ln, "sku": s,
                                           "qty": q, "error": e} for ln, s, q, e in errors])
    after = _lines(session, order_id)
    left = sum(x.to_ship for x in after.values())
    units = sum(ln["qty"] for ln in out_lines)
    node = order["node"]
    if left == 0:
        _complete(session, cfg, order_id, node, at=at, actor=actor, carrier=carrier, tracking=tracking)
    notes = [_("shipment {id}").format(id=sid), ", ".join(f"L{ln['line_no']} {ln['sku']} {ln['qty']}"
                                          + (f" ({ln['error'].replace('_', ' ')})" if ln["error"] else "")
                                          for ln in out_lines)]
    notes += [x for x in (carrier and _("carrier {carrier}").format(carrier=carrier),
                          tracking and _("tracking {tracking}").format(tracking=tracking)) if x]
    if moved["reserved"]:
        notes.append(ngettext("{n} unit from reservations", "{n} units from reservations", moved["reserved"])
                     .format(n=moved["reserved"]))
    if moved["untracked"]:
        notes.append(ngettext("{n} unit not in the stock records", "{n} units not in the stock records",
                              moved["untracked"]).format(n=moved["untracked"]))
    if left:
        notes.append(ngettext("{n} unit still to ship", "{n} units still to ship", left).format(n=left))
    audit.record(session, event="shipped", at=at, actor=actor, order_id=order_id, node=node, detail="; ".join(notes))
    return {"shipment_id": sid, "order_id": order_id, "at": at, "carrier": carrier, "tracking": tracking,
            "lines": out_lines, "units": units, "complete": left == 0,
            "status": "shipped" if left == 0 else PARTIALLY_SHIPPED, "still_to_ship": left}


def _complete(session: Session, cfg, order_id: str, node: str | None, *, at: datetime, actor: str,
              carrier: str | None = None, tracking: str | None = None) -> None:
    """Every unit shipped or cancelled: the ship node completes and the order is shipped."""
    from ffctl.core import workflow

    last = session.execute(sa.select(SHIPMENT.c.shipped_at, SHIPMENT.c.carrier, SHIPMENT.c.tracking)
                           .where(SHIPMENT.c.order_id == order_id)
                           .order_by(SHIPMENT.c.shipped_at.desc(), SHIPMENT.c.shipment_id.desc()).limit(1)).first()
    if node is not None:  # while the order is still open: complete_auto moves open orders only
        workflow.complete_auto(session, cfg, [order_id], "ship", at=at, actor=actor)
    shipped_at = last.shipped_at if last is not None else at
    session.execute(sa.update(ORDERS).where(ORDERS.c.order_id == order_id).values(
        status="shipped", shipped_at=shipped_at,
        carrier=carrier if carrier is not None else (last.carrier if last else None),
        tracking=tracking if tracking is not None else (last.tracking if last else None)))


def cancel_lines(session: Session, cfg, order_id: str, lines: Iterable[tuple[int, int | None]], *, at: datetime,
                 actor: str, reason: str) -> dict:
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
    over = [_("line {line} has {left} left to ship, not {qty}").format(line=no, left=by_no[no].to_ship, qty=q)
            for no, q in sorted(asked.items()) if q > by_no[no].to_ship or q <= 0]
    if over:
        raise Conflict(_("order {order}: cannot cancel {what}; nothing was cancelled").format(
            order=order_id, what="; ".join(over)))
    shipped_any = any(x.shipped for x in by_no.values())
    left_after = sum(x.to_ship for x in by_no.values()) - sum(asked.values())
    if left_after == 0 and not shipped_any:
        raise Conflict(_("that cancels every unit of order {order}: cancel the order instead").format(order=order_id),
                       hint=_("`{cmd}`").format(cmd=command("order", "cancel", order_id, "--reason", reason)))
    released = 0
    for line_no, qty in sorted(asked.items()):
        released += stock.cancel_line_units(session, order_id, by_no[line_no].id, qty)
    node = order["node"]
    detail = ", ".join(f"L{no} {by_no[no].sku} {q}" for no, q in sorted(asked.items())) + f"; {reason}"
    if released:
        detail += ngettext("; released {n} reserved unit", "; released {n} reserved units", released).format(n=released)
    audit.record(session, event="line_cancelled", at=at, actor=actor, order_id=order_id, node=node, detail=detail)
    if left_after == 0:
        _complete(session, cfg, order_id, node, at=at, actor=actor)
    return {"order_id": order_id, "lines": [{"line_no": no, "cancelled": q} for no, q in sorted(asked.items())],
            "released": released, "still_to_ship": left_after,
            "status": "shipped" if left_after == 0 else display_status("open", int(shipped_any))}


def shipped_units(session: Session, order_id: str) -> int:
    return session.execute(sa.select(sa.func.coalesce(sa.func.sum(LINE.c.shipped), 0))
                           .where(LINE.c.order_id == order_id)).scalar_one()
