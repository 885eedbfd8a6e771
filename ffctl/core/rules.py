"""The rule engine (SPEC §3 ``[rules]``): low stock drafts purchase requisitions, dwelling orders
get flagged, weak suppliers lose their inspection exemption.

Each rule kind is one set-based query over the whole store that finds its hits, and a write that
makes each hit exactly once. The database is the guard, not a read-then-write in Python:

- ``stock_below``: ``INSERT ... SELECT ... WHERE NOT EXISTS`` into ``requisition`` with ON CONFLICT
  DO NOTHING on the partial unique index "one draft per SKU";
- ``dwell``: insert-or-ignore into ``order_flag`` on the partial unique index "one standing flag
  per (order, flag)" (clearing the flag ends the episode; a later dwell may flag again);
- ``supplier``: ``UPDATE supplier ... WHERE inspection_exempt`` (a second run finds it frozen).

Only rows a run actually wrote (``RETURNING`` / the UPDATE's row count) are audited and notified,
so repeated runs and concurrent runs, on SQLite and on PostgreSQL, hit each thing once. Rows are
written in key order so concurrent runs take their locks in the same order.

``run_rules`` runs inside the caller's transaction. ``dry_run=True`` only runs the queries that
find the hits and writes nothing at all (not even ``rule_run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl import i18n
from ffctl.core import audit, outbox
from ffctl.core.durations import format_duration
from ffctl.core.models import (
    Order,
    OrderFlag,
    OrderLine,
    Product,
    Receipt,
    Requisition,
    RuleRun,
    Stock,
    Supplier,
    Task,
    UTCDateTime,
)
from ffctl.core.stock.common import UNSERVED
from ffctl.core.store import dialect_insert, is_postgresql
from ffctl.core.suppliers import DEFAULT_WINDOW, ranked_batches
from ffctl.core.text import command
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

ORDERS = Order.__table__
LINES = OrderLine.__table__
PRODUCTS = Product.__table__
STOCK = Stock.__table__
RECEIPTS = Receipt.__table__
REQS = Requisition.__table__
FLAGS = OrderFlag.__table__
TASKS = Task.__table__
SUPPLIERS = Supplier.__table__
RUNS = RuleRun.__table__

#: Orders whose unallocated lines still need stock (held orders resume and will need it too).
DEMAND_STATUSES = ("open", "on_hold")


def _insert(session: Session, table):
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING on both backends."""
    return dialect_insert(session)(table)


def _text(*parts) -> sa.ColumnElement:
    """SQL string concatenation of literals and (integer) expressions, on both backends."""
    pieces = [sa.literal(p, sa.String) if isinstance(p, str) else sa.cast(p, sa.String) for p in parts]
    return reduce(lambda a, b: a + b, pieces)


#: the rules' statements, built once per process with their times as parameters: the sweep runs
#: every rule each time, and building a statement (and its cache key) cost more than running it
_BUILT: dict[tuple, Any] = {}
_NOW = sa.bindparam("now", type_=UTCDateTime())


def _built(session: Session, rule, part: str, build: Callable[[], Any]) -> Any:
    """The statement ``build`` makes for ``rule``, once per process, backend and language (its
    words are in the statement)."""
    key = (
        part,
        rule.kind,
        rule.name,
        repr(sorted(rule.params.items())),
        rule.notify,
        session.get_bind().dialect.name,
        i18n.current(),
    )
    stmt = _BUILT.get(key)
    if stmt is None:
        stmt = _BUILT[key] = build()
    return stmt


