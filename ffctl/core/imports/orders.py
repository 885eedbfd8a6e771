"""Importing orders: new orders inserted with their lines and their workflow entry (the one entry
planner, ``workflow.entry``), unchanged ones left alone, changed ones skipped or (--update) replaced."""

from __future__ import annotations

import hashlib
import operator
from collections import Counter
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from ffctl.core import audit, csvio
from ffctl.core.bulk import CopyRows, among, insert_rows
from ffctl.core.imports.pipeline import (
    ANALYZE_MIN_ROWS,
    MEMO_CELLS,
    NEW,
    REJECTED,
    SKIPPED,
    UNCHANGED,
    UPDATED,
    Context,
    Handler,
    Outcome,
    Record,
    positions,
)
from ffctl.core.models import Allocation, Order, OrderLine
from ffctl.core.store import is_postgresql
from ffctl.core.workflow.entry import EntryPlanner
from ffctl.core.workflow.routing import routing_facts
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.sla import SweepReport

# --- orders ------------------------------------------------------------------------------------

ORDER_COLUMNS = ("order_id", "line_no", "customer", "sku", "qty")
ORDER_OPTIONAL = ("channel", "region", "unit_price", "created_at", "promised_ship_date", "priority", "sales_rep")
ORDER_SHARED = ("customer", "channel", "region", "created_at", "promised_ship_date", "priority", "sales_rep")
AT = positions(ORDER_COLUMNS + ORDER_OPTIONAL)  # a row's value of column c: values[AT.c]
ORDER_INSERT = (
    "order_id",
    "customer",
    "channel",
    "region",
    "sales_rep",
    "priority",
    "created_at",
    "promised_ship_date",
    "promise_source",
    "status",
    "has_custom_items",
    "content_hash",
)
# the rows of new orders and their lines; what every one of them has is given once (bulk.insert_rows)
NEW_ORDER = (
    "order_id",
    "customer",
    "channel",
    "region",
    "sales_rep",
    "priority",
    "created_at",
    "promised_ship_date",
    "promise_source",
    "has_custom_items",
    "content_hash",
    "workflow",
    "node",
)
NEW_AT = positions(NEW_ORDER)  # promise_source follows promised_ship_date
NEW_ORDER_FIXED = {"status": "open"}
LINE_INSERT = ("order_id", "line_no", "sku", "qty", "unit_price")
LINE_FIXED = {"allocated": 0}
OPEN_STATUSES = ("open", "on_hold")


def order_parsers(ctx: Context) -> dict:
    return {
        "order_id": csvio.text_value,
        "line_no": csvio.positive_int,
        "customer": csvio.known(ctx.customers, _("customer"), _("not in customers; import customers first")),
        "sku": csvio.known(ctx.skus, _("SKU"), _("not in products; import products first")),
        "qty": csvio.positive_int,
        "channel": csvio.first_seen(ctx.spellings["channel"]),
        "region": csvio.first_seen(ctx.spellings["region"]),
        "unit_price": csvio.non_negative_number,
        "created_at": csvio.time_parser(
            ctx.tz,
            latest=ctx.now + CREATED_AHEAD,
            latest_reason=_(
                "is more than a day after the command clock ({now}): an order cannot come from the future; "
                "check the date, or give the clock with --now"
            ).format(now=_shown_time(ctx.now, ctx.tz)),
        ),
        "promised_ship_date": csvio.date_value,
        "priority": csvio.priority,
        "sales_rep": csvio.text_value,
    }


CREATED_AHEAD = timedelta(days=1)  # how far past the command clock a created_at may be (clocks disagree)


def _shown_time(moment: datetime, tz: str) -> str:
    return moment.astimezone(csvio.zone(tz)).isoformat(" ", "minutes")


