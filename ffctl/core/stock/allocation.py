"""Allocation: reserve stock for the orders waiting at an ``auto = "allocate"`` node."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit
from ffctl.core.bulk import (
    CopyRows,
    insert_rows,
    keyed,
    sqlite_analyze_stale,
    sqlite_working_set,
    time_texts,
)
from ffctl.core.clock import local_date
from ffctl.core.errors import Conflict, NotFound, UsageError
from ffctl.core.stock.availability import _open_receipts, _Profile
from ffctl.core.stock.common import ALLOC, LINE, ORDERS, TASK, UNSERVED, _chunks, _parts
from ffctl.core.stock.moves import _bulk_add, _raw, _stock_of_skus
from ffctl.core.store import is_postgresql
from ffctl.core.workflow.moves import OpenTask
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ffctl.core.config import Config

ALLOC_COLUMNS = ("order_id", "line_id", "sku", "warehouse", "qty", "created_at")  # a new reservation's row
CHUNK = 20000  # orders per allocation step: bounds memory; larger steps walk the tables fewer times
SQLITE_CACHE_MIB = 512  # one transaction changes pages all over the file and keeps them all (docs/performance.md)


def _ramp(items: Sequence, size: int) -> Iterable[Sequence]:
    """Steps of ``size`` items, the first ones smaller (size/8, /4, /2): writing starts soon, and
    each step is planned while the one before it is written."""
    start, step = 0, max(size // 8, 1)
    while start < len(items):
        yield items[start : start + step]
        start += step
        step = min(step * 2, size)


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
        stale = (
            session.execute(
                sa.text(
                    "SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid "
                    "WHERE c.relname IN :names AND c.relnamespace = to_regnamespace(current_schema())::oid "
                    "AND (c.reltuples < 0 OR s.n_mod_since_analyze > 1000 + 0.2 * c.reltuples)"
                ).bindparams(sa.bindparam("names", expanding=True)),
                {"names": list(_PLANNED_TABLES)},
            )
            .scalars()
            .all()
        )
        if stale:
            with session.get_bind().engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE " + ", ".join(sorted(stale)))
        return
    if write:
        sqlite_analyze_stale(session, _PLANNED_TABLES, min_rows=1000)


def allocation_nodes(cfg: Config) -> list[str]:
    return [name for name, spec in cfg.nodes.items() if spec.auto == "allocate"]


def _candidates(session: Session, nodes: list[str], order_ids: list[str] | None) -> Sequence[Any]:
    cols = [ORDERS.c.order_id, ORDERS.c.node, ORDERS.c.priority, ORDERS.c.promised_ship_date]
    order = (
        ORDERS.c.priority.desc(),
        ORDERS.c.promised_ship_date.is_(None),
        ORDERS.c.promised_ship_date,
        ORDERS.c.created_at,
        ORDERS.c.order_id,
    )
    where = (ORDERS.c.status == "open", ORDERS.c.node.in_(nodes))
    if order_ids is None:  # the database sorts; created_at is not read back (a conversion per order)
        return session.execute(sa.select(*cols).where(*where).order_by(*order)).all()
    q = sa.select(*cols, ORDERS.c.created_at).where(*where)
    rows: list[Any] = []
    for part in _parts(session, order_ids):
        rows.extend(session.execute(q.where(keyed(session, ORDERS.c.order_id, part))).all())
    rows.sort(
        key=lambda r: (
            -r.priority,
            r.promised_ship_date is None,
            r.promised_ship_date or date.min,
            r.created_at,
            r.order_id,
        )
    )
    return rows


def _check_clock(session: Session, order_ids: list[str], at: datetime, tz: str) -> None:
    """Named orders with an event later than ``at`` refuse the whole run (``--all`` skips them)."""
    later = audit.later_events(session, order_ids, at)
    if later:
        first = next(o for o in order_ids if o in later)
        more = len(later) - 1
        raise Conflict(
            audit.earlier_message(first, at, later[first], tz)
            + (_("; {n} more of the named orders likewise").format(n=more) if more else ""),
            hint=_("Give a --now at or after that time, or leave --now out to use the current time."),
        )


def _check_explicit(session: Session, order_ids: list[str], nodes: list[str]) -> None:
    found: dict[str, tuple] = {}
    for part in _parts(session, order_ids):
        for r in session.execute(
            sa.select(ORDERS.c.order_id, ORDERS.c.status, ORDERS.c.node).where(keyed(session, ORDERS.c.order_id, part))
        ):
            found[r.order_id] = (r.status, r.node)
    unknown = [o for o in order_ids if o not in found]
    if unknown:
        raise NotFound(
            ngettext("no order {orders}", "no orders {orders}", len(unknown)).format(orders=", ".join(unknown[:10])),
            hint=_("`ffctl order list` shows the orders in the store."),
        )
    wrong = []
    for o in order_ids:
        status, node = found[o]
        if status != "open":
            wrong.append(_("{order} is {status}").format(order=o, status=status))
        elif node not in nodes:
            wrong.append(
                _("{order} is at node {node}").format(order=o, node=node)
                if node
                else _("{order} has finished its workflow").format(order=o)
            )
    if wrong:
        at = _(" or ").join(nodes) if nodes else _("an allocation node")
        raise Conflict(
            _("only orders waiting at {at} can be allocated: ").format(at=at)
            + "; ".join(wrong[:10])
            + (_("; and {value} more").format(value=len(wrong) - 10) if len(wrong) > 10 else "")
        )


def _load_stock_for(session: Session, nodes: list[str], order_ids: list[str] | None, lock: bool):
    """(sku -> [[id, warehouse, on_hand, allocated]], the SKUs) for every SKU the candidate orders
    still need; the stock rows locked in id order by one statement on PostgreSQL."""
    q = (
        sa.select(LINE.c.sku)
        .distinct()
        .join(ORDERS, ORDERS.c.order_id == LINE.c.order_id)
        .where(ORDERS.c.status == "open", ORDERS.c.node.in_(nodes), UNSERVED > 0)
    )
    skus: set[str] = set()
    for part in [None] if order_ids is None else _parts(session, order_ids):
        skus.update(session.execute(q if part is None else q.where(keyed(session, ORDERS.c.order_id, part))).scalars())
    stock: dict[str, list[list]] = defaultdict(list)
    for r in _stock_of_skus(session, sorted(skus), lock=lock, all_or_nothing=True):
        stock[r["sku"]].append([r["id"], r["warehouse"], r["on_hand"], r["allocated"]])
    return stock, skus


def _sqlite_rows(session: Session, sql: str, keys: Sequence) -> Iterable[tuple]:
    """Rows of ``sql`` whose ``{keys}`` placeholder is an IN list of ``keys``, by the driver in
    IN-sized parts (no per-row SQLAlchemy processing)."""
    raw = _raw(session)
    for part in _chunks(keys):
        yield from raw.execute(sql.format(keys=", ".join("?" * len(part))), part).fetchall()


def _lock_chunk(session: Session, chunk_rows: Sequence, nodes: list[str], lock: bool) -> dict[str, OpenTask]:
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
            session,
            "SELECT id, order_id, node, workflow, seq, deadline, held_at FROM task "
            "WHERE order_id IN ({keys}) AND status = 'open'",
            list(node_of),
        ):
            if held is None and node_of[oid] == node:
                if deadline is not None:
                    deadline = times.get(deadline) or times.setdefault(
                        deadline, datetime.fromisoformat(deadline).replace(tzinfo=timezone.utc)
                    )
                found[oid] = OpenTask(tid, oid, node, wf, seq, deadline)
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
    t = sa.select(
        TASK.c.id, TASK.c.order_id, TASK.c.node, TASK.c.workflow, TASK.c.seq, TASK.c.deadline, TASK.c.held_at
    ).where(keyed(session, TASK.c.order_id, list(at_node)), TASK.c.status == "open")
    if lock:
        t = t.with_for_update(skip_locked=True)
    return {
        r.order_id: OpenTask(*r[:6])
        for r in session.execute(t).all()
        if r.held_at is None and at_node.get(r.order_id) == r.node
    }


def _pick_warehouses(rows: list[list], need: int, used) -> list[tuple[list, int]]:
    """Where to reserve ``need`` units: one warehouse that fills it all (one the line already uses
    first, then the most available), else the most available first, and so on.

    ``rows`` are ``[id, warehouse, on_hand, allocated]``; a hot loop, so plain comparisons."""
    best = None
    best_key: tuple = ()  # compared only once best is set
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
    lines: Iterable[Any]
    if is_postgresql(session):
        lines = (
            session.execute(
                sa.select(
                    LINE.c.order_id,
                    LINE.c.line_no,
                    LINE.c.id,
                    LINE.c.sku,
                    LINE.c.qty - LINE.c.cancelled,
                    LINE.c.allocated,
                ).where(keyed(session, LINE.c.order_id, ids_locked))
            ).all()
            if ids_locked
            else []
        )
    else:
        lines = _sqlite_rows(
            session,
            "SELECT order_id, line_no, id, sku, qty - cancelled, allocated FROM order_line WHERE order_id IN ({keys})",
            ids_locked,
        )
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


def _write_then_read(session: Session, writes, chunks: list, index: int, nodes: list[str], lock: bool, at: datetime):
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
        self._future: Future[object] | None = None
        self._result: object = None

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

    def __init__(
        self,
        cfg: Config,
        at: datetime,
        actor: str,
        *,
        pg: bool,
        line_deltas: dict[int, int],
        alloc_updates: dict[int, int],
        alloc_inserts: list[tuple],
        events: list[dict],
        complete: list,
        report: list[dict],
    ) -> None:
        from ffctl.core import workflow

        self.cfg, self.at, self.actor, self.report = cfg, at, actor, report
        self.line_deltas, self.alloc_updates = line_deltas, alloc_updates
        alloc_inserts.sort(key=lambda r: r[1])  # by line: index pages and key checks in order
        self.moves = None
        if pg:
            self.allocs: CopyRows | list[tuple] = CopyRows(
                "allocation", ALLOC_COLUMNS, (r + (at,) for r in alloc_inserts)
            )
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

        _bulk_add(
            session,
            "order_line",
            "allocated",
            self.line_deltas,
            guard="t.allocated + t.cancelled + :q <= t.qty",
            what=_("order line"),
        )
        _bulk_add(session, "allocation", "qty", self.alloc_updates, what=_("allocation"))
        insert_rows(session, "allocation", ALLOC_COLUMNS, self.allocs)
        self.events.write(session)
        if self.moves is not None:
            self.moves.write(session)
        if self.complete:
            self._moved(workflow.complete_tasks(session, self.cfg, self.complete, at=self.at, actor=self.actor))


class _ChunkPlan:
    """What planning one chunk decides: the inputs of its writes (``_ChunkWrites``) and its report rows."""

    __slots__ = ("line_deltas", "alloc_updates", "alloc_inserts", "events", "complete", "report")

    def __init__(self) -> None:
        self.line_deltas: dict[int, int] = {}  # order line id -> units reserved now
        self.alloc_updates: dict[int, int] = {}  # existing allocation id -> units added
        self.alloc_inserts: list[tuple] = []  # new reservations: (order_id, line_id, sku, warehouse, qty)
        self.events: list[dict] = []
        self.complete: list[str] = []  # orders fully allocated: their node completes
        self.report: list[dict] = []


def _reserve_line(
    rows: list[list],
    need: int,
    used: dict[str, int],
    order_id: str,
    line_id: int,
    sku: str,
    plan: _ChunkPlan,
    stock_deltas: dict[int, int],
) -> list[tuple[str, int]]:
    """Reserve up to ``need`` units of one order line from its SKU's stock ``rows`` (updated in
    place): ``[(warehouse, qty)]`` reserved. A warehouse the line already holds (``used``:
    warehouse -> allocation id) grows that reservation; any other gets a new one."""
    reserved = []
    for row, take in _pick_warehouses(rows, need, used):
        row[3] += take
        stock_deltas[row[0]] += take
        reserved.append((row[1], take))
        held = used.get(row[1])
        if held is not None:
            plan.alloc_updates[held] = plan.alloc_updates.get(held, 0) + take
        else:
            plan.alloc_inserts.append((order_id, line_id, sku, row[1], take))
    return reserved


class _Run:
    """One allocation run: the stock it holds (locked) and reserves from, the backorder dates it
    promises, its counts; ``allocate_order`` plans one order at a time, in run order."""

    def __init__(
        self,
        session: Session,
        stock: dict[str, list[list]],
        skus: set[str],
        *,
        at: datetime,
        actor: str,
        tz: str,
        details: bool | str,
    ) -> None:
        self.stock = stock
        # written once at the end: the rows stay locked till commit
        self.stock_deltas: dict[int, int] = defaultdict(int)
        self.at, self.actor = at, actor
        self.details, self.with_lines = details, details is True
        self.complete = self.partial = self.backordered = self.units = self.units_back = 0
        self.today = local_date(at, tz)
        # Backorder dates: after this run a backordered SKU has nothing available, so its open receipts
        # serve the backorders in run order. One read of the receipts of every SKU in play.
        self.incoming = _open_receipts(session, sorted(skus), self.today, tz) if skus else {}
        self.profiles: dict[str, _Profile] = {}

    def backorder_date(self, sku: str, qty: int) -> date | None:
        p = self.profiles.get(sku)
        if p is None:
            p = self.profiles[sku] = _Profile(self.today, 0, [(d, q) for d, _w, q in self.incoming.get(sku, [])])
        d = p.earliest(qty)
        p.consume(qty, d)
        return d

    def allocate_order(self, r, order_lines: list, existing: dict[int, dict[str, int]], plan: _ChunkPlan) -> None:
        """Reserve what is available for each line of order ``r`` (a candidate row), date what is
        not, and add the order's writes, event and report row to ``plan``."""
        order_id = r.order_id
        order_lines.sort()  # by line_no
        line_reports, notes, back_notes, back_dates = [], [], [], []
        got_now = back_total = 0
        had_some = False
        for line_no, line_id, sku, qty, already in order_lines:
            need = qty - already
            had_some = had_some or already > 0
            reserved: list[tuple[str, int]] = []
            if need > 0:
                used = existing.get(line_id, {}) if already else {}
                reserved = _reserve_line(
                    self.stock.get(sku, []), need, used, order_id, line_id, sku, plan, self.stock_deltas
                )
                if reserved:
                    took = sum(q for _w, q in reserved)
                    plan.line_deltas[line_id] = took
                    got_now += took
                    need -= took
                    notes.append(f"L{line_no} {sku} " + " + ".join(f"{q} @ {w}" for w, q in reserved))
            atp_date = None
            if need > 0:
                back_total += need
                atp_date = self.backorder_date(sku, need)
                back_dates.append(atp_date)
                back_notes.append(
                    _("L{line} {sku} {n} backordered").format(line=line_no, sku=sku, n=need)
                    + (_(" (ATP {date})").format(date=atp_date.isoformat()) if atp_date else _(" (no known supply)"))
                )
            if self.with_lines:
                line_reports.append(
                    {
                        "line_no": line_no,
                        "sku": sku,
                        "qty": qty,
                        "allocated": qty - need,
                        "reserved": [{"warehouse": w, "qty": q} for w, q in reserved],
                        "backordered": need,
                        "atp_date": atp_date,
                    }
                )
        self.units += got_now
        self.units_back += back_total
        if back_total == 0:
            plan.complete.append(order_id)
            self.complete += 1
            result = "allocated"
        elif got_now or had_some:
            self.partial += 1
            result = "partial"
        else:
            self.backordered += 1
            result = "backordered"
        if got_now:
            plan.events.append(
                {
                    "event": "allocated",
                    "at": self.at,
                    "actor": self.actor,
                    "order_id": order_id,
                    "node": r.node,
                    "detail": "; ".join(notes + back_notes),
                }
            )
        if self.details:
            row_out = {
                "order_id": order_id,
                "node": r.node,
                "priority": r.priority,
                "promised_ship_date": r.promised_ship_date,
                "result": result,
                "allocated_now": got_now,
                "backordered": back_total,
                # the order is covered once its last backordered line is; unknown if any has no date
                "backorder_atp": max(d for d in back_dates if d) if back_dates and all(back_dates) else None,
                "next_node": None,
            }
            if self.with_lines:
                row_out["lines"] = line_reports
            plan.report.append(row_out)

    def summary(self, report: list[dict]) -> dict:
        return _summary(report, self.complete, self.partial, self.backordered, self.units, self.units_back)


