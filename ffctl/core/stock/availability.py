"""Reading stock: levels per (sku, warehouse) and time-phased available-to-promise (ATP).

Available-to-promise (ATP) for a SKU is a time-phased schedule: on the command clock's local
date, ``on_hand - allocated`` minus the unallocated quantity of open (and held) orders;
then each open receipt adds its quantity on its expected date (an overdue receipt counts
today). Subtracting open demand means two orders never get promised the same units.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from ffctl.core.bulk import (
    keyed,
)
from ffctl.core.clock import local_date
from ffctl.core.errors import NotFound, UsageError
from ffctl.core.models import Product
from ffctl.core.stock.common import LINE, ORDERS, RECEIPT, STOCK, UNSERVED, _parts
from ffctl.i18n import _

DEFAULT_LEAD_TIME_DAYS = 7
OPEN_DEMAND = ("open", "on_hold")  # order statuses whose unallocated lines are demand


def _require_product(session: Session, sku: str) -> Product:
    product = session.get(Product, sku)
    if product is None:
        raise NotFound(_("no product {sku!r}").format(sku=sku), hint=_("`ffctl import products FILE` adds products."))
    return product


def stock_rows(session: Session, sku: str | None = None, warehouse: str | None = None) -> list[dict]:
    """Per (sku, warehouse): on_hand, allocated, available, inbound (open receipts), safety_stock."""
    if sku is not None:
        _require_product(session, sku)
    stock_q = sa.select(STOCK.c.sku, STOCK.c.warehouse, STOCK.c.on_hand, STOCK.c.allocated)
    inbound_q = (
        sa.select(RECEIPT.c.sku, RECEIPT.c.warehouse, sa.func.sum(RECEIPT.c.qty).label("qty"))
        .where(RECEIPT.c.status == "open")
        .group_by(RECEIPT.c.sku, RECEIPT.c.warehouse)
    )
    if sku is not None:
        stock_q = stock_q.where(STOCK.c.sku == sku)
        inbound_q = inbound_q.where(RECEIPT.c.sku == sku)
    if warehouse is not None:
        stock_q = stock_q.where(STOCK.c.warehouse == warehouse)
        inbound_q = inbound_q.where(RECEIPT.c.warehouse == warehouse)
    rows: dict[tuple[str, str], dict] = {}
    for r in session.execute(stock_q):
        rows[(r.sku, r.warehouse)] = {
            "sku": r.sku,
            "warehouse": r.warehouse,
            "on_hand": r.on_hand,
            "allocated": r.allocated,
            "available": r.on_hand - r.allocated,
            "inbound": 0,
            "safety_stock": 0,
        }
    for ib in session.execute(inbound_q):
        row = rows.setdefault(
            (ib.sku, ib.warehouse),
            {
                "sku": ib.sku,
                "warehouse": ib.warehouse,
                "on_hand": 0,
                "allocated": 0,
                "available": 0,
                "inbound": 0,
                "safety_stock": 0,
            },
        )
        row["inbound"] = int(ib.qty)
    skus = sorted({k[0] for k in rows})
    safety: dict[str, int] = {}
    for part in _parts(session, skus):
        safety.update(
            dict(
                session.execute(
                    sa.select(col(Product.sku), col(Product.safety_stock)).where(keyed(session, Product.sku, part))
                ).all()
            )
        )
    for (s, _w), row in rows.items():
        row["safety_stock"] = safety.get(s) or 0
    return [rows[k] for k in sorted(rows)]


def _open_demand(session: Session, skus: Sequence[str], exclude_orders: Iterable[str] = ()) -> dict[str, int]:
    """Unallocated quantity of open and held orders per SKU, leaving out ``exclude_orders``."""

    def unserved(where) -> Iterator[tuple[str, int]]:
        """Per SKU, the unallocated units of the open and held orders' lines ``where`` picks."""
        q = (
            sa.select(LINE.c.sku, sa.func.sum(UNSERVED))
            .join(ORDERS, ORDERS.c.order_id == LINE.c.order_id)
            .where(where, ORDERS.c.status.in_(OPEN_DEMAND), UNSERVED > 0)
            .group_by(LINE.c.sku)
        )
        return ((s, int(qty or 0)) for s, qty in session.execute(q))

    demand: dict[str, int] = defaultdict(int)
    for part in _parts(session, list(skus)):
        for s, qty in unserved(keyed(session, LINE.c.sku, part)):
            demand[s] += qty
    excluded = list(dict.fromkeys(exclude_orders))
    for part in _parts(session, excluded):
        for s, qty in unserved(keyed(session, LINE.c.order_id, part)):
            if s in demand:
                demand[s] -= qty
    return demand


