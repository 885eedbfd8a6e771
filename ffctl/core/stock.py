"""Stock: the one owner of on hand, reservations and available-to-promise.

Every write to ``stock.allocated``, ``order_line.allocated`` and ``allocation`` happens here.
The invariant is *allocated never exceeds on hand*, and it holds under any number of
concurrent ffctl processes on both backends:

- the database refuses it (CHECK ``allocated <= on_hand`` on ``stock``);
- writers lock the stock rows they touch in primary-key order (``SELECT ... ORDER BY id FOR
  UPDATE`` on PostgreSQL; on SQLite the write transaction is already exclusive) and write
  with conditional updates (``... WHERE on_hand - allocated >= :q``), checking the row count;
- lock order: a writer that locks an order row (ship, cancel, workflow moves) does so before
  it locks stock; ``allocate`` locks its stock first and then takes orders with ``SKIP
  LOCKED``, so it never waits on an order someone else holds: no cycle, no deadlock.

Available-to-promise (ATP) for a SKU is a time-phased schedule: on the command clock's local
date, ``on_hand - allocated`` minus the unallocated quantity of open (and held) orders;
then each open receipt adds its quantity on its expected date (an overdue receipt counts
today). Subtracting open demand means two orders never get promised the same units.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from functools import partial
from typing import Callable, Iterable, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit
from ffctl.core.bulk import (CopyRows, among, insert_rows, int_array, keyed, sqlite_analyze_stale,
                              sqlite_working_set, time_texts)
from ffctl.core.clock import local_date, shown
from ffctl.core.errors import Conflict, FfctlError, NotFound, PermissionDenied, UsageError
from ffctl.core.store import is_postgresql
from ffctl.core.text import command
from ffctl.core.models import Allocation, Order, OrderLine, Product, Receipt, Stock, StockMove, Task
from ffctl.i18n import _, ngettext

STOCK = Stock.__table__
LINE = OrderLine.__table__
ALLOC = Allocation.__table__
ORDERS = Order.__table__
RECEIPT = Receipt.__table__
TASK = Task.__table__
MOVE = StockMove.__table__
UNSERVED = LINE.c.qty - LINE.c.cancelled - LINE.c.allocated  # a line's units neither reserved, shipped nor cancelled

ALLOC_COLUMNS = ("order_id", "line_id", "sku", "warehouse", "qty", "created_at")  # a new reservation's row
CHUNK = 20000  # orders per allocation step: bounds memory; larger steps walk the tables fewer times
IN_CHUNK = 900  # values per IN (...) list on reads
# SQLite page cache of an allocation run: its one transaction touches pages all over the file and
# keeps every page it changes (taken only as used; measurements: docs/performance.md, allocate)
SQLITE_CACHE_MIB = 512
DEFAULT_LEAD_TIME_DAYS = 7
OPEN_DEMAND = ("open", "on_hold")  # order statuses whose unallocated lines are demand
DELIVERY_ISSUES = ("wrong_item", "short", "late", "damaged", "wrong_address", "documents")


def _chunks(items: Sequence, size: int = IN_CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _ramp(items: Sequence, size: int) -> Iterable[Sequence]:
    """Steps of ``size`` items, the first ones smaller (size/8, /4, /2): writing starts soon, and
    each step is planned while the one before it is written."""
    start, step = 0, max(size // 8, 1)
    while start < len(items):
        yield items[start:start + step]
        start += step
        step = min(step * 2, size)


def _parts(session: Session, items: Sequence) -> Iterable[Sequence]:
    """Key lists to look up: all at once on PostgreSQL (one array parameter), IN-sized chunks on SQLite."""
    if is_postgresql(session):
        return [items] if len(items) else []
    return _chunks(items)


# --- reading ---------------------------------------------------------------------------------

def _require_product(session: Session, sku: str) -> Product:
    product = session.get(Product, sku)
    if product is None:
        raise NotFound(f"no product {sku!r}", hint="`ffctl import products FILE` adds products.")
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
            "sku": r.sku, "warehouse": r.warehouse, "on_hand": r.on_hand, "allocated": r.allocated,
            "available": r.on_hand - r.allocated, "inbound": 0, "safety_stock": 0,
        }
    for r in session.execute(inbound_q):
        row = rows.setdefault((r.sku, r.warehouse), {
            "sku": r.sku, "warehouse": r.warehouse, "on_hand": 0, "allocated": 0,
            "available": 0, "inbound": 0, "safety_stock": 0,
        })
        row["inbound"] = int(r.qty)
    skus = sorted({k[0] for k in rows})
    safety: dict[str, int] = {}
    for part in _parts(session, skus):
        safety.update(dict(session.execute(
            sa.select(Product.sku, Product.safety_stock).where(keyed(session, Product.sku, part))
        ).all()))
    for (s, _w), row in rows.items():
        row["safety_stock"] = safety.get(s) or 0
    return [rows[k] for k in sorted(rows)]


def _open_demand(session: Session, skus: Sequence[str], exclude_orders: Iterable[str] = ()) -> dict[str, int]:
    """Unallocated quantity of open and held orders per SKU, leaving out ``exclude_orders``."""
    demand: dict[str, int] = defaultdict(int)
    for part in _parts(session, list(skus)):
        q = (
            sa.select(LINE.c.sku, sa.func.sum(UNSERVED))
            .join(ORDERS, ORDERS.c.order_id == LINE.c.order_id)
            .where(keyed(session, LINE.c.sku, part), ORDERS.c.status.in_(OPEN_DEMAND), UNSERVED > 0)
            .group_by(LINE.c.sku)
        )
        for s, qty in session.execute(q):
            demand[s] += int(qty or 0)
    excluded = list(dict.fromkeys(exclude_orders))
    for part in _parts(session, excluded):
        q = (
            sa.select(LINE.c.sku, sa.func.sum(UNSERVED))
            .join(ORDERS, ORDERS.c.order_id == LINE.c.order_id)
            .where(keyed(session, LINE.c.order_id, part), ORDERS.c.status.in_(OPEN_DEMAND), UNSERVED > 0)
            .group_by(LINE.c.sku)
        )
        for s, qty in session.execute(q):
            if s in demand:
                demand[s] -= int(qty or 0)
    return demand


def _available_now(session: Session, skus: Sequence[str]) -> dict[str, dict[str, int]]:
    """sku -> warehouse -> on_hand - allocated."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for part in _parts(session, list(skus)):
        for r in session.execute(
            sa.select(STOCK.c.sku, STOCK.c.warehouse, STOCK.c.on_hand - STOCK.c.allocated).where(keyed(session, STOCK.c.sku, part))
        ):
            out[r[0]][r[1]] = int(r[2])
    return out