@dataclass
class _Run:
    session: Session
    cfg: Config
    now: datetime
    actor: str
    dry_run: bool
    notifications: int = 0
    outbox_rows: list = field(default_factory=list)
    parts: outbox.Parts | None = None  # a sweep's run: hits join the sweep's digests

    def notify(self, rule, *, subject: str, body: str, dedupe_key: str, order: dict | None = None) -> None:
        """Collect one hit's notification rows; ``order`` carries the order_id and the fields that
        ``order.<field>`` recipients name, read by the rule's own query (no query per hit)."""
        if not rule.notify:
            return
        recipients = [_order_field(name, order) if name.startswith("order.") else name for name in rule.notify]
        if self.parts is not None:
            order_id = order["order_id"] if order is not None else None
            item = outbox.digest_item(
                key=order_id or dedupe_key,
                head=None,
                short=subject,
                body=body,
                rank="alert",
                priority=rule.priority,
                order_id=order_id,
            )
            self.parts.add([r for r in recipients if r], item, key=dedupe_key)
            return
        rows = outbox.notification_rows(
            self.session,
            self.cfg,
            [r for r in recipients if r],
            subject=subject,
            body=body,
            at=self.now,
            priority=rule.priority,
            dedupe_key=dedupe_key,
        )
        for row in rows:
            row["order_id"] = order["order_id"] if order is not None else None
        self.outbox_rows += rows

    def flush(self) -> None:
        """Write the collected rows in a few statements (a dry run only counts them)."""
        if self.parts is not None:  # written even in a dry run: the sweep's own transaction is rolled back
            self.parts.write(self.now)
            return
        rows, self.outbox_rows = self.outbox_rows, []
        self.notifications += len(rows) if self.dry_run else outbox.insert_rows(self.session, rows)


def _order_field(name: str, order: dict | None) -> str | None:
    """The person an ``order.<field>`` recipient names for this order (None: nobody)."""
    if order is None:
        return None
    return order.get(name.split(".", 1)[1])


def _item(rule, subject: str, what: str, detail: str) -> dict:
    return {"rule": rule.name, "kind": rule.kind, "subject": subject, "what": what, "detail": detail}


# --- stock_below -------------------------------------------------------------------------------


