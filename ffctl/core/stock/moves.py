"""Locking and writing stock rows: counts, adjustments and receipts, and the locking and
bulk-update helpers every stock writer uses."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from ffctl.core import audit
from ffctl.core.bulk import (
    among,
    int_array,
    keyed,
)
from ffctl.core.clock import shown
from ffctl.core.errors import Conflict, NotFound, UsageError
from ffctl.core.models import Product
from ffctl.core.stock.availability import _require_product
from ffctl.core.stock.common import MOVE, RECEIPT, STOCK, _parts
from ffctl.core.store import dialect_insert, is_postgresql
from ffctl.core.text import command
from ffctl.i18n import _, ngettext


def _ensure_rows(session: Session, pairs: Iterable[tuple[str, str]]) -> None:
    """Create missing (sku, warehouse) stock rows with nothing on hand; safe under concurrency."""
    wanted = sorted(set(pairs))
    if not wanted:
        return
    existing: set[tuple[str, str]] = set()
    for part in _parts(session, sorted({s for s, _w in wanted})):
        existing.update(
            (r[0], r[1])
            for r in session.execute(sa.select(STOCK.c.sku, STOCK.c.warehouse).where(among(session, STOCK.c.sku, part)))
        )
    missing = [{"sku": s, "warehouse": w, "on_hand": 0, "allocated": 0} for s, w in wanted if (s, w) not in existing]
    if not missing:
        return
    session.execute(dialect_insert(session)(STOCK).on_conflict_do_nothing(index_elements=["sku", "warehouse"]), missing)


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
    rows: list[dict] = []
    for part in _parts(session, skus):
        rows.extend(
            dict(r)
            for r in session.execute(
                sa.select(STOCK.c.id, STOCK.c.sku, STOCK.c.warehouse, STOCK.c.on_hand, STOCK.c.allocated).where(
                    keyed(session, STOCK.c.sku, part)
                )
            ).mappings()
        )
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
            raise Conflict(
                _(
                    "stock rows stayed locked by other ffctl processes for {lock_wait_seconds:.0f} s; nothing was "
                    "changed, run the command again"
                ).format(lock_wait_seconds=LOCK_WAIT_SECONDS)
            )
        time.sleep(pause * (0.5 + random.random()))
        pause = min(pause * 2, 0.5)


def _lock_stock(
    session: Session, pairs: Iterable[tuple[str, str]], *, all_or_nothing: bool = False
) -> dict[tuple[str, str], dict]:
    """Current stock rows for the pairs, locked (with the other rows of their SKUs) in id order."""
    wanted = set(pairs)
    rows = _stock_of_skus(session, [s for s, _w in wanted], lock=True, all_or_nothing=all_or_nothing)
    return {(r["sku"], r["warehouse"]): r for r in rows if (r["sku"], r["warehouse"]) in wanted}


def _bulk_add(
    session: Session, table: str, column: str, deltas: dict[int, int], *, guard: str | None = None, what: str = "row"
) -> None:
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
        _update_all(session, sql, {"ids": int_array(ids), "qs": int_array(deltas[i] for i in ids)}, len(ids), what)
    else:  # plain integers: the driver's own executemany, without per-row SQLAlchemy processing
        cond = f" AND {guard.replace('v.q', ':q')}" if guard else ""
        sql = f"UPDATE {table} AS t SET {column} = t.{column} + :q WHERE t.id = :id{cond}"
        _update_all(session, sql, ({"id": i, "q": deltas[i]} for i in ids), len(ids), what)


def _update_all(session: Session, sql: str, params: dict | Iterable, count: int, what: str) -> None:
    """Run an UPDATE of ``count`` rows by id and refuse if it touched fewer (a row gone, or failing
    its guard: the caller's transaction rolls back). ``params``: one dict, the statement's arrays
    (PostgreSQL's ``unnest``), or one set a row for the driver's own executemany (SQLite)."""
    if isinstance(params, dict):
        done = session.execute(sa.text(sql), params).rowcount  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult; Session.execute is typed Result
    else:
        cur = _raw(session).cursor()
        try:
            cur.executemany(sql, params)
            done = cur.rowcount
        finally:
            cur.close()
    if done != count:
        raise Conflict(
            _(
                "{what} changed while it was being updated ({value} of {count} refused); nothing was written, "
                "run the command again"
            ).format(what=what, value=count - done, count=count)
        )


def _raw(session: Session):
    """The DBAPI connection of the session's transaction (bulk paths that skip per-row processing)."""
    return session.connection().connection.driver_connection


def _moves(session: Session, rows: list[dict]) -> None:
    if rows:
        session.execute(sa.insert(MOVE), rows)


def apply_counts(
    session: Session, counts: list[tuple[str, str, int]], *, at: datetime, actor: str, reason: str = "count"
) -> int:
    """Set counted on-hand quantities; returns how many rows changed.

    Each changed row gets a stock_move (kind count) with the delta and a stock_counted event.
    A count below what is allocated there is refused (Conflict) and nothing is written.
    """
    latest: dict[tuple[str, str], int] = {}
    for s, w, n in counts:
        if n < 0:
            raise UsageError(_("count of {s} in {w} is negative ({n})").format(s=s, w=w, n=n))
        latest[(s, w)] = n  # the last count of a pair wins
    if not latest:
        return 0
    skus = sorted({s for s, _w in latest})
    known: set[str] = set()
    for part in _parts(session, skus):
        known.update(
            session.execute(sa.select(col(Product.sku)).where(keyed(session, Product.sku, part))).scalars().all()
        )
    unknown = [s for s in skus if s not in known]
    if unknown:
        raise NotFound(
            ngettext("unknown SKU: {skus}", "unknown SKUs: {skus}", len(unknown)).format(skus=", ".join(unknown[:10]))
            + (_(" and {value} more").format(value=len(unknown) - 10) if len(unknown) > 10 else "")
        )
    _ensure_rows(session, latest)
    rows = _lock_stock(session, latest, all_or_nothing=True)
    short = [
        _("{sku} in {warehouse}: counted {n}, allocated {allocated}").format(
            sku=s, warehouse=w, n=n, allocated=rows[(s, w)]["allocated"]
        )
        for (s, w), n in sorted(latest.items())
        if n < rows[(s, w)]["allocated"]
    ]
    if short:
        raise Conflict(
            _("a count is below what is allocated there (")
            + "; ".join(short[:10])
            + (_("; and {value} more").format(value=len(short) - 10) if len(short) > 10 else "")
            + ")",
            hint=_("Cancel or ship the orders holding the stock first, or check the count."),
        )
    deltas: dict[int, int] = {}
    moves, events = [], []
    for (s, w), n in sorted(latest.items()):
        row = rows[(s, w)]
        delta = n - row["on_hand"]
        if delta == 0:
            continue
        deltas[row["id"]] = delta
        moves.append(
            {
                "sku": s,
                "warehouse": w,
                "delta": delta,
                "kind": "count",
                "reason": reason,
                "ref": None,
                "actor": actor,
                "at": at,
            }
        )
        events.append(
            {
                "event": "stock_counted",
                "at": at,
                "actor": actor,
                "subject": f"sku:{s}",
                "detail": _("{warehouse}: on hand {before} -> {after} ({delta:+d}); {reason}").format(
                    warehouse=w, before=row["on_hand"], after=n, delta=delta, reason=reason
                ),
            }
        )
    _bulk_add(session, "stock", "on_hand", deltas, guard="t.on_hand + :q >= t.allocated", what=_("stock"))
    _moves(session, moves)
    audit.record_many(session, events)
    return len(deltas)


def adjust(session: Session, sku: str, warehouse: str, delta: int, *, reason: str, at: datetime, actor: str) -> dict:
    """A counted correction of on hand (positive or negative), with its reason."""
    if not reason or not reason.strip():
        raise UsageError(_("a stock adjustment needs a reason (--reason)"))
    if delta == 0:
        raise UsageError(_("DELTA must not be 0"))
    _require_product(session, sku)
    if delta > 0:
        _ensure_rows(session, [(sku, warehouse)])
    row = _lock_stock(session, [(sku, warehouse)]).get((sku, warehouse))
    if row is None:
        raise Conflict(
            _("no stock of {sku} in {warehouse}: cannot take {value} away").format(
                sku=sku, warehouse=warehouse, value=-delta
            ),
            hint=_("`{command}` lists its warehouses.").format(command=command("stock", "show", sku)),
        )
    new = row["on_hand"] + delta
    if new < 0:
        raise Conflict(
            _("{sku} in {warehouse} has {on_hand} on hand: taking {value} away would leave {new}").format(
                sku=sku, warehouse=warehouse, on_hand=row["on_hand"], value=-delta, new=new
            )
        )
    if new < row["allocated"]:
        raise Conflict(
            _(
                "{sku} in {warehouse}: {allocated} of its {on_hand} on hand are allocated to orders; taking "
                "{value} away would leave {new}, below what is allocated"
            ).format(
                sku=sku, warehouse=warehouse, allocated=row["allocated"], on_hand=row["on_hand"], value=-delta, new=new
            ),
            hint=_("Cancel or ship the orders holding the stock first."),
        )
    _bulk_add(session, "stock", "on_hand", {row["id"]: delta}, guard="t.on_hand + :q >= t.allocated", what=_("stock"))
    _moves(
        session,
        [
            {
                "sku": sku,
                "warehouse": warehouse,
                "delta": delta,
                "kind": "adjust",
                "reason": reason,
                "ref": None,
                "actor": actor,
                "at": at,
            }
        ],
    )
    audit.record(
        session,
        event="stock_adjusted",
        at=at,
        actor=actor,
        subject=f"sku:{sku}",
        detail=_("{warehouse}: on hand {before} -> {after} ({delta:+d}); {reason}").format(
            warehouse=warehouse, before=row["on_hand"], after=new, delta=delta, reason=reason
        ),
    )
    return {
        "sku": sku,
        "warehouse": warehouse,
        "delta": delta,
        "on_hand_before": row["on_hand"],
        "on_hand": new,
        "allocated": row["allocated"],
        "available": new - row["allocated"],
    }


def receive(session: Session, receipt_id: str, *, at: datetime, actor: str, tz: str = "UTC") -> dict:
    """Move all open lines of a receipt onto on hand. NotFound / Conflict when already received."""
    done = session.execute(
        sa.update(RECEIPT)
        .where(RECEIPT.c.receipt_id == receipt_id, RECEIPT.c.status == "open")
        .values(status="received", received_at=at)
        .returning(RECEIPT.c.sku, RECEIPT.c.warehouse, RECEIPT.c.qty)
    ).all()
    if not done:
        seen = session.execute(
            sa.select(sa.func.count(), sa.func.max(RECEIPT.c.received_at)).where(RECEIPT.c.receipt_id == receipt_id)
        ).one()
        if not seen[0]:
            raise NotFound(
                _("no receipt {receipt_id!r}").format(receipt_id=receipt_id),
                hint=_("`ffctl import receipts FILE` adds expected receipts."),
            )
        when = seen[1]
        at_text = shown(when, tz) if isinstance(when, datetime) else str(when)
        raise Conflict(
            _("receipt {receipt_id} was already received (at {at_text}); nothing to do").format(
                receipt_id=receipt_id, at_text=at_text
            )
        )
    lines = sorted((r.sku, r.warehouse, int(r.qty)) for r in done)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for s, w, q in lines:
        totals[(s, w)] += q
    _ensure_rows(session, totals)
    rows = _lock_stock(session, totals)
    _bulk_add(session, "stock", "on_hand", {rows[k]["id"]: q for k, q in totals.items()}, what=_("stock"))
    _moves(
        session,
        [
            {
                "sku": s,
                "warehouse": w,
                "delta": q,
                "kind": "receipt",
                "reason": None,
                "ref": receipt_id,
                "actor": actor,
                "at": at,
            }
            for s, w, q in lines
        ],
    )
    units = sum(q for _s, _w, q in lines)
    audit.record(
        session,
        event="received",
        at=at,
        actor=actor,
        subject=f"receipt:{receipt_id}",
        detail="; ".join(_("{sku} {qty} into {warehouse}").format(sku=s, qty=q, warehouse=w) for s, w, q in lines),
    )
    return {
        "receipt_id": receipt_id,
        "received_at": at,
        "units": units,
        "lines": [{"sku": s, "warehouse": w, "qty": q} for s, w, q in lines],
    }