def _available_now(session: Session, skus: Sequence[str]) -> dict[str, dict[str, int]]:
    """sku -> warehouse -> on_hand - allocated."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for part in _parts(session, list(skus)):
        for r in session.execute(
            sa.select(STOCK.c.sku, STOCK.c.warehouse, STOCK.c.on_hand - STOCK.c.allocated).where(
                keyed(session, STOCK.c.sku, part)
            )
        ):
            out[r[0]][r[1]] = int(r[2])
    return out


def _open_receipts(
    session: Session, skus: Sequence[str], today: date, tz: str
) -> dict[str, list[tuple[date, str, int]]]:
    """sku -> [(local expected date, clamped to today), warehouse, qty] of open receipts."""
    out: dict[str, list[tuple[date, str, int]]] = defaultdict(list)
    for part in _parts(session, list(skus)):
        for r in session.execute(
            sa.select(RECEIPT.c.sku, RECEIPT.c.warehouse, RECEIPT.c.qty, RECEIPT.c.expected_at).where(
                RECEIPT.c.status == "open", keyed(session, RECEIPT.c.sku, part)
            )
        ):
            out[r.sku].append((max(local_date(r.expected_at, tz), today), r.warehouse, int(r.qty)))
    for rows in out.values():
        rows.sort()
    return out


class _Profile:
    """Cumulative available-to-promise of one SKU over dates, consumed as promises are made."""

    __slots__ = ("dates", "cum", "tail")

    def __init__(self, today: date, start: int, receipts: Iterable[tuple[date, int]]) -> None:
        by_date: dict[date, int] = defaultdict(int)
        for d, qty in receipts:
            by_date[max(d, today)] += qty
        self.dates = [today] + sorted(d for d in by_date if d > today)
        running = start + by_date.get(today, 0)
        self.cum = [running]
        for d in self.dates[1:]:
            running += by_date[d]
            self.cum.append(running)
        self.tail = 0  # promised beyond every known supply

    def promisable(self) -> list[int]:
        """What can still be promised by each date: the minimum of the cumulative from there on."""
        out = [0] * len(self.cum)
        low = self.cum[-1] - self.tail
        for i in range(len(self.cum) - 1, -1, -1):
            low = min(low, self.cum[i])
            out[i] = low
        return out

    def earliest(self, qty: int) -> date | None:
        for d, can in zip(self.dates, self.promisable()):
            if can >= qty:
                return d
        return None

    def consume(self, qty: int, on: date | None) -> None:
        if on is None:
            self.tail += qty
            return
        i = max(bisect.bisect_right(self.dates, on) - 1, 0)
        for j in range(i, len(self.cum)):
            self.cum[j] -= qty


def atp(
    session: Session,
    sku: str,
    qty: int | None = None,
    *,
    now: datetime,
    tz: str,
    warehouse: str | None = None,
    exclude_orders: Iterable[str] = (),
) -> dict:
    """Time-phased available-to-promise of ``sku`` and the earliest local date ``qty`` is covered.

    ``{sku, qty, earliest_date, schedule: [{date, available}]}``: the first entry is today
    (available now net of open unallocated demand), then one per receipt date, cumulative.
    With ``warehouse``, only that warehouse's stock and receipts count, and open demand is
    charged to it only beyond what the other warehouses have available now.
    """
    _require_product(session, sku)
    qty = 1 if qty is None else qty
    if qty <= 0:
        raise UsageError(_("--qty must be a positive whole number, not {qty}").format(qty=qty))
    today = local_date(now, tz)
    avail = _available_now(session, [sku]).get(sku, {})
    demand = _open_demand(session, [sku], exclude_orders).get(sku, 0)
    receipts = _open_receipts(session, [sku], today, tz).get(sku, [])
    if warehouse is not None:
        elsewhere = sum(v for w, v in avail.items() if w != warehouse)
        demand = max(0, demand - max(elsewhere, 0))
        here = avail.get(warehouse, 0)
        receipts = [r for r in receipts if r[1] == warehouse]
    else:
        here = sum(avail.values())
    profile = _Profile(today, here - demand, [(d, q) for d, _w, q in receipts])
    return {
        "sku": sku,
        "qty": qty,
        "earliest_date": profile.earliest(qty),
        "schedule": [{"date": d, "available": c} for d, c in zip(profile.dates, profile.cum)],
    }


def promise_dates(
    session: Session,
    orders: Sequence[tuple],
    *,
    now: datetime,
    tz: str,
    ledger: dict | None = None,
    stored: bool = True,
) -> dict[str, tuple[date, str]]:
    """Promised ship dates for a batch of orders: order_id -> (date, "atp" | "lead_time").

    The orders are promised in the given sequence, each consuming what it is promised, so a
    batch never promises the same units twice. An order's date is the earliest local date
    every line is covered by ATP; a line no known supply covers makes it today + the
    product's lead_time_days (default 7), source "lead_time". The batch's own rows, if already
    written, are not counted as demand. An entry is ``(order_id, lines)``, or
    ``(order_id, lines, promised)``: with ``promised`` not None the order already has a date; it
    gets none and counts as demand from today.

    ``ledger``: a dict the caller passes to every call of one run (one clock). Each SKU's stock,
    receipts, lead time and open demand are then read from the store once, the first time a
    call needs the SKU, and later calls go on consuming from there, so a call costs what its
    batch needs, not what the store holds (re-reading every open line of the batch's SKUs per
    call made a large import quadratic). The ledger sees the store as it was when it read each
    SKU, less what the run itself promised or was given since: orders with a date consume it
    too, so the run must pass every order it writes (a caller that changes stored orders
    otherwise clears the ledger). ``stored=False`` says none of the orders is in the store yet
    (an import's new orders), so there is no demand of theirs to leave out.
    """
    today = local_date(now, tz)
    profiles: dict = {} if ledger is None else ledger  # sku -> (_Profile, lead_time_days)
    wanted = {s for entry in orders if len(entry) < 3 or entry[2] is None for s, _q in entry[1]}
    unread = sorted(s for s in wanted if s not in profiles)
    if unread:
        avail = _available_now(session, unread)
        # Leaving out the batch's own rows is a lookup by order id; on PostgreSQL, on tables a bulk
        # load has just grown (no statistics yet), a scan that compares every line with every id.
        own = [e[0] for e in orders if len(e) < 3 or e[2] is None] if stored else []
        demand = _open_demand(session, unread, own)
        receipts = _open_receipts(session, unread, today, tz)
        lead: dict[str, int | None] = {}
        for part in _parts(session, unread):
            lead.update(
                dict(
                    session.execute(
                        sa.select(col(Product.sku), col(Product.lead_time_days)).where(
                            keyed(session, Product.sku, part)
                        )
                    ).all()
                )
            )
        for s in unread:
            start = sum(avail.get(s, {}).values()) - demand.get(s, 0)
            profiles[s] = (_Profile(today, start, [(d, q) for d, _w, q in receipts.get(s, [])]), lead.get(s))

    out: dict[str, tuple[date, str]] = {}
    for entry in orders:
        order_id, lines = entry[0], entry[1]
        if len(entry) > 2 and entry[2] is not None:  # promised already: demand from today where known
            for s, q in lines:
                known = profiles.get(s)
                if known is not None:
                    known[0].consume(q, today)
            continue
        need: dict[str, int] = defaultdict(int)
        for s, q in lines:
            need[s] += q
        when, source, covered, uncovered = today, "atp", [], []
        for s, q in need.items():
            profile, days = profiles[s]
            d = profile.earliest(q)
            if d is None:
                uncovered.append((s, q))
                when = max(when, today + timedelta(days=DEFAULT_LEAD_TIME_DAYS if days is None else days))
                source = "lead_time"
            else:
                covered.append((s, q))
                when = max(when, d)
        for s, q in covered:
            profiles[s][0].consume(q, when)
        for s, q in uncovered:
            profiles[s][0].consume(q, None)
        out[order_id] = (when, source)
    return out