def _open_receipts(session: Session, skus: Sequence[str], today: date, tz: str) -> dict[str, list[tuple[date, str, int]]]:
    """sku -> [(local expected date, clamped to today), warehouse, qty] of open receipts."""
    out: dict[str, list[tuple[date, str, int]]] = defaultdict(list)
    for part in _parts(session, list(skus)):
        for r in session.execute(
            sa.select(RECEIPT.c.sku, RECEIPT.c.warehouse, RECEIPT.c.qty, RECEIPT.c.expected_at)
            .where(RECEIPT.c.status == "open", keyed(session, RECEIPT.c.sku, part))
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


def atp(session: Session, sku: str, qty: int | None = None, *, now: datetime, tz: str,
        warehouse: str | None = None, exclude_orders: Iterable[str] = ()) -> dict:
    """Time-phased available-to-promise of ``sku`` and the earliest local date ``qty`` is covered.

    ``{sku, qty, earliest_date, schedule: [{date, available}]}``: the first entry is today
    (available now net of open unallocated demand), then one per receipt date, cumulative.
    With ``warehouse``, only that warehouse's stock and receipts count, and open demand is
    charged to it only beyond what the other warehouses have available now.
    """
    _require_product(session, sku)
    qty = 1 if qty is None else qty
    if qty <= 0:
        raise UsageError(f"--qty must be a positive whole number, not {qty}")
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


def promise_dates(session: Session, orders: Sequence[tuple], *, now: datetime, tz: str,
                  ledger: dict | None = None, stored: bool = True) -> dict[str, tuple[date, str]]:
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
            lead.update(dict(session.execute(
                sa.select(Product.sku, Product.lead_time_days).where(keyed(session, Product.sku, part))
            ).all()))
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


# --- locking and writing stock ---------------------------------------------------------------

def _ensure_rows(session: Session, pairs: Iterable[tuple[str, str]]) -> None:
    """Create missing (sku, warehouse) stock rows with nothing on hand; safe under concurrency."""
    wanted = sorted(set(pairs))
    if not wanted:
        return
    existing: set[tuple[str, str]] = set()
    for part in _parts(session, sorted({s for s, _ in wanted})):
        existing.update(
            (r[0], r[1]) for r in session.execute(sa.select(STOCK.c.sku, STOCK.c.warehouse).where(among(session, STOCK.c.sku, part)))
        )
    missing = [{"sku": s, "warehouse": w, "on_hand": 0, "allocated": 0} for s, w in wanted if (s, w) not in existing]
    if not missing:
        return
    if is_postgresql(session):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    session.execute(insert(STOCK).on_conflict_do_nothing(index_elements=["sku", "warehouse"]), missing)


LOCK_WAIT_SECONDS = 60.0  # how long a many-row stock lock retries before giving up (like SQLite's busy timeout)


def _stock_of_skus(session: Session, skus: Sequence[str], *, lock: bool, all_or_nothing: bool = False) -> list[dict]:
    """Every stock row of the SKUs; with ``lock`` on PostgreSQL, locked in primary-key order by one
    statement (several statements would each lock in order but not all together).

    ``all_or_nothing`` (the many-row lockers: allocate, counts) takes the rows with NOWAIT inside a
    savepoint and retries with backoff, so it never waits while holding some of them: a
    transaction that already holds one stock row (a batch shipping order after order) and waits
    for another cannot then close a cycle with it.
    """
    skus = sorted(set(skus))
    if not skus:
        return []
    if is_postgresql(session):
        sql = "SELECT id, sku, warehouse, on_hand, allocated FROM stock WHERE sku = ANY(:skus) ORDER BY id"
        if not lock:
            return [dict(r) for r in session.execute(sa.text(sql), {"skus": skus}).mappings()]
        if not all_or_nothing:
            return [dict(r) for r in session.execute(sa.text(sql + " FOR UPDATE"), {"skus": skus}).mappings()]
        return _lock_all_or_nothing(session, sql + " FOR UPDATE NOWAIT", {"skus": skus})
    rows = []
    for part in _parts(session, skus):
        rows.extend(dict(r) for r in session.execute(
            sa.select(STOCK.c.id, STOCK.c.sku, STOCK.c.warehouse, STOCK.c.on_hand, STOCK.c.allocated)
            .where(keyed(session, STOCK.c.sku, part))
        ).mappings())
    rows.sort(key=lambda r: r["id"])
    return rows


def _lock_all_or_nothing(session: Session, sql: str, params: dict) -> list[dict]:
    import random
    import time

    from psycopg.errors import LockNotAvailable

    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.02
    while True:
        try:
            with session.begin_nested():
                return [dict(r) for r in session.execute(sa.text(sql), params).mappings()]
        except sa.exc.OperationalError as exc:
            if not isinstance(exc.orig, LockNotAvailable):
                raise
        if time.monotonic() > deadline:
            raise Conflict(f"stock rows stayed locked by other ffctl processes for {LOCK_WAIT_SECONDS:.0f} s; "
                           "nothing was changed, run the command again")
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, 0.5)