def _low_stock_query(rule) -> sa.Select:
    """SKUs whose stock position is under safety stock and that have no draft requisition,
    with the requisition each one needs: (sku, qty, supplier, reason), ordered by sku (drafted
    at the parameter ``now``)."""
    include_inbound = bool(rule.params.get("include_inbound"))
    avail = (
        sa.select(STOCK.c.sku, sa.func.sum(STOCK.c.on_hand - STOCK.c.allocated).label("available"))
        .group_by(STOCK.c.sku)
        .subquery("avail")
    )
    available: sa.ColumnElement = sa.func.coalesce(avail.c.available, 0)
    source = PRODUCTS.outerjoin(avail, avail.c.sku == PRODUCTS.c.sku)
    columns = [
        PRODUCTS.c.sku,
        PRODUCTS.c.supplier,
        PRODUCTS.c.safety_stock,
        PRODUCTS.c.reorder_qty,
        available.label("available"),
    ]
    position = available
    if include_inbound:
        inbound = (
            sa.select(RECEIPTS.c.sku, sa.func.sum(RECEIPTS.c.qty).label("inbound"))
            .where(RECEIPTS.c.status == "open")
            .group_by(RECEIPTS.c.sku)
            .subquery("inbound")
        )
        source = source.outerjoin(inbound, inbound.c.sku == PRODUCTS.c.sku)
        columns.append(sa.func.coalesce(inbound.c.inbound, 0).label("inbound"))
        position = available + sa.func.coalesce(inbound.c.inbound, 0)
    # correlated, so it is computed only for the SKUs that are already low (through ix_order_line_sku)
    demand = (
        sa.select(sa.func.coalesce(sa.func.sum(UNSERVED), 0))
        .select_from(LINES.join(ORDERS, ORDERS.c.order_id == LINES.c.order_id))
        .where(LINES.c.sku == PRODUCTS.c.sku, UNSERVED > 0, ORDERS.c.status.in_(DEMAND_STATUSES))
        .scalar_subquery()
    )
    # open = a draft, or an approved requisition whose goods have not been received since
    # on the requisition's SKU: this EXISTS nests in the one on requisition, so product would not
    # correlate here but join in afresh (any SKU's goods would then close every approved requisition)
    received_since = sa.exists().where(
        RECEIPTS.c.sku == REQS.c.sku, RECEIPTS.c.status == "received", RECEIPTS.c.received_at >= REQS.c.decided_at
    )
    has_draft = sa.exists().where(
        REQS.c.sku == PRODUCTS.c.sku,
        sa.or_(REQS.c.status == "draft", sa.and_(REQS.c.status == "approved", ~received_since)),
    )
    low = (
        sa.select(*columns, demand.label("demand"))
        .select_from(source)
        .where(PRODUCTS.c.safety_stock > 0, position < PRODUCTS.c.safety_stock, ~has_draft)
        # materialized, so the correlated demand subquery runs once per low SKU however often the
        # outer query uses it (inlined, PostgreSQL repeats it per reference and JIT-compiles the lot)
        .cte("low")
        .prefix_with("MATERIALIZED")
    )
    pos = low.c.available + low.c.inbound if include_inbound else low.c.available
    by_reorder = sa.func.coalesce(low.c.reorder_qty, 0) > 0
    qty = sa.case((by_reorder, low.c.reorder_qty), else_=low.c.safety_stock + low.c.demand - pos)
    stock_words = (
        (_("available "), low.c.available, _(" + inbound "), low.c.inbound, " = ", pos)
        if include_inbound
        else (_("available "), low.c.available)
    )
    # the reason is stored with the requisition, in the words of the language the rule ran in
    gap = _(" - available - inbound") if include_inbound else _(" - available")
    reason = sa.case(
        (
            by_reorder,
            _text(
                *stock_words,
                _(" < safety stock "),
                low.c.safety_stock,
                _("; open demand "),
                low.c.demand,
                _("; qty "),
                low.c.reorder_qty,
                _(" = the product's reorder qty"),
            ),
        ),
        else_=_text(
            *stock_words,
            _(" < safety stock "),
            low.c.safety_stock,
            _("; open demand "),
            low.c.demand,
            _("; qty "),
            qty,
            _(" = safety stock + open demand"),
            gap,
        ),
    )
    return (
        sa.select(
            low.c.sku,
            qty.label("qty"),
            low.c.supplier,
            sa.literal("draft").label("status"),
            reason.label("reason"),
            sa.literal(rule.name).label("rule"),
            _NOW.label("created_at"),
        )
        .where(qty > 0)  # also: SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT
        .order_by(low.c.sku)
    )


def _stock_below(run: _Run, rule) -> list[dict]:
    now = {"now": run.now}
    if run.dry_run:
        rows = run.session.execute(_built(run.session, rule, "find", lambda: _low_stock_query(rule)), now)
        drafted = [dict(r, id=None) for r in rows.mappings()]
    else:

        def draft() -> Any:
            return (
                _insert(run.session, REQS)
                .from_select(
                    ["sku", "qty", "supplier", "status", "reason", "rule", "created_at"], _low_stock_query(rule)
                )
                .on_conflict_do_nothing()  # the partial unique index "one draft per SKU" is the real guard
                .returning(REQS.c.id, REQS.c.sku, REQS.c.qty, REQS.c.supplier, REQS.c.reason)
            )

        rows = run.session.execute(_built(run.session, rule, "draft", draft), now)
        drafted = sorted((dict(r) for r in rows.mappings()), key=lambda r: r["sku"])
    items, events = [], []
    for r in drafted:
        ref = _("requisition #{id}").format(id=r["id"]) if r["id"] is not None else _("a requisition")
        supplier = (
            _(" from {supplier}").format(supplier=r["supplier"])
            if r["supplier"]
            else _(" (no supplier on the product)")
        )
        what = (_("would draft {ref}: {qty}{supplier}") if run.dry_run else _("drafted {ref}: {qty}{supplier}")).format(
            ref=ref, qty=r["qty"], supplier=supplier
        )
        items.append(_item(rule, f"sku:{r['sku']}", what, r["reason"]))
        events.append(
            {
                "event": "requisition_drafted",
                "at": run.now,
                "actor": run.actor,
                "subject": f"sku:{r['sku']}",
                "detail": _("{ref} for {qty}{supplier} (rule {rule}): {reason}").format(
                    ref=ref, qty=r["qty"], supplier=supplier, rule=rule.name, reason=r["reason"]
                ),
            }
        )
        run.notify(
            rule,
            subject=_("Purchase requisition drafted for {sku}: {qty}").format(sku=r["sku"], qty=r["qty"]),
            body=_(
                "{ref} for {qty} x {sku}{supplier}, drafted by rule {rule}: {reason}. Approve with `{command}`."
            ).format(
                ref=ref,
                qty=r["qty"],
                sku=r["sku"],
                supplier=supplier,
                rule=rule.name,
                reason=r["reason"],
                command=command("requisition", "approve", r["id"]),
            ),
            dedupe_key=f"rule:{rule.name}:requisition:{r['id']}",
        )
    if not run.dry_run:
        audit.record_many(run.session, events)
    return items