def order_check(ctx: Context):
    """A promise before the order was created (both as given) is a typing slip, not a late order:
    created_at (stored UTC text) at or after the local midnight that ends the promised day."""
    from ffctl.core.clock import start_of_day

    ends: dict[str, str] = {}  # promised date -> the stored time its day ends (few distinct dates)

    def check(values: tuple):
        promised, created = values[AT.promised_ship_date], values[AT.created_at]
        if promised is None or created is None:
            return None
        end = ends.get(promised)
        if end is None:
            if len(ends) >= MEMO_CELLS:
                ends.clear()
            try:
                end = csvio.stored_time(start_of_day(date.fromisoformat(promised) + timedelta(days=1), ctx.tz))
            except OverflowError:
                end = "~"  # the last day there is: after every stored time
            ends[promised] = end
        if created >= end:
            day = csvio.from_stored(created).astimezone(csvio.zone(ctx.tz)).date().isoformat()
            return [("promised_ship_date", _("is before the order's created_at ({day})").format(day=day))]
        return None

    return check


def order_hash(record: Record) -> str:
    """What an imported order says, as given (a missing created_at or promise is not filled in)."""
    shared = _HASHED_SHARED(record.rows[0][2])
    lines = tuple([_HASHED_LINE(r[2]) for r in record.rows])
    return hashlib.blake2b(repr((shared, lines)).encode(), digest_size=16).hexdigest()


_HASHED_SHARED = operator.itemgetter(
    AT.customer, AT.channel, AT.region, AT.created_at, AT.promised_ship_date, AT.priority, AT.sales_rep
)
_HASHED_LINE = operator.itemgetter(AT.line_no, AT.sku, AT.qty, AT.unit_price)


def stored_orders(session: Session, keys: list[str], *, lock: bool = False) -> dict[str, tuple[str, str | None]]:
    """order_id -> (status, content_hash) of the ``keys`` already stored.

    One statement through the driver: an array parameter on PostgreSQL (rows locked with
    ``lock``); on SQLite, where the key order is the index's (BINARY), first one probe of the
    batch's key range, so that new orders (a fresh store, a file of new ids) cost nothing more.
    """
    if not keys:
        return {}
    conn = session.connection()
    if is_postgresql(session):
        sql = "SELECT order_id, status, content_hash FROM orders WHERE order_id IN (SELECT unnest(%s::text[]))"
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(sql + (" FOR UPDATE" if lock else ""), (keys,))
            return {r[0]: (r[1], r[2]) for r in cur}
    raw = conn.connection.driver_connection
    if (
        raw.execute("SELECT 1 FROM orders WHERE order_id BETWEEN ? AND ? LIMIT 1", (min(keys), max(keys))).fetchone()
        is None
    ):
        return {}
    found: dict[str, tuple[str, str | None]] = {}
    for start in range(0, len(keys), 900):
        part = keys[start : start + 900]
        sql = f"SELECT order_id, status, content_hash FROM orders WHERE order_id IN ({','.join('?' * len(part))})"
        found.update((r[0], (r[1], r[2])) for r in raw.execute(sql, part))
    return found