def _lock_stock(session: Session, pairs: Iterable[tuple[str, str]], *,
                all_or_nothing: bool = False) -> dict[tuple[str, str], dict]:
    """Current stock rows for the pairs, locked (with the other rows of their SKUs) in id order."""
    wanted = set(pairs)
    rows = _stock_of_skus(session, [s for s, _ in wanted], lock=True, all_or_nothing=all_or_nothing)
    return {(r["sku"], r["warehouse"]): r for r in rows if (r["sku"], r["warehouse"]) in wanted}


def _bulk_add(session: Session, table: str, column: str, deltas: dict[int, int], *, guard: str | None = None,
              what: str = "row") -> None:
    """``column += delta`` for each row id, in one statement on PostgreSQL (executemany on SQLite).

    ``guard`` is an SQL condition on the row (``t``) and the delta (``v.q`` / ``:q``) every row must
    meet; a row that fails it aborts the whole operation (the caller's transaction rolls back).
    """
    if not deltas:
        return
    ids = sorted(deltas)
    if is_postgresql(session):
        cond = f" AND {guard.replace(':q', 'v.q')}" if guard else ""
        sql = (
            f"UPDATE {table} AS t SET {column} = t.{column} + v.q "
            f"FROM unnest(CAST(:ids AS bigint[]), CAST(:qs AS bigint[])) AS v(id, q) WHERE t.id = v.id{cond}"
        )
        done = session.execute(sa.text(sql), {"ids": int_array(ids), "qs": int_array(deltas[i] for i in ids)}).rowcount
    else:  # plain integers: the driver's own executemany, without per-row SQLAlchemy processing
        cond = f" AND {guard.replace('v.q', ':q')}" if guard else ""
        sql = f"UPDATE {table} AS t SET {column} = t.{column} + :q WHERE t.id = :id{cond}"
        cur = _raw(session).cursor()
        try:
            cur.executemany(sql, ({"id": i, "q": deltas[i]} for i in ids))
            done = cur.rowcount
        finally:
            cur.close()
    if done != len(ids):
        raise Conflict(f"{what} changed while it was being updated ({len(ids) - done} of {len(ids)} refused); "
                       "nothing was written, run the command again")


def _raw(session: Session):
    """The DBAPI connection of the session's transaction (bulk paths that skip per-row processing)."""
    return session.connection().connection.driver_connection


def _moves(session: Session, rows: list[dict]) -> None:
    if rows:
        session.execute(sa.insert(MOVE), rows)