def allocate(
    session: Session,
    cfg: Config,
    order_ids: list[str] | None = None,
    *,
    all_orders: bool = False,
    dry_run: bool = False,
    at: datetime,
    actor: str,
    tz: str,
    details: bool | str = True,
    on_orders: Callable[[list[dict]], None] | None = None,
) -> dict:
    """Reserve stock for orders waiting at an ``auto = "allocate"`` node, highest priority first.

    Orders go by priority (desc), promised_ship_date (asc, none last), created_at (asc). Each line
    takes what is available; a fully allocated order completes its node, a partial one stays and
    is topped up by a later run. Returns the plan (``dry_run``: nothing is written).
    ``{dry_run, orders: [...], skipped: [...], summary: {...}}``; ``details=False`` leaves out the
    per-order rows (benchmarks, cron), ``details="orders"`` their ``lines``; ``on_orders`` receives them chunk by chunk instead of
    the result holding them all (bounded memory for --all on a big store).
    """
    if not all_orders and not order_ids:
        raise UsageError(_("name the orders to allocate, or pass --all"))
    nodes = allocation_nodes(cfg)
    ids = list(dict.fromkeys(order_ids)) if order_ids else None
    if all_orders:
        ids = None
    if not nodes:
        if ids:
            raise Conflict(_('no node of the config has auto = "allocate": nothing can be allocated'))
        return {
            "dry_run": dry_run,
            "orders": [],
            "skipped": [],
            "after_clock": [],
            "summary": _summary([], 0, 0, 0, 0, 0),
        }
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
    run = _Run(session, stock, stock_skus, at=at, actor=actor, tz=tz, details=details)

    report: list[dict] = []
    skipped: list[str] = []
    after_clock: list[dict] = []

    def deliver(chunk_report: list[dict]) -> None:
        if on_orders is None:
            report.extend(chunk_report)
        elif chunk_report:
            on_orders(chunk_report)

    # PostgreSQL: while a chunk is planned, a second thread writes the chunk before it and reads and
    # locks the chunk after it, so the server works on one core while Python plans on the other
    pg = is_postgresql(session)
    chunks = list(_ramp(candidates, CHUNK))
    pipeline = _Pipeline(lock and pg)
    try:
        data = _read_chunk(session, chunks[0], nodes, lock, at) if chunks else None
        writes: _ChunkWrites | None = None
        for index, chunk_rows in enumerate(chunks):
            assert data is not None  # read for every chunk there is
            pipeline.start(partial(_write_then_read, session, writes, chunks, index + 1, nodes, lock, at))
            locked, lines_by_order, existing, later = data
            skipped.extend(r.order_id for r in chunk_rows if r.order_id not in locked and r.order_id not in later)
            after_clock.extend(
                {"order_id": r.order_id, "latest_at": later[r.order_id][0], "latest_event": later[r.order_id][1]}
                for r in chunk_rows
                if r.order_id in later
            )
            plan = _ChunkPlan()
            for r in chunk_rows:
                if r.order_id in locked:
                    run.allocate_order(r, lines_by_order[r.order_id], existing, plan)
            previous = writes
            writes = None
            if not dry_run:
                writes = _ChunkWrites(
                    cfg,
                    at,
                    actor,
                    pg=pg,
                    line_deltas=plan.line_deltas,
                    alloc_updates=plan.alloc_updates,
                    alloc_inserts=plan.alloc_inserts,
                    events=plan.events,
                    complete=[locked[o] for o in plan.complete],
                    report=plan.report,
                )
            data = pipeline.wait()
            if previous is not None:
                deliver(previous.report)
            if dry_run and plan.report:
                deliver(plan.report)
        if writes is not None:
            writes.write(session)
            deliver(writes.report)
    finally:
        pipeline.close()
    if not dry_run:
        _bulk_add(
            session,
            "stock",
            "allocated",
            dict(run.stock_deltas),
            guard="t.on_hand - t.allocated >= :q",
            what=_("stock"),
        )
    return {
        "dry_run": dry_run,
        "orders": report,
        "skipped": skipped,
        "after_clock": after_clock,
        "summary": run.summary(report),
    }


def _summary(report, complete, partial, back, units, units_back) -> dict:
    return {
        "orders": complete + partial + back,
        "completed": complete,
        "partial": partial,
        "backordered": back,
        "units_allocated": units,
        "units_backordered": units_back,
    }