class Orders(Handler):
    """New orders are inserted with their lines and enter their workflow; an unchanged order is
    left alone; a changed one is skipped, or with --update replaced while it is open and has no
    stock allocated (allocated or shipped orders are refused: release or cancel first)."""

    def __init__(self) -> None:
        self.ledger: dict = {}  # stock.promise_dates' ATP of the SKUs this run has promised from
        self.planner: EntryPlanner | None = None
        self.grown: Counter[str] = Counter()  # rows written per table (refresh_statistics)
        self.analyzed_at = 0  # order lines written when this run last analyzed (_analyze_before_demand)
        self.backfilled: SweepReport | None = None  # --backfill: what sla.backfill applied, summed over the batches

    def prepare(self, session, ctx, kind, records) -> tuple:
        """The writer's work that needs no lock, done ahead of it (``_run_pipelined``): every
        record's digest, and the rows of the records not stored yet (the writer checks again)."""
        stored = stored_orders(session, [r.key for r in records])
        digests = [order_hash(r) for r in records]
        new = [(r, d) for r, d in zip(records, digests) if r.key not in stored]
        planned = None
        if new:
            order_rows, line_rows, entries = self._plan(ctx, new, self._planner(ctx))
            # on PostgreSQL the COPY text too, so that the writer only sends (the orders wait for their promises)
            postgresql = is_postgresql(ctx)
            planned = (
                order_rows,
                CopyRows("order_line", LINE_INSERT, line_rows, LINE_FIXED) if postgresql else line_rows,
                entries.format(postgresql=postgresql),
            )
        return digests, [r.key for r, _ in new], planned

    def apply(self, session, ctx, kind, records, write, prepared: tuple | None = None):
        existing = stored_orders(session, [r.key for r in records], lock=write)
        digests = prepared[0] if prepared is not None else [order_hash(r) for r in records]
        outcomes: list[Outcome] = []
        new: list[tuple[Record, str]] = []
        changed: list[tuple[Record, str]] = []
        for record, digest in zip(records, digests):
            current = existing.get(record.key)
            if current is None:
                new.append((record, digest))
                outcomes.append((NEW, None))
            elif current[1] == digest:
                outcomes.append((UNCHANGED, None))
            elif not ctx.update:
                outcomes.append((SKIPPED, _("changed since it was imported; pass --update to replace it")))
            elif current[0] not in OPEN_STATUSES:
                outcomes.append(
                    (
                        REJECTED,
                        _("order {key} is {value}: it can no longer change").format(key=record.key, value=current[0]),
                    )
                )
            else:
                changed.append((record, digest))
                outcomes.append((UPDATED, None))
        if changed:
            allocated = set(
                session.scalars(
                    sa.select(col(Allocation.order_id))
                    .where(among(session, Allocation.__table__.c.order_id, [r.key for r, _ in changed]))
                    .distinct()
                )
            )
            if allocated:
                position = {r.key: i for i, r in enumerate(records)}
                for record, _outcome in changed:
                    if record.key in allocated:
                        outcomes[position[record.key]] = (
                            REJECTED,
                            _(
                                "order {key} has stock allocated: it can no longer change (cancel it and import it under a new "
                                "order_id)"
                            ).format(key=record.key),
                        )
                changed = [(r, d) for r, d in changed if r.key not in allocated]
        if changed:  # an order's timeline never runs backwards: no update at a clock before its latest event
            from ffctl.core import audit

            later = audit.later_events(session, [r.key for r, _d in changed], ctx.now)
            if later:
                position = {r.key: i for i, r in enumerate(records)}
                for record, _d in changed:
                    if record.key in later:
                        outcomes[position[record.key]] = (
                            REJECTED,
                            audit.earlier_message(record.key, ctx.now, later[record.key], ctx.tz),
                        )
                changed = [(r, d) for r, d in changed if r.key not in later]
        if not write:
            return outcomes
        if new:
            if prepared is None:
                self._insert(session, ctx, new)
            elif prepared[1] == [r.key for r, _ in new]:
                self._insert(session, ctx, new, prepared[2])
            else:  # the store changed since: plan here (with a planner of this thread's own)
                self._insert(session, ctx, new, planner=EntryPlanner(ctx.cfg, ctx.actor))
            if ctx.backfill:
                self._backfill(session, ctx, [r.key for r, _ in new])
        if changed:
            self._replace(session, ctx, changed)
        return outcomes

    def notes(self, ctx: Context) -> list[str]:
        return [_backfill_note(ctx, self.backfilled)] if ctx.backfill else []

    def _backfill(self, session, ctx: Context, order_ids: list[str]) -> None:
        """The SLA history of the batch's new orders up to the import's clock, in its transaction:
        the sweep's own steps (sla.backfill), recorded as applied on import, telling nobody."""
        from ffctl.core import sla

        if self.backfilled is None:
            self.backfilled = sla.SweepReport(now=ctx.now)
        sla.backfill(session, ctx.cfg, order_ids, now=ctx.now, report=self.backfilled)

    @staticmethod
    def _facts(ctx: Context, record: Record, created) -> dict:
        """The order's routing facts (``workflow.routing_facts``), as the file gives them."""
        v = record.first
        tier, region, rep = ctx.customers[v[AT.customer]]
        skus = ctx.skus
        return routing_facts(
            record.key,
            created,
            channel=v[AT.channel],
            region=v[AT.region],
            customer=v[AT.customer],
            sales_rep=v[AT.sales_rep],
            priority=v[AT.priority],
            tier=tier,
            customer_region=region,
            customer_rep=rep,
            lines=[(r[AT.sku], *skus[r[AT.sku]]) for _, _, r in record.rows],
        )

    def _promises(
        self, session, ctx: Context, records: list[Record], *, ledger: dict | None = None, stored: bool = True
    ) -> dict:
        """ATP promises for the records without a promised_ship_date. With the run's ``ledger``
        every record goes in (one with a date counts as demand), so that each SKU is read from
        the store once per import and a batch costs what it holds, not what the store holds.
        ``stored=False``: the records are new orders, not in the store yet."""
        if not ledger and all(r.first[AT.promised_ship_date] is not None for r in records):
            return {}
        from ffctl.core.stock import promise_dates

        entries = [
            (r.key, [(row[AT.sku], row[AT.qty]) for _, _, row in r.rows], r.first[AT.promised_ship_date])
            for r in records
        ]
        return promise_dates(session, entries, now=ctx.now, tz=ctx.tz, ledger=ledger, stored=stored)

    def _header_row(self, ctx: Context, record: Record, digest: str, facts: dict, promise) -> tuple:
        v = record.first
        if v[AT.promised_ship_date] is not None:
            promised, source = v[AT.promised_ship_date], "import"
        elif promise is not None:
            promised, source = promise[0].isoformat(), promise[1]
        else:
            promised, source = None, None
        return (
            record.key,
            v[AT.customer],
            v[AT.channel],
            facts["region"],
            facts["sales_rep"],
            facts["priority"],
            v[AT.created_at] or ctx.now_text,
            promised,
            source,
            "open",
            facts["has_custom_items"],
            digest,
        )

    @staticmethod
    def _line_rows(record: Record) -> list[tuple]:
        return [(record.key, r[AT.line_no], r[AT.sku], r[AT.qty], r[AT.unit_price]) for _, _, r in record.rows]

    def _analyze_before_demand(self, session, records: list[Record]) -> None:
        """ANALYZE orders and order_line before the ATP ledger reads open demand of SKUs it has not
        seen, once the import has doubled what it had written at the last ANALYZE: planned without
        statistics on the lines this import just wrote, the demand query slows down batch by batch
        (docs/performance.md, import)."""
        written = self.grown["order_line"]
        if written < ANALYZE_MIN_ROWS or written < 2 * self.analyzed_at:
            return
        ledger = self.ledger
        if all(
            r.first[AT.promised_ship_date] is not None or all(row[AT.sku] in ledger for _, _, row in r.rows)
            for r in records
        ):
            return
        session.execute(sa.text("ANALYZE orders, order_line"))
        self.analyzed_at = written

    def _planner(self, ctx: Context) -> EntryPlanner:
        if self.planner is None or self.planner.cfg is not ctx.cfg:
            self.planner = EntryPlanner(ctx.cfg, ctx.actor)
        return self.planner

    @classmethod
    def _plan(cls, ctx: Context, new: list[tuple[Record, str]], planner: EntryPlanner) -> tuple:
        """The rows of new orders: (orders, lines, their workflow entry). Pure Python, no store: an
        order without a promised_ship_date has None there until ``_insert`` asks available-to-promise."""
        now_text = ctx.now_text
        order_rows, line_rows = [], []
        entries = planner.begin()
        for record, digest in new:
            v = record.first
            key = record.key
            line_rows.extend(cls._line_rows(record))
            created = v[AT.created_at] or now_text
            facts = cls._facts(ctx, record, created)
            wf, node = entries.enter(key, facts, created)
            given = v[AT.promised_ship_date]
            order_rows.append(
                (
                    key,
                    v[AT.customer],
                    v[AT.channel],
                    facts["region"],
                    facts["sales_rep"],
                    facts["priority"],
                    created,
                    given,
                    None if given is None else "import",
                    facts["has_custom_items"],
                    digest,
                    wf,
                    node,
                )
            )
        return order_rows, line_rows, entries

    def _insert(
        self,
        session,
        ctx: Context,
        new: list[tuple[Record, str]],
        planned: tuple | None = None,
        planner: EntryPlanner | None = None,
    ) -> None:
        """The new orders, their lines, and their workflow entry (tasks and events), in bulk."""
        if planned is None:
            planned = self._plan(ctx, new, planner or self._planner(ctx))
        order_rows, line_rows, entries = planned
        if is_postgresql(ctx):
            self._analyze_before_demand(session, [r for r, _ in new])
        promises = self._promises(session, ctx, [r for r, _ in new], ledger=self.ledger, stored=False)
        if promises:
            key, promised, source = NEW_AT.order_id, NEW_AT.promised_ship_date, NEW_AT.promise_source + 1
            for i, row in enumerate(order_rows):
                promise = promises.get(row[key])
                if promise is not None and row[promised] is None:
                    order_rows[i] = row[:promised] + (promise[0].isoformat(), promise[1]) + row[source:]
        insert_rows(session, "orders", NEW_ORDER, order_rows, NEW_ORDER_FIXED)
        insert_rows(session, "order_line", LINE_INSERT, line_rows, LINE_FIXED)
        entries.write(session, move_orders=False)  # the order rows carry their (workflow, node)
        grown = self.grown
        grown["orders"] += len(order_rows)
        grown["order_line"] += len(line_rows)
        grown["task"] += entries.task_count()
        grown["event"] += len(entries.events)

    def _replace(self, session, ctx: Context, changed: list[tuple[Record, str]]) -> None:
        promises = self._promises(session, ctx, [r for r, _ in changed])
        orders, lines = Order.__table__, OrderLine.__table__
        ids = [r.key for r, _ in changed]
        before = dict(
            session.execute(
                sa.select(lines.c.order_id, sa.func.count()).where(lines.c.order_id.in_(ids)).group_by(lines.c.order_id)
            ).all()
        )
        session.execute(sa.delete(lines).where(lines.c.order_id.in_(ids)))
        line_rows, events = [], []
        for record, digest in changed:
            facts = self._facts(ctx, record, ctx.now)
            row = dict(zip(ORDER_INSERT, self._header_row(ctx, record, digest, facts, promises.get(record.key))))
            values = {
                k: row[k]
                for k in (
                    "customer",
                    "channel",
                    "region",
                    "sales_rep",
                    "priority",
                    "promised_ship_date",
                    "promise_source",
                    "has_custom_items",
                    "content_hash",
                )
            }
            if record.first[AT.created_at]:
                values["created_at"] = csvio.from_stored(record.first[AT.created_at])
            if values["promised_ship_date"]:
                values["promised_ship_date"] = datetime.fromisoformat(values["promised_ship_date"]).date()
            session.execute(sa.update(orders).where(orders.c.order_id == record.key).values(**values))
            line_rows.extend(self._line_rows(record))
            events.append(
                {
                    "event": "updated",
                    "at": ctx.now,
                    "actor": ctx.actor,
                    "order_id": record.key,
                    "detail": _("replaced by import: {n} line(s), was {was}").format(
                        n=len(record.rows), was=before.get(record.key, 0)
                    ),
                }
            )
        insert_rows(session, "order_line", LINE_INSERT, line_rows, LINE_FIXED)
        audit.record_many(session, events)
        self.grown["order_line"] += len(line_rows)
        self.ledger.clear()  # it counted the replaced lines: read their SKUs afresh next time


def _backfill_note(ctx: Context, done) -> str:
    """What ``import orders --backfill`` recorded, in one line."""
    from ffctl.core.clock import shown

    when = shown(ctx.now, ctx.tz)
    if done is None or not (done.at_risk or done.breached or any(done.actions.values())):
        return _("--backfill: nothing had fallen due by {now}").format(now=when)
    steps = ", ".join(
        f"{n:,} {what}"
        for what, n in (
            (_("at risk"), done.at_risk),
            (_("breached"), done.breached),
            (_("reminders"), done.actions["remind"]),
            (_("escalations"), done.actions["escalate"]),
            (_("notify steps"), done.actions["notify"]),
            (_("auto-approved"), done.actions["auto_approve"]),
            (_("auto-rejected"), done.actions["auto_reject"]),
        )
        if n
    )
    return _(
        "--backfill: the SLA history up to {now} is recorded as applied on import ({steps}); nobody was notified"
    ).format(now=when, steps=steps)