def apply_counts(session: Session, counts: list[tuple[str, str, int]], *, at: datetime, actor: str,
                 reason: str = "count") -> int:
    """Set counted on-hand quantities; returns how many rows changed.

    Each changed row gets a stock_move (kind count) with the delta and a stock_counted event.
    A count below what is allocated there is refused (Conflict) and nothing is written.
    """
    latest: dict[tuple[str, str], int] = {}
    for s, w, n in counts:
        if n < 0:
            raise UsageError(f"count of {s} in {w} is negative ({n})")
        latest[(s, w)] = n  # the last count of a pair wins
    if not latest:
        return 0
    skus = sorted({s for s, _ in latest})
    known: set[str] = set()
    for part in _parts(session, skus):
        known.update(session.execute(sa.select(Product.sku).where(keyed(session, Product.sku, part))).scalars().all())
    unknown = [s for s in skus if s not in known]
    if unknown:
        raise NotFound(f"unknown SKU{'s' if len(unknown) > 1 else ''}: {', '.join(unknown[:10])}"
                       + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    _ensure_rows(session, latest)
    rows = _lock_stock(session, latest, all_or_nothing=True)
    short = [f"{s} in {w}: counted {n}, allocated {rows[(s, w)]['allocated']}"
             for (s, w), n in sorted(latest.items()) if n < rows[(s, w)]["allocated"]]
    if short:
        raise Conflict("a count is below what is allocated there (" + "; ".join(short[:10])
                       + (f"; and {len(short) - 10} more" if len(short) > 10 else "") + ")",
                       hint="Cancel or ship the orders holding the stock first, or check the count.")
    deltas: dict[int, int] = {}
    moves, events = [], []
    for (s, w), n in sorted(latest.items()):
        row = rows[(s, w)]
        delta = n - row["on_hand"]
        if delta == 0:
            continue
        deltas[row["id"]] = delta
        moves.append({"sku": s, "warehouse": w, "delta": delta, "kind": "count", "reason": reason,
                      "ref": None, "actor": actor, "at": at})
        events.append({"event": "stock_counted", "at": at, "actor": actor, "subject": f"sku:{s}",
                       "detail": f"{w}: on hand {row['on_hand']} -> {n} ({delta:+d}); {reason}"})
    _bulk_add(session, "stock", "on_hand", deltas, guard="t.on_hand + :q >= t.allocated", what="stock")
    _moves(session, moves)
    audit.record_many(session, events)
    return len(deltas)


def adjust(session: Session, sku: str, warehouse: str, delta: int, *, reason: str, at: datetime, actor: str) -> dict:
    """A counted correction of on hand (positive or negative), with its reason."""
    if not reason or not reason.strip():
        raise UsageError("a stock adjustment needs a reason (--reason)")
    if delta == 0:
        raise UsageError("DELTA must not be 0")
    _require_product(session, sku)
    if delta > 0:
        _ensure_rows(session, [(sku, warehouse)])
    row = _lock_stock(session, [(sku, warehouse)]).get((sku, warehouse))
    if row is None:
        raise Conflict(f"no stock of {sku} in {warehouse}: cannot take {-delta} away",
                       hint=f"`{command('stock', 'show', sku)}` lists its warehouses.")
    new = row["on_hand"] + delta
    if new < 0:
        raise Conflict(f"{sku} in {warehouse} has {row['on_hand']} on hand: taking {-delta} away would leave {new}")
    if new < row["allocated"]:
        raise Conflict(
            f"{sku} in {warehouse}: {row['allocated']} of its {row['on_hand']} on hand are allocated to orders; "
            f"taking {-delta} away would leave {new}, below what is allocated",
            hint="Cancel or ship the orders holding the stock first.",
        )
    _bulk_add(session, "stock", "on_hand", {row["id"]: delta}, guard="t.on_hand + :q >= t.allocated", what="stock")
    _moves(session, [{"sku": sku, "warehouse": warehouse, "delta": delta, "kind": "adjust", "reason": reason,
                      "ref": None, "actor": actor, "at": at}])
    audit.record(session, event="stock_adjusted", at=at, actor=actor, subject=f"sku:{sku}",
                 detail=f"{warehouse}: on hand {row['on_hand']} -> {new} ({delta:+d}); {reason}")
    return {"sku": sku, "warehouse": warehouse, "delta": delta, "on_hand_before": row["on_hand"], "on_hand": new,
            "allocated": row["allocated"], "available": new - row["allocated"]}


def receive(session: Session, receipt_id: str, *, at: datetime, actor: str, tz: str = "UTC") -> dict:
    """Move all open lines of a receipt onto on hand. NotFound / Conflict when already received."""
    done = session.execute(
        sa.update(RECEIPT).where(RECEIPT.c.receipt_id == receipt_id, RECEIPT.c.status == "open")
        .values(status="received", received_at=at)
        .returning(RECEIPT.c.sku, RECEIPT.c.warehouse, RECEIPT.c.qty)
    ).all()
    if not done:
        seen = session.execute(
            sa.select(sa.func.count(), sa.func.max(RECEIPT.c.received_at)).where(RECEIPT.c.receipt_id == receipt_id)
        ).one()
        if not seen[0]:
            raise NotFound(f"no receipt {receipt_id!r}", hint="`ffctl import receipts FILE` adds expected receipts.")
        when = seen[1]
        at_text = shown(when, tz) if isinstance(when, datetime) else str(when)
        raise Conflict(f"receipt {receipt_id} was already received (at {at_text}); nothing to do")
    lines = sorted((r.sku, r.warehouse, int(r.qty)) for r in done)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for s, w, q in lines:
        totals[(s, w)] += q
    _ensure_rows(session, totals)
    rows = _lock_stock(session, totals)
    _bulk_add(session, "stock", "on_hand", {rows[k]["id"]: q for k, q in totals.items()}, what="stock")
    _moves(session, [{"sku": s, "warehouse": w, "delta": q, "kind": "receipt", "reason": None,
                      "ref": receipt_id, "actor": actor, "at": at} for s, w, q in lines])
    units = sum(q for _s, _w, q in lines)
    audit.record(session, event="received", at=at, actor=actor, subject=f"receipt:{receipt_id}",
                 detail="; ".join(f"{s} {q} into {w}" for s, w, q in lines))
    return {"receipt_id": receipt_id, "received_at": at, "units": units,
            "lines": [{"sku": s, "warehouse": w, "qty": q} for s, w, q in lines]}


# --- orders: releasing and consuming reservations --------------------------------------------

def _lock_order_row(session: Session, order_id: str):
    stmt = sa.select(ORDERS).where(ORDERS.c.order_id == order_id)
    if is_postgresql(session):
        stmt = stmt.with_for_update()
    order = session.execute(stmt).mappings().first()
    if order is None:
        raise NotFound(f"no order {order_id!r}", hint="`ffctl order list` shows the orders in the store.")
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
        raise FfctlError(f"order {order_id}: reservations in {missing} have no stock row")
    by_id = {rows[k]["id"]: -q for k, q in totals.items()}
    _bulk_add(session, "stock", "allocated", by_id, guard="t.allocated + :q >= 0", what="stock")
    if consume:
        _bulk_add(session, "stock", "on_hand", by_id, guard="t.on_hand + :q >= t.allocated", what="stock")
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
              what="stock")
    _bulk_add(session, "stock", "on_hand", {k: v for k, v in on_hand_delta.items() if v},
              guard="t.on_hand + :q >= t.allocated", what="stock")
    gone = [a for a, q in alloc_change.items() if q == 0]
    if gone:
        session.execute(sa.delete(ALLOC).where(ALLOC.c.id.in_(gone)))
    for a, q in alloc_change.items():
        if q:
            session.execute(sa.update(ALLOC).where(ALLOC.c.id == a).values(qty=q))
    for u in {u["i"]: u for u in line_updates}.values():  # a line twice in one shipment: its last state
        done = session.execute(sa.update(LINE).where(LINE.c.id == u["i"]).values(allocated=u["a"], shipped=u["s"]))
        if done.rowcount != 1:
            raise Conflict(f"order {order_id} changed while it was being shipped; nothing was written, run it again")
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
        raise Conflict(f"order {order_id}: only {remaining} units of the line are left to cancel")
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
        _bulk_add(session, "stock", "allocated", dict(deltas), guard="t.allocated + :q >= 0", what="stock")
    session.execute(sa.update(LINE).where(LINE.c.id == line_id)
                    .values(cancelled=line.cancelled + qty, allocated=line.allocated - release))
    return release