# --- dwell -------------------------------------------------------------------------------------


def _dwell(run: _Run, rule) -> list[dict]:
    p = rule.params
    node, flag, limit = str(p["node"]), str(p["flag"]), int(p["longer_than_seconds"])
    calendar = p.get("clock") == "calendar"
    clock = run.cfg.calendar(node) if calendar and node in run.cfg.nodes else None
    # order fields that recipients name (order.sales_rep), read here rather than once per hit
    fields = [n.split(".", 1)[1] for n in rule.notify if n.startswith("order.") and n.split(".", 1)[1] in ORDERS.c]

    def find() -> sa.Select:
        standing = sa.exists().where(
            FLAGS.c.order_id == TASKS.c.order_id, FLAGS.c.flag == flag, FLAGS.c.cleared_at.is_(None)
        )
        return (
            sa.select(
                TASKS.c.order_id,
                TASKS.c.id.label("task_id"),
                TASKS.c.entered_at,
                *[ORDERS.c[f].label(f"order_{f}") for f in fields],
            )
            .select_from(TASKS.join(ORDERS, ORDERS.c.order_id == TASKS.c.order_id))
            .where(
                TASKS.c.node == node,
                TASKS.c.status == "open",
                TASKS.c.held_at.is_(None),
                ORDERS.c.status == "open",
                TASKS.c.entered_at < sa.bindparam("cutoff", type_=UTCDateTime()),
                ~standing,
                ~audit.later_event(TASKS.c.order_id, _NOW),
            )  # an order's timeline never runs backwards
            .order_by(TASKS.c.order_id)
        )

    # business time never exceeds wall time, so the wall-clock cutoff is a safe first filter
    times = {"cutoff": run.now - timedelta(seconds=limit), "now": run.now}
    found, orders = [], {}
    for r in run.session.execute(_built(run.session, rule, "find", find), times).mappings():
        dwelt = (
            clock.between(r["entered_at"], run.now)
            if clock is not None
            else (run.now - r["entered_at"]).total_seconds()
        )
        if dwelt > limit:
            found.append((r["order_id"], r["task_id"], dwelt))
            orders[r["order_id"]] = {"order_id": r["order_id"], **{f: r[f"order_{f}"] for f in fields}}
    clock_words = (
        _(" of {calendar} hours").format(calendar=run.cfg.nodes[node].calendar)
        if clock is not None and run.cfg.nodes[node].calendar
        else ""
    )
    raised: dict[str, int | None] = {}
    if run.dry_run:
        raised = {oid: None for oid, _, _ in found}
    else:
        rows = [
            {"order_id": oid, "flag": flag, "priority": rule.priority, "rule": rule.name, "raised_at": run.now}
            for oid, _, _ in found
        ]
        if rows:  # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs
            stmt = _insert(run.session, FLAGS).on_conflict_do_nothing().returning(FLAGS.c.id, FLAGS.c.order_id)
            raised = {r.order_id: r.id for r in run.session.execute(stmt, rows)}
    items, events = [], []
    for oid, task_id, dwelt in found:
        if oid not in raised:
            continue  # a concurrent run raised it first
        detail = _("{flag}: in {node} for {dwelt}{clock} > {limit}").format(
            flag=flag, node=node, dwelt=format_duration(dwelt), clock=clock_words, limit=format_duration(limit)
        )
        items.append(
            _item(
                rule,
                f"order:{oid}",
                (_("would flag {flag}") if run.dry_run else _("flagged {flag}")).format(flag=flag),
                detail,
            )
        )
        events.append(
            {
                "event": "flagged",
                "at": run.now,
                "actor": run.actor,
                "order_id": oid,
                "task_id": task_id,
                "node": node,
                "detail": _("{detail} (rule {rule})").format(detail=detail, rule=rule.name),
            }
        )
        run.notify(
            rule,
            subject=_("Order {order} flagged {flag}").format(order=oid, flag=flag),
            body=_(
                "Order {order} has been in {node} for {dwelt}{clock}, longer than {limit} (rule {rule}). "
                "Clear with `{command}`."
            ).format(
                order=oid,
                node=node,
                dwelt=format_duration(dwelt),
                clock=clock_words,
                limit=format_duration(limit),
                rule=rule.name,
                command=command("order", "unflag", oid, flag),
            ),
            order=orders[oid],
            dedupe_key=f"rule:{rule.name}:flag:{raised[oid]}",
        )
    if not run.dry_run:
        audit.record_many(run.session, events)
    return items


