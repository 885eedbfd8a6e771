"""Returns (SPEC 9.5): units of a shipped order line that came back, with a reason.

- A line can take back at most what it shipped less what already came back: more is refused
  and nothing is written (the whole return, every line of it).
- Each return writes one ``return_line`` row per line, unique on (order, line, time, reason):
  the same return recorded again (``import returns`` run twice) writes nothing.
- ``restock``: the units go back on hand in that warehouse, with a ``stock_move`` (kind
  ``return``) per SKU; without it they are only counted (damaged goods stay out of stock).
- The order's timeline gets a ``returned`` event (audit vocabulary), which is also what makes
  the next report refresh rewrite the order's facts (return rate, perfect order, misses).

The order row is locked first, as every order writer does, so two returns of one line are serial
and the second sees what the first took back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit
from ffctl.core.errors import Conflict, NotFound, UsageError
from ffctl.core.models import OrderLine, ReturnLine, Shipment
from ffctl.core.stock import moves, reservations
from ffctl.core.text import command
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

RETURN = ReturnLine.__table__
LINE = OrderLine.__table__
SHIPMENT = Shipment.__table__


def returned_units(session: Session, order_id: str) -> dict[int, int]:
    """line_no -> units returned so far."""
    return {
        r.line_no: int(r.n)
        for r in session.execute(
            sa.select(RETURN.c.line_no, sa.func.sum(RETURN.c.qty).label("n"))
            .where(RETURN.c.order_id == order_id)
            .group_by(RETURN.c.line_no)
        )
    }


def record_return(
    session: Session,
    cfg: Config,
    order_id: str,
    lines: Sequence[tuple[int, int]],
    *,
    reason: str,
    at: datetime,
    actor: str,
    restock: str | None = None,
) -> dict | None:
    """Record one return of ``lines`` (``(line_no, qty)``) of ``order_id`` at ``at``.

    Returns ``{order_id, at, reason, restock, lines: [{line_no, sku, qty}], units}``, or None when
    exactly this return (every line, same time and reason) was recorded already.
    """
    reason = (reason or "").strip()
    if not reason:
        raise UsageError(_("--reason is required: say why the units came back (e.g. damaged, wrong_size)"))
    if not lines:
        raise UsageError(_("say which units came back: --line LINE_NO:QTY (repeatable)"))
    restock = restock.strip() if restock else None
    reservations._lock_order_row(session, order_id)
    by_no = {
        r.line_no: r
        for r in session.execute(
            sa.select(LINE.c.line_no, LINE.c.sku, LINE.c.shipped).where(LINE.c.order_id == order_id)
        )
    }
    asked: dict[int, int] = {}
    for line_no, qty in lines:
        if line_no not in by_no:
            raise NotFound(
                _("order {order} has no line {line} (its lines: {lines})").format(
                    order=order_id, line=line_no, lines=", ".join(map(str, sorted(by_no))) or "none"
                ),
                hint=_("`{cmd}` lists its lines.").format(cmd=command("order", "show", order_id)),
            )
        if qty <= 0:
            raise UsageError(
                _("line {line}: the quantity must be a positive whole number, not {qty}").format(line=line_no, qty=qty)
            )
        asked[line_no] = asked.get(line_no, 0) + qty
    existing = {
        r.line_no: int(r.qty)
        for r in session.execute(
            sa.select(RETURN.c.line_no, RETURN.c.qty).where(
                RETURN.c.order_id == order_id, RETURN.c.returned_at == at, RETURN.c.reason == reason
            )
        )
    }
    if existing and all(existing.get(no) == q for no, q in asked.items()):
        return None  # the same return again
    clash = sorted(no for no in asked if no in existing)
    if clash:
        raise Conflict(
            _(
                "order {order}: line {line} already has a return at this time with reason {reason!r} "
                "({qty} units); nothing was recorded"
            ).format(order=order_id, line=clash[0], reason=reason, qty=existing[clash[0]]),
            hint=_("A return of more units at the same time: give its total, or a different --at."),
        )
    first = session.execute(
        sa.select(sa.func.min(SHIPMENT.c.shipped_at)).where(SHIPMENT.c.order_id == order_id)
    ).scalar_one()
    if first is None:
        raise Conflict(
            _("order {order} has not shipped anything: nothing can come back").format(order=order_id),
            hint=_("`{cmd}` shows what it shipped.").format(cmd=command("order", "show", order_id)),
        )
    if at < first:
        raise Conflict(
            _("order {order}: a return at {at} is before its first shipment ({first}); nothing was recorded").format(
                order=order_id, at=_shown(at, cfg), first=_shown(first, cfg)
            )
        )
    before = returned_units(session, order_id)
    over = []
    for no, q in sorted(asked.items()):
        can = by_no[no].shipped - before.get(no, 0)
        if q > can:
            over.append(
                _(
                    "line {line} ({sku}) shipped {shipped} and {back} came back already: at most {can}, not {qty}"
                ).format(line=no, sku=by_no[no].sku, shipped=by_no[no].shipped, back=before.get(no, 0), can=can, qty=q)
            )
    if over:
        raise Conflict(
            _("order {order}: cannot return more than was shipped: {what}; nothing was recorded").format(
                order=order_id, what="; ".join(over)
            ),
            hint=_("`{cmd}` shows what each line shipped.").format(cmd=command("order", "show", order_id)),
        )
    rows = [
        {
            "order_id": order_id,
            "line_no": no,
            "sku": by_no[no].sku,
            "qty": q,
            "reason": reason,
            "returned_at": at,
            "warehouse": restock,
        }
        for no, q in sorted(asked.items())
    ]
    session.execute(sa.insert(RETURN), rows)
    if restock:
        _restock(session, order_id, rows, restock, at=at, actor=actor, reason=reason)
    units = sum(asked.values())
    detail = ", ".join(f"L{r['line_no']} {r['sku']} {r['qty']}" for r in rows) + f"; {reason}"
    if restock:
        detail += "; " + ngettext("{n} unit restocked in {wh}", "{n} units restocked in {wh}", units).format(
            n=units, wh=restock
        )
    audit.record(session, event="returned", at=at, actor=actor, order_id=order_id, detail=detail)
    return {
        "order_id": order_id,
        "at": at,
        "reason": reason,
        "restock": restock,
        "units": units,
        "lines": [{"line_no": r["line_no"], "sku": r["sku"], "qty": r["qty"]} for r in rows],
    }


def _restock(
    session: Session, order_id: str, rows: list[dict], warehouse: str, *, at: datetime, actor: str, reason: str
) -> None:
    """The returned units go back on hand in ``warehouse`` (one stock move per SKU)."""
    per_sku: dict[str, int] = {}
    for r in rows:
        per_sku[r["sku"]] = per_sku.get(r["sku"], 0) + r["qty"]
    pairs = [(sku, warehouse) for sku in sorted(per_sku)]
    moves._ensure_rows(session, pairs)
    found = moves._lock_stock(session, pairs)
    moves._bulk_add(session, "stock", "on_hand", {found[p]["id"]: per_sku[p[0]] for p in pairs}, what=_("stock"))
    moves._moves(
        session,
        [
            {
                "sku": sku,
                "warehouse": warehouse,
                "delta": q,
                "kind": "return",
                "reason": reason,
                "ref": order_id,
                "actor": actor,
                "at": at,
            }
            for sku, q in sorted(per_sku.items())
        ],
    )


def _shown(moment: datetime, cfg: Config) -> str:
    from ffctl.core.clock import shown

    return shown(moment, cfg.timezone)


def order_returns(session: Session, order_id: str) -> list[dict]:
    """An order's returns for ``order show``: one entry per return line, in time order."""
    return [
        dict(r)
        for r in session.execute(
            sa.select(
                RETURN.c.line_no, RETURN.c.sku, RETURN.c.qty, RETURN.c.reason, RETURN.c.returned_at, RETURN.c.warehouse
            )
            .where(RETURN.c.order_id == order_id)
            .order_by(RETURN.c.returned_at, RETURN.c.line_no)
        ).mappings()
    ]