def deliver(session: Session, cfg, order_id: str, *, at: datetime, actor: str, issue: str | None = None) -> bool:
    """Record a delivery (with an optional issue); True if recorded, False if already recorded so."""
    from ffctl.core.models import Delivery

    if issue is not None and issue not in DELIVERY_ISSUES:
        raise UsageError(f"unknown delivery issue {issue!r}: use one of {', '.join(DELIVERY_ISSUES)}")
    order = _lock_order_row(session, order_id)
    status = order["status"]
    if status == "delivered":
        found = session.get(Delivery, order_id)
        if found is not None and found.delivered_at == at and found.issue == issue:
            return False
        when = shown(found.delivered_at if found else None, cfg.timezone)
        raise Conflict(f"order {order_id} was already delivered (at {when})")
    if status != "shipped":
        where = f" at node {order['node']}" if order["node"] else ""
        raise Conflict(f"order {order_id} has not shipped (it is {status}{where}); record the shipment first",
                       hint=f"`{command('ship', order_id)}`")
    audit.refuse_earlier(session, order_id, at, cfg.timezone)  # not before its shipment, nor any later event
    session.execute(sa.insert(Delivery.__table__).values(order_id=order_id, delivered_at=at, issue=issue))
    session.execute(sa.update(ORDERS).where(ORDERS.c.order_id == order_id)
                    .values(status="delivered", delivered_at=at, delivery_issue=issue))
    audit.record(session, event="delivered", at=at, actor=actor, order_id=order_id, node=order["node"],
                 detail=f"issue: {issue}" if issue else "delivered without issue")
    return True


# --- allocation ------------------------------------------------------------------------------

_PLANNED_TABLES = ("orders", "order_line", "task", "allocation", "stock")


def _fresh_statistics(session: Session, *, write: bool) -> None:
    """Analyze the tables allocation reads when the planner's statistics are missing or far behind.

    Right after a bulk import the planner knows nothing of the new rows: PostgreSQL's autovacuum
    analyzes within a minute or so, SQLite never does. Planned blind, key lookups by order id
    become scans of every open task (SQLite picks ``ix_task_due`` for ``id IN (...)``), in this
    module and in the workflow's ``complete_auto`` (docs/performance.md, allocate).
    PostgreSQL: on its own autocommit connection, outside the caller's
    transaction, so no lock is held past it (without the privilege it only warns). SQLite: inside
    the write transaction (skipped for a read-only dry run).
    """
    if is_postgresql(session):
        stale = session.execute(sa.text(
            "SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE c.relname IN :names AND c.relnamespace = to_regnamespace(current_schema())::oid "
            "AND (c.reltuples < 0 OR s.n_mod_since_analyze > 1000 + 0.2 * c.reltuples)"
        ).bindparams(sa.bindparam("names", expanding=True)), {"names": list(_PLANNED_TABLES)}).scalars().all()
        if stale:
            with session.get_bind().engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE " + ", ".join(sorted(stale)))
        return
    if write:
        sqlite_analyze_stale(session, _PLANNED_TABLES, min_rows=1000)


def allocation_nodes(cfg) -> list[str]:
    return [name for name, spec in cfg.nodes.items() if spec.auto == "allocate"]


def _candidates(session: Session, nodes: list[str], order_ids: list[str] | None) -> list:
    cols = [ORDERS.c.order_id, ORDERS.c.node, ORDERS.c.priority, ORDERS.c.promised_ship_date]
    order = (ORDERS.c.priority.desc(), ORDERS.c.promised_ship_date.is_(None), ORDERS.c.promised_ship_date,
             ORDERS.c.created_at, ORDERS.c.order_id)
    where = (ORDERS.c.status == "open", ORDERS.c.node.in_(nodes))
    if order_ids is None:  # the database sorts; created_at is not read back (a conversion per order)
        return session.execute(sa.select(*cols).where(*where).order_by(*order)).all()
    q = sa.select(*cols, ORDERS.c.created_at).where(*where)
    rows = []
    for part in _parts(session, order_ids):
        rows.extend(session.execute(q.where(keyed(session, ORDERS.c.order_id, part))).all())
    rows.sort(key=lambda r: (-r.priority, r.promised_ship_date is None, r.promised_ship_date or date.min,
                             r.created_at, r.order_id))
    return rows


def _check_clock(session: Session, order_ids: list[str], at: datetime, tz: str) -> None:
    """Named orders with an event later than ``at`` refuse the whole run (``--all`` skips them)."""
    later = audit.later_events(session, order_ids, at)
    if later:
        first = next(o for o in order_ids if o in later)
        more = len(later) - 1
        raise Conflict(audit.earlier_message(first, at, later[first], tz)
                       + (_("; {n} more of the named orders likewise").format(n=more) if more else ""),
                       hint=_("Give a --now at or after that time, or leave --now out to use the current time."))


def _check_explicit(session: Session, order_ids: list[str], nodes: list[str]) -> None:
    found: dict[str, tuple] = {}
    for part in _parts(session, order_ids):
        for r in session.execute(
            sa.select(ORDERS.c.order_id, ORDERS.c.status, ORDERS.c.node).where(keyed(session, ORDERS.c.order_id, part))
        ):
            found[r.order_id] = (r.status, r.node)
    unknown = [o for o in order_ids if o not in found]
    if unknown:
        raise NotFound(f"no order{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:10])}",
                       hint="`ffctl order list` shows the orders in the store.")
    wrong = []
    for o in order_ids:
        status, node = found[o]
        if status != "open":
            wrong.append(f"{o} is {status}")
        elif node not in nodes:
            wrong.append(f"{o} is at node {node}" if node else f"{o} has finished its workflow")
    if wrong:
        at = " or ".join(nodes) if nodes else "an allocation node"
        raise Conflict(f"only orders waiting at {at} can be allocated: " + "; ".join(wrong[:10])
                       + (f"; and {len(wrong) - 10} more" if len(wrong) > 10 else ""))


def _load_stock_for(session: Session, nodes: list[str], order_ids: list[str] | None, lock: bool):
    """(sku -> [[id, warehouse, on_hand, allocated]], the SKUs) for every SKU the candidate orders
    still need; the stock rows locked in id order by one statement on PostgreSQL."""
    q = (
        sa.select(LINE.c.sku).distinct()
        .join(ORDERS, ORDERS.c.order_id == LINE.c.order_id)
        .where(ORDERS.c.status == "open", ORDERS.c.node.in_(nodes), UNSERVED > 0)
    )
    skus: set[str] = set()
    for part in ([None] if order_ids is None else _parts(session, order_ids)):
        skus.update(session.execute(q if part is None else q.where(keyed(session, ORDERS.c.order_id, part))).scalars())
    stock: dict[str, list[list]] = defaultdict(list)
    for r in _stock_of_skus(session, sorted(skus), lock=lock, all_or_nothing=True):
        stock[r["sku"]].append([r["id"], r["warehouse"], r["on_hand"], r["allocated"]])
    return stock, skus