# --- supplier ----------------------------------------------------------------------------------


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _supplier(run: _Run, rule) -> list[dict]:
    p = rule.params
    rate, streak = p.get("qc_pass_rate_below"), int(p.get("consecutive_batches") or 3)
    max_delay, window = p.get("avg_delay_days_above"), int(p.get("window_batches") or DEFAULT_WINDOW)
    depth = max(streak if rate is not None else 0, window if max_delay is not None else 0)

    def find() -> sa.Select:
        exempt = sa.select(SUPPLIERS.c.supplier).where(SUPPLIERS.c.inspection_exempt.is_(True))
        r = ranked_batches(run.session, suppliers=exempt)
        conditions, columns = [], [r.c.supplier]
        if rate is not None:
            failing = sa.and_(r.c.rn <= streak, r.c.total > 0, r.c.passed < sa.literal(float(rate)) * r.c.total)
            n_failing = sa.func.sum(sa.case((failing, 1), else_=0))
            columns.append(n_failing.label("n_failing"))
            conditions.append(n_failing == streak)
        if max_delay is not None:
            n_window = sa.func.sum(sa.case((r.c.rn <= window, 1), else_=0))
            avg_delay = sa.func.avg(sa.case((r.c.rn <= window, r.c.delay_days)))
            columns += [n_window.label("n_window"), avg_delay.label("avg_delay")]
            # a full window of evidence is needed: too few batches never freeze a supplier
            conditions.append(sa.and_(n_window == window, avg_delay > float(max_delay)))
        return (
            sa.select(*columns)
            .where(r.c.rn <= depth)
            .group_by(r.c.supplier)
            .having(sa.or_(*conditions))
            .order_by(r.c.supplier)
        )

    hits = run.session.execute(_built(run.session, rule, "find", find)).mappings().all()
    if not hits:
        return []
    names = [h["supplier"] for h in hits]
    evidence: dict[str, list] = {n: [] for n in names}
    er = ranked_batches(run.session, suppliers=names)
    for b in run.session.execute(sa.select(er).where(er.c.rn <= depth).order_by(er.c.supplier, er.c.rn.desc())):
        evidence[b.supplier].append(b)
    items, events = [], []
    for hit in hits:
        name = hit["supplier"]
        batches = evidence[name]
        reasons = []
        if rate is not None and hit["n_failing"] == streak:
            recent = [b for b in batches if b.rn <= streak]
            shown = ", ".join(f"{b.batch_id} {_pct(b.passed / b.total)}" for b in recent)
            reasons.append(
                ngettext(
                    "QC pass rate below {rate} in the last batch: {shown}",
                    "QC pass rate below {rate} in the last {n} batches in a row: {shown}",
                    streak,
                ).format(rate=_pct(float(rate)), n=streak, shown=shown)
            )
        if (
            max_delay is not None
            and hit["n_window"] == window
            and hit["avg_delay"] is not None
            and float(hit["avg_delay"]) > float(max_delay)
        ):
            recent = [b for b in batches if b.rn <= window]
            shown = ", ".join(f"{b.batch_id} {float(b.delay_days):+.1f}d" for b in recent)
            reasons.append(
                _("average delay {delay:.1f} days > {limit:g} days ").format(
                    delay=float(hit["avg_delay"]), limit=float(max_delay)
                )
                + ngettext("over the last batch: {shown}", "over the last {n} batches: {shown}", window).format(
                    n=window, shown=shown
                )
            )
        reason = "; ".join(reasons) + _(" (rule {rule})").format(rule=rule.name)
        if not run.dry_run:
            frozen = run.session.execute(  # type: ignore[attr-defined]  # an UPDATE/INSERT gives a CursorResult; Session.execute is typed Result
                sa.update(SUPPLIERS)
                .where(SUPPLIERS.c.supplier == name, SUPPLIERS.c.inspection_exempt.is_(True))
                .values(inspection_exempt=False, exempt_frozen_at=run.now, exempt_frozen_reason=reason)
            ).rowcount
            if not frozen:
                continue  # a concurrent run froze it first
        items.append(
            _item(
                rule,
                f"supplier:{name}",
                _("would freeze inspection exemption") if run.dry_run else _("inspection exemption frozen"),
                reason,
            )
        )
        events.append(
            {
                "event": "exemption_frozen",
                "at": run.now,
                "actor": run.actor,
                "subject": f"supplier:{name}",
                "detail": reason,
            }
        )
        run.notify(
            rule,
            subject=_("Supplier {supplier} lost its inspection exemption").format(supplier=name),
            body=_("Supplier {supplier}: inspection exemption frozen. Why: {reason}. Details: `{command}`.").format(
                supplier=name, reason=reason, command=command("supplier", "show", name)
            ),
            dedupe_key=f"rule:{rule.name}:frozen:{name}:{run.now.isoformat()}",
        )
    if not run.dry_run:
        audit.record_many(run.session, events)
    return items