class _OpenTask(NamedTuple):
    """What completing an order's task at the allocation node needs."""

    id: int
    order_id: str
    node: str
    workflow: str
    seq: int
    deadline: datetime | None


def _sqlite_rows(session: Session, sql: str, keys: Sequence) -> Iterable[tuple]:
    """Rows of ``sql`` whose ``{keys}`` placeholder is an IN list of ``keys``, by the driver in
    IN-sized parts (no per-row SQLAlchemy processing)."""
    raw = _raw(session)
    for part in _chunks(keys):
        yield from raw.execute(sql.format(keys=", ".join("?" * len(part))), part).fetchall()


def _lock_chunk(session: Session, chunk_rows: Sequence, nodes: list[str], lock: bool) -> dict[str, _OpenTask]:
    """Orders of the chunk still at an allocation node with an open, unheld task there, with that
    task; on PostgreSQL the orders and then their tasks are locked with SKIP LOCKED (an order
    someone else holds waits for the next run). Two single-table reads by key: no join for a
    planner with stale statistics to turn quadratic after a bulk import. On SQLite the write
    transaction is exclusive and read the candidates, so they are still where it found them:
    only their tasks are read."""
    if not is_postgresql(session):
        node_of = {r.order_id: r.node for r in chunk_rows}
        found = {}
        times: dict[str, datetime] = {}
        for tid, oid, node, wf, seq, deadline, held in _sqlite_rows(
            session, "SELECT id, order_id, node, workflow, seq, deadline, held_at FROM task "
                     "WHERE order_id IN ({keys}) AND status = 'open'", list(node_of)):
            if held is None and node_of[oid] == node:
                if deadline is not None:
                    deadline = times.get(deadline) or times.setdefault(
                        deadline, datetime.fromisoformat(deadline).replace(tzinfo=timezone.utc))
                found[oid] = _OpenTask(tid, oid, node, wf, seq, deadline)
        return found
    chunk = [r.order_id for r in chunk_rows]
    # by primary key only: with status/node in the WHERE, a planner may pick ix_orders_status_node
    # and scan every waiting order once per chunk
    q = sa.select(ORDERS.c.order_id, ORDERS.c.status, ORDERS.c.node).where(keyed(session, ORDERS.c.order_id, chunk))
    if lock:
        q = q.with_for_update(skip_locked=True)
    wanted = set(nodes)
    at_node = {oid: node for oid, status, node in session.execute(q).all() if status == "open" and node in wanted}
    if not at_node:
        return {}
    t = sa.select(TASK.c.id, TASK.c.order_id, TASK.c.node, TASK.c.workflow, TASK.c.seq, TASK.c.deadline,
                  TASK.c.held_at).where(keyed(session, TASK.c.order_id, list(at_node)), TASK.c.status == "open")
    if lock:
        t = t.with_for_update(skip_locked=True)
    return {r.order_id: _OpenTask(*r[:6]) for r in session.execute(t).all()
            if r.held_at is None and at_node.get(r.order_id) == r.node}


def _pick_warehouses(rows: list[list], need: int, used) -> list[tuple[list, int]]:
    """Where to reserve ``need`` units: one warehouse that fills it all (one the line already uses
    first, then the most available), else the most available first, and so on.

    ``rows`` are ``[id, warehouse, on_hand, allocated]``; a hot loop, so plain comparisons."""
    best = None
    best_key = None
    for r in rows:
        avail = r[2] - r[3]
        if avail >= need:
            key = (r[1] not in used, -avail, r[1])
            if best is None or key < best_key:
                best, best_key = r, key
    if best is not None:
        return [(best, need)]
    plan = []
    for r in sorted((r for r in rows if r[2] > r[3]), key=lambda r: (r[3] - r[2], r[1])):
        take = min(r[2] - r[3], need)
        plan.append((r, take))
        need -= take
        if need <= 0:
            break
    return plan


def _read_chunk(session: Session, chunk_rows: Sequence, nodes: list[str], lock: bool, at: datetime):
    """(orders locked with their tasks, their lines by order, existing reservations by line, the
    locked orders left out because they have events later than ``at``: ``{order_id: (at, event)}``)
    for a chunk of candidates (see ``_lock_chunk``)."""
    locked = _lock_chunk(session, chunk_rows, nodes, lock)
    later = audit.later_events(session, list(locked), at)  # their timelines cannot run backwards
    for order_id in later:
        del locked[order_id]
    lines_by_order: dict[str, list] = defaultdict(list)
    ids_locked = [r.order_id for r in chunk_rows if r.order_id in locked]
    if is_postgresql(session):
        lines = session.execute(
            sa.select(LINE.c.order_id, LINE.c.line_no, LINE.c.id, LINE.c.sku, LINE.c.qty - LINE.c.cancelled, LINE.c.allocated)
            .where(keyed(session, LINE.c.order_id, ids_locked))
        ).all() if ids_locked else []
    else:
        lines = _sqlite_rows(session, "SELECT order_id, line_no, id, sku, qty - cancelled, allocated FROM order_line "
                                      "WHERE order_id IN ({keys})", ids_locked)
    for ln in lines:
        lines_by_order[ln[0]].append(ln[1:])
    partial_orders = [o for o in ids_locked if any(ln[4] for ln in lines_by_order[o])]
    existing: dict[int, dict[str, int]] = defaultdict(dict)  # line id -> warehouse -> allocation id
    for part in _parts(session, partial_orders):
        for a_id, line_id, wh in session.execute(
            sa.select(ALLOC.c.id, ALLOC.c.line_id, ALLOC.c.warehouse).where(keyed(session, ALLOC.c.order_id, part))
        ).all():
            existing[line_id][wh] = a_id
    return locked, lines_by_order, existing, later


def _write_then_read(session: Session, writes, chunks: list, index: int, nodes: list[str], lock: bool,
                     at: datetime):
    """The planned chunk's writes, then the reads of chunk ``index`` (None past the last)."""
    if writes is not None:
        writes.write(session)
    return _read_chunk(session, chunks[index], nodes, lock, at) if index < len(chunks) else None


class _Pipeline:
    """One job at a time beside the planner: on a second thread when ``background`` (the job uses
    the session while the planner does not: one connection, one transaction, never two users at
    once), else run at once."""

    def __init__(self, background: bool) -> None:
        self._pool = None
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="ffctl-allocate")
        self._future = None
        self._result = None

    def start(self, job: Callable[[], object]) -> None:
        if self._pool is None:
            self._result = job()
        else:
            self._future = self._pool.submit(job)

    def wait(self):
        """The job's result (its exception, if it raised one)."""
        if self._future is not None:
            future, self._future = self._future, None
            return future.result()
        result, self._result = self._result, None
        return result

    def close(self) -> None:
        """Let a running job end before the caller's transaction does (on success or failure)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class _ChunkWrites:
    """One planned chunk's writes: lines, reservations, events, and the fully allocated orders'
    moves (``complete``: their tasks, read and locked with the chunk: open, unheld, at the order's
    node). On PostgreSQL everything is formatted here, on the planning thread, so the writing
    thread only sends (``write``)."""

    def __init__(self, cfg, at: datetime, actor: str, *, pg: bool, line_deltas: dict[int, int],
                 alloc_updates: dict[int, int], alloc_inserts: list[tuple], events: list[dict], complete: list,
                 report: list[dict]) -> None:
        from ffctl.core import workflow

        self.cfg, self.at, self.actor, self.report = cfg, at, actor, report
        self.line_deltas, self.alloc_updates = line_deltas, alloc_updates
        alloc_inserts.sort(key=lambda r: r[1])  # by line: index pages and key checks in order
        self.moves = None
        if pg:
            self.allocs = CopyRows("allocation", ALLOC_COLUMNS, (r + (at,) for r in alloc_inserts))
        else:
            stored = time_texts()(at)
            self.allocs = [r + (stored,) for r in alloc_inserts]
        self.events = audit.prepare_many(events, postgresql=pg)
        if complete and workflow.plannable(cfg, complete):
            self.moves = workflow.PlannedMoves(cfg, complete, at=at, actor=actor, postgresql=pg)
            self._moved(self.moves.moved)
            complete = []
        self.complete = complete

    def _moved(self, moved: dict[str, str | None]) -> None:
        for row in self.report:
            if row["result"] == "allocated":
                row["next_node"] = moved.get(row["order_id"], row["node"])

    def write(self, session: Session) -> None:
        from ffctl.core import workflow

        _bulk_add(session, "order_line", "allocated", self.line_deltas, guard="t.allocated + t.cancelled + :q <= t.qty",
                  what="order line")
        _bulk_add(session, "allocation", "qty", self.alloc_updates, what="allocation")
        insert_rows(session, "allocation", ALLOC_COLUMNS, self.allocs)
        self.events.write(session)
        if self.moves is not None:
            self.moves.write(session)
        if self.complete:
            self._moved(workflow.complete_tasks(session, self.cfg, self.complete, at=self.at, actor=self.actor))


def allocate(session: Session, cfg, order_ids: list[str] | None = None, *, all_orders: bool = False,
             dry_run: bool = False, at: datetime, actor: str, tz: str, details: bool | str = True,
             on_orders: Callable[[list[dict]], None] | None = None) -> dict:
    """Reserve stock for orders waiting at an ``auto = "allocate"`` node, highest priority first.

    Orders go by priority (desc), promised_ship_date (asc, none last), created_at (asc). Each line
    takes what is available; a fully allocated order completes its node, a partial one stays and
    is topped up by a later run. Returns the plan (``dry_run``: nothing is written).
    ``{dry_run, orders: [...], skipped: [...], summary: {...}}``; ``details=False`` leaves out the
    per-order rows (benchmarks, cron), ``details="orders"`` their ``lines``; ``on_orders`` receives them chunk by chunk instead of
    the result holding them all (bounded memory for --all on a big store).
    """
    if not all_orders and not order_ids:
        raise UsageError("name the orders to allocate, or pass --all")
    nodes = allocation_nodes(cfg)
    ids = list(dict.fromkeys(order_ids)) if order_ids else None
    if all_orders:
        ids = None
    if not nodes:
        if ids:
            raise Conflict("no node of the config has auto = \"allocate\": nothing can be allocated")
        return {"dry_run": dry_run, "orders": [], "skipped": [], "after_clock": [],
                "summary": _summary([], 0, 0, 0, 0, 0)}
    if not is_postgresql(session):
        sqlite_working_set(session, cache_mib=SQLITE_CACHE_MIB)
    if ids:
        _check_explicit(session, ids, nodes)
        _check_clock(session, ids, at, tz)
    else:
        _fresh_statistics(session, write=not dry_run)
    lock = not dry_run
    stock, stock_skus = _load_stock_for(session, nodes, ids, lock)
    candidates = _candidates(session, nodes, ids)
    today = local_date(at, tz)
    # Backorder dates: after this run a backordered SKU has nothing available, so its open receipts
    # serve the backorders in run order. One read of the receipts of every SKU in play.
    incoming = _open_receipts(session, sorted(stock_skus), today, tz) if stock_skus else {}
    profiles: dict[str, _Profile] = {}

    def backorder_date(sku: str, qty: int) -> date | None:
        p = profiles.get(sku)
        if p is None:
            p = profiles[sku] = _Profile(today, 0, [(d, q) for d, _w, q in incoming.get(sku, [])])
        d = p.earliest(qty)
        p.consume(qty, d)
        return d

    report: list[dict] = []
    skipped: list[str] = []
    after_clock: list[dict] = []

    def deliver(chunk_report: list[dict]) -> None:
        if on_orders is None:
            report.extend(chunk_report)
        elif chunk_report:
            on_orders(chunk_report)

    stock_deltas: dict[int, int] = defaultdict(int)  # written once at the end: the rows stay locked till commit
    n_complete = n_partial = n_back = units = units_back = 0
    with_lines = details is True
    # PostgreSQL: while a chunk is planned, a second thread writes the chunk before it and reads and
    # locks the chunk after it, so the server works on one core while Python plans on the other
    pg = is_postgresql(session)
    background = lock and pg
    chunks = list(_ramp(candidates, CHUNK))
    pipeline = _Pipeline(background)
    try:
        data = _read_chunk(session, chunks[0], nodes, lock, at) if chunks else None
        writes: _ChunkWrites | None = None
        for index, chunk_rows in enumerate(chunks):
            pipeline.start(partial(_write_then_read, session, writes, chunks, index + 1, nodes, lock, at))
            locked, lines_by_order, existing, later = data
            skipped.extend(r.order_id for r in chunk_rows if r.order_id not in locked and r.order_id not in later)
            after_clock.extend({"order_id": r.order_id, "latest_at": later[r.order_id][0],
                                "latest_event": later[r.order_id][1]} for r in chunk_rows if r.order_id in later)

            line_deltas: dict[int, int] = {}
            alloc_updates: dict[int, int] = {}
            alloc_inserts: list[tuple] = []
            events: list[dict] = []
            complete: list[str] = []
            chunk_report: list[dict] = []
            no_rows: list = []
            for r in chunk_rows:
                order_id = r.order_id
                if order_id not in locked:
                    continue
                order_lines = lines_by_order[order_id]
                order_lines.sort()  # by line_no
                line_reports, notes, back_notes = [], [], []
                got_now = back_total = 0
                had_some = False
                back_dates = []
                for line_no, line_id, sku, qty, already in order_lines:
                    need = qty - already
                    had_some = had_some or already > 0
                    reserved = no_rows
                    if need > 0:
                        used = existing.get(line_id, {}) if already else {}
                        picks = _pick_warehouses(stock.get(sku, no_rows), need, used)
                        if picks:
                            reserved = []
                            took = 0
                            for row, take in picks:
                                row[3] += take
                                stock_deltas[row[0]] += take
                                reserved.append((row[1], take))
                                took += take
                                held = used.get(row[1])
                                if held is not None:
                                    alloc_updates[held] = alloc_updates.get(held, 0) + take
                                else:
                                    alloc_inserts.append((order_id, line_id, sku, row[1], take))
                            line_deltas[line_id] = took
                            got_now += took
                            need -= took
                            notes.append(f"L{line_no} {sku} " + " + ".join(f"{q} @ {w}" for w, q in reserved))
                    atp_date = None
                    if need > 0:
                        back_total += need
                        atp_date = backorder_date(sku, need)
                        back_dates.append(atp_date)
                        back_notes.append(f"L{line_no} {sku} {need} backordered"
                                          + (f" (ATP {atp_date.isoformat()})" if atp_date else " (no known supply)"))
                    if with_lines:
                        line_reports.append({"line_no": line_no, "sku": sku, "qty": qty, "allocated": qty - need,
                                             "reserved": [{"warehouse": w, "qty": q} for w, q in reserved],
                                             "backordered": need, "atp_date": atp_date})
                units += got_now
                units_back += back_total
                if back_total == 0:
                    complete.append(order_id)
                    n_complete += 1
                    result = "allocated"
                elif got_now or had_some:
                    n_partial += 1
                    result = "partial"
                else:
                    n_back += 1
                    result = "backordered"
                if got_now:
                    events.append({"event": "allocated", "at": at, "actor": actor, "order_id": order_id,
                                   "node": r.node, "detail": "; ".join(notes + back_notes)})
                if details:
                    row_out = {
                        "order_id": order_id, "node": r.node, "priority": r.priority,
                        "promised_ship_date": r.promised_ship_date, "result": result,
                        "allocated_now": got_now, "backordered": back_total,
                        # the order is covered once its last backordered line is; unknown if any has no date
                        "backorder_atp": max(back_dates) if back_dates and all(back_dates) else None,
                        "next_node": None,
                    }
                    if with_lines:
                        row_out["lines"] = line_reports
                    chunk_report.append(row_out)
            previous = writes
            writes = None
            if not dry_run:
                writes = _ChunkWrites(cfg, at, actor, pg=pg, line_deltas=line_deltas,
                                      alloc_updates=alloc_updates, alloc_inserts=alloc_inserts, events=events,
                                      complete=[locked[o] for o in complete], report=chunk_report)
            data = pipeline.wait()
            if previous is not None:
                deliver(previous.report)
            if dry_run and chunk_report:
                deliver(chunk_report)
        if writes is not None:
            writes.write(session)
            deliver(writes.report)
    finally:
        pipeline.close()
    if not dry_run:
        _bulk_add(session, "stock", "allocated", dict(stock_deltas), guard="t.on_hand - t.allocated >= :q",
                  what="stock")
    return {
        "dry_run": dry_run,
        "orders": report,
        "skipped": skipped,
        "after_clock": after_clock,
        "summary": _summary(report, n_complete, n_partial, n_back, units, units_back),
    }


def _summary(report, complete, partial, back, units, units_back) -> dict:
    return {"orders": complete + partial + back, "completed": complete, "partial": partial, "backordered": back,
            "units_allocated": units, "units_backordered": units_back}