#: kind -> the function that finds and writes its hits. Adding a kind is adding a row (and its
#: parameters in config.py's _RULE_KINDS).
KINDS: dict[str, Callable[[_Run, object], list[dict]]] = {
    "stock_below": _stock_below,
    "dwell": _dwell,
    "supplier": _supplier,
}


def run_rules(
    session: Session, cfg: Config, *, now: datetime, actor: str, dry_run: bool = False, digest: bool = False
) -> dict:
    """Evaluate every configured rule once at ``now``, in the caller's transaction.

    Returns ``{hits, notifications, items: [{rule, kind, subject, what, detail}], per_rule: {name: hits},
    dry_run}``. With ``dry_run`` nothing is written: the hits are what a run now would do.
    ``digest`` (the sweep): notifications are queued as digest parts, which the caller merges
    (``outbox.merge_parts``), and ``notifications`` stays 0.
    """
    run = _Run(session, cfg, now, actor, dry_run, parts=outbox.Parts(session, cfg) if digest else None)
    items: list[dict] = []
    per_rule: dict[str, int] = {}
    restore_jit = _jit_off(session)
    for rule in cfg.rules:
        found = KINDS[rule.kind](run, rule)
        run.flush()
        items.extend(found)
        per_rule[rule.name] = len(found)
        if not dry_run:
            _record_run(session, rule.name, now, len(found))
    restore_jit()
    return {
        "hits": len(items),
        "notifications": run.notifications,
        "items": items,
        "per_rule": per_rule,
        "dry_run": dry_run,
    }


def _jit_off(session: Session) -> Callable[[], object]:
    """Turn PostgreSQL's JIT off for the rules' queries; returns what puts the setting back.

    The correlated subqueries' cost estimates trigger JIT, whose compilation costs more than the
    queries themselves (docs/performance.md). SET LOCAL scope: a rollback restores the setting by itself.
    """
    if not is_postgresql(session):
        return lambda: None
    previous = session.execute(sa.text("SELECT current_setting('jit')")).scalar()
    session.execute(sa.text("SELECT set_config('jit', 'off', true)"))
    return lambda: session.execute(sa.text("SELECT set_config('jit', :value, true)"), {"value": previous})


# one statement for the first run and the next (both backends have ON CONFLICT ... DO UPDATE)
_RECORD_RUN = sa.text(
    "INSERT INTO rule_run (rule, last_run_at, last_hits, total_hits) VALUES (:rule, :now, :hits, :hits) "
    "ON CONFLICT (rule) DO UPDATE SET last_run_at = excluded.last_run_at, last_hits = excluded.last_hits, "
    "total_hits = rule_run.total_hits + excluded.total_hits"
).bindparams(_NOW)


def _record_run(session: Session, rule: str, now: datetime, hits: int) -> None:
    session.execute(_RECORD_RUN, {"rule": rule, "now": now, "hits": hits})


# --- rules list --------------------------------------------------------------------------------


def describe_rule(cfg: Config, rule) -> str:
    """One line: the condition and the action."""
    p = rule.params
    if rule.kind == "stock_below":
        level = _("available + open inbound") if p.get("include_inbound") else _("available (on hand - allocated)")
        return _(
            "{level} < the product's safety stock → draft a purchase requisition "
            "(reorder qty, else safety stock + open demand - stock; one draft per SKU)"
        ).format(level=level)
    if rule.kind == "dwell":
        node = cfg.nodes.get(str(p["node"]))
        clock = (
            _("{calendar} hours").format(calendar=node.calendar)
            if p.get("clock") == "calendar" and node and node.calendar
            else _("wall clock")
        )
        return _("open order at {node} longer than {limit} ({clock}) → flag {flag} (once until cleared)").format(
            node=p["node"], limit=format_duration(int(p["longer_than_seconds"])), clock=clock, flag=p["flag"]
        )
    if rule.kind == "supplier":
        why = []
        if p.get("qc_pass_rate_below") is not None:
            n = int(p["consecutive_batches"])
            why.append(
                _("QC pass rate < {rate} ").format(rate=_pct(float(p["qc_pass_rate_below"])))
                # one message per form: Babel keys a plural by its singular, which the config view's words share
                + (_("in the last batch") if n == 1 else _("in {n} batches in a row").format(n=n))
            )
        if p.get("avg_delay_days_above") is not None:
            n = int(p["window_batches"])
            why.append(
                _("average delay > {days:g} days ").format(days=float(p["avg_delay_days_above"]))
                + ngettext("over the last batch", "over the last {n} batches", n).format(n=n)
            )
        return _("exempt supplier with {why} → freeze inspection exemption").format(why=_(" or ").join(why))
    return rule.kind


def list_rules(session: Session, cfg: Config) -> list[dict]:
    """Each configured rule with its description and its run record."""
    runs = {r.rule: r for r in session.execute(sa.select(RUNS))}
    rows = []
    for rule in cfg.rules:
        rec = runs.get(rule.name)
        rows.append(
            {
                "rule": rule.name,
                "kind": rule.kind,
                "description": describe_rule(cfg, rule),
                "notify": list(rule.notify),
                "priority": rule.priority,
                "last_run_at": rec.last_run_at if rec else None,
                "last_hits": rec.last_hits if rec else None,
                "total_hits": rec.total_hits if rec else 0,
            }
        )
    return rows
