"""The store's tables.

Conventions: every timestamp column is a ``UTCDateTime`` (stored as naive UTC, read back as an
aware UTC datetime), so the same code runs on SQLite and PostgreSQL. Business keys (sku,
order_id, ...) are the primary keys where users name the thing; surrogate ids elsewhere.
Invariants the database itself enforces are CHECK and (partial) UNIQUE constraints here, so
no interleaving of processes can break them.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, ClassVar

import sqlalchemy as sa
from pydantic import ConfigDict
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class _Table(SQLModel):
    """Every table's base: pydantic builds a table's validator only if something validates one
    (table models are constructed without validation), not at import by every command."""

    model_config = ConfigDict(defer_build=True)  # type: ignore[assignment]  # SQLModel's stubs want its own TypedDict; pydantic reads this one
    if TYPE_CHECKING:  # SQLModel sets __table__ on every table class at runtime; its stubs don't declare it
        __table__: ClassVar[sa.Table]


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out; naive UTC in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL on SQLite
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _utc(**kw):
    return Field(sa_type=UTCDateTime, **kw)


def _where(cond: str) -> dict:
    """A partial-index predicate for both backends: PostgreSQL's copy is added by
    ``postgresql_predicates`` (its keyword would load SQLAlchemy's PostgreSQL dialect in every
    SQLite command, ~17 ms)."""
    return {"sqlite_where": sa.text(cond)}


# --- master data -----------------------------------------------------------------------------


class Supplier(_Table, table=True):
    supplier: str = Field(primary_key=True)
    name: str
    inspection_exempt: bool = False
    exempt_frozen_at: datetime | None = _utc(default=None)
    exempt_frozen_reason: str | None = None


class Product(_Table, table=True):
    sku: str = Field(primary_key=True)
    name: str
    category: str | None = Field(default=None, index=True)
    safety_stock: int = 0
    reorder_qty: int | None = None
    supplier: str | None = Field(default=None, foreign_key="supplier.supplier")
    lead_time_days: int | None = None
    custom: bool = False


class Customer(_Table, table=True):
    customer: str = Field(primary_key=True)
    name: str
    tier: str | None = None
    region: str | None = None
    credit_limit: float | None = None
    sales_rep: str | None = None


# --- stock -----------------------------------------------------------------------------------


class Stock(_Table, table=True):
    """On hand and reserved per (sku, warehouse). Only core/stock/ writes ``allocated``."""

    __table_args__ = (
        sa.UniqueConstraint("sku", "warehouse", name="uq_stock_sku_warehouse"),
        sa.CheckConstraint("on_hand >= 0", name="ck_stock_on_hand_nonneg"),
        sa.CheckConstraint("allocated >= 0", name="ck_stock_allocated_nonneg"),
        sa.CheckConstraint("allocated <= on_hand", name="ck_stock_never_oversold"),
    )
    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(foreign_key="product.sku")
    warehouse: str
    on_hand: int = 0
    allocated: int = 0


class Receipt(_Table, table=True):
    """Inbound supply: open until received, then on hand."""

    __table_args__ = (
        sa.UniqueConstraint("receipt_id", "sku", "warehouse", name="uq_receipt_line"),
        sa.Index("ix_receipt_sku_status", "sku", "status"),
        sa.CheckConstraint("qty > 0", name="ck_receipt_qty_pos"),
    )
    id: int | None = Field(default=None, primary_key=True)
    receipt_id: str = Field(index=True)
    sku: str = Field(foreign_key="product.sku")
    warehouse: str
    qty: int
    expected_at: datetime = _utc()
    supplier: str | None = Field(default=None, foreign_key="supplier.supplier")
    status: str = "open"  # open | received
    received_at: datetime | None = _utc(default=None)


class StockMove(_Table, table=True):
    """Ledger of on-hand changes: counts, adjustments, receipts, shipments."""

    __tablename__ = "stock_move"
    __table_args__ = (sa.Index("ix_stock_move_sku", "sku", "warehouse"),)
    id: int | None = Field(default=None, primary_key=True)
    sku: str
    warehouse: str
    delta: int
    kind: str  # count | adjust | receipt | ship
    reason: str | None = None
    ref: str | None = None
    actor: str
    at: datetime = _utc()


# --- orders ----------------------------------------------------------------------------------


class Order(_Table, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        sa.Index("ix_orders_status_node", "status", "node"),
        sa.Index("ix_orders_created_at", "created_at"),
        sa.CheckConstraint("status in ('open','on_hold','shipped','delivered','cancelled')", name="ck_orders_status"),
    )
    order_id: str = Field(primary_key=True)
    customer: str = Field(foreign_key="customer.customer", index=True)
    channel: str | None = None
    region: str | None = None
    sales_rep: str | None = None
    priority: int = 0
    created_at: datetime = _utc()
    promised_ship_date: date | None = None
    promise_source: str | None = None  # import | atp | lead_time
    status: str = "open"
    workflow: str | None = None
    node: str | None = None  # where an open order is; None once the workflow is finished
    has_custom_items: bool = False
    content_hash: str | None = None  # of the imported lines, to detect changed re-imports
    shipped_at: datetime | None = _utc(default=None)
    delivered_at: datetime | None = _utc(default=None)
    delivery_issue: str | None = None
    cancelled_at: datetime | None = _utc(default=None)
    carrier: str | None = None
    tracking: str | None = None


class OrderLine(_Table, table=True):
    """On PostgreSQL the table is stored with ``fillfactor = 50`` (migration 0004): allocation
    updates ``allocated`` on most lines soon after a bulk import, and room on the page for a new
    version of each row lets the update stay on it without new index entries (a HOT update; at
    70 only about half of them did)."""

    __tablename__ = "order_line"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "line_no", name="uq_order_line"),
        sa.CheckConstraint("qty > 0", name="ck_order_line_qty_pos"),
        sa.CheckConstraint("allocated >= 0 AND allocated <= qty", name="ck_order_line_allocated"),
        sa.CheckConstraint(
            "cancelled >= 0 AND shipped >= 0 AND shipped <= allocated AND allocated + cancelled <= qty",
            name="ck_order_line_served",
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="orders.order_id", ondelete="CASCADE")
    line_no: int
    sku: str = Field(foreign_key="product.sku", index=True)
    qty: int
    unit_price: float | None = None
    # units served from stock: reserved now (== sum(allocation.qty)) plus shipped; written only by
    # core/stock/. The backorder is qty - cancelled - allocated.
    allocated: int = 0
    shipped: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    cancelled: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # units cancelled (order cancel --line)


class Allocation(_Table, table=True):
    """A reservation of stock in one warehouse for one order line.

    ``order_id`` is the line's order, kept here so an order's reservations are found by one index;
    it has no foreign key of its own (``line_id``'s implies it, and each reservation written
    would pay a second key check). No index by SKU: nothing reads reservations that way
    (``stock.allocated`` holds the per-warehouse totals).
    """

    __table_args__ = (
        sa.UniqueConstraint("line_id", "warehouse", name="uq_allocation_line_wh"),
        sa.Index("ix_allocation_order", "order_id"),
        sa.CheckConstraint("qty > 0", name="ck_allocation_qty_pos"),
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: str
    line_id: int = Field(foreign_key="order_line.id", ondelete="CASCADE")
    sku: str
    warehouse: str
    qty: int
    created_at: datetime = _utc()


class Shipment(_Table, table=True):
    """One parcel that left for an order (SPEC 9.2): an order has any number of them."""

    __table_args__ = (sa.Index("ix_shipment_order", "order_id"),)
    shipment_id: str = Field(primary_key=True)  # given by an import, else "<order_id>/<n>"
    order_id: str = Field(foreign_key="orders.order_id", ondelete="CASCADE")
    shipped_at: datetime = _utc()
    carrier: str | None = None
    tracking: str | None = None


class ShipmentLine(_Table, table=True):
    """What one shipment took of one order line (``sku`` is what left: a wrong pick shows here).
    ``picked_right`` 1: an import reported the line picked right (pick accuracy counts it; a pick
    error is a ``pick_line`` row instead)."""

    __tablename__ = "shipment_line"
    __table_args__ = (
        sa.UniqueConstraint("shipment_id", "line_no", name="uq_shipment_line"),
        sa.Index("ix_shipment_line_order", "order_id"),
        sa.CheckConstraint("qty > 0", name="ck_shipment_line_qty_pos"),
    )
    id: int | None = Field(default=None, primary_key=True)
    shipment_id: str = Field(foreign_key="shipment.shipment_id", ondelete="CASCADE")
    order_id: str  # the shipment's, so an order's shipped units are summed by one index
    line_no: int
    sku: str
    qty: int
    picked_right: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class PickLine(_Table, table=True):
    """A pick error reported for a line in one shipment (shipments imports), for pick accuracy; a
    right pick is its shipment line's ``picked_right`` (0014; before, a row here without error)."""

    __tablename__ = "pick_line"
    __table_args__ = (
        sa.UniqueConstraint("shipment_id", "line_no", name="uq_pick_line"),
        sa.Index("ix_pick_line_order", "order_id"),  # the facts' refresh reads changed orders' pick lines
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="orders.order_id", ondelete="CASCADE")
    line_no: int
    sku: str
    qty: int
    shipment_id: str | None = None
    error: str | None = None  # None: right; wrong_sku | too_many | unknown_line | wrong_qty (before 0006)


class Delivery(_Table, table=True):
    order_id: str = Field(primary_key=True, foreign_key="orders.order_id", ondelete="CASCADE")
    delivered_at: datetime = _utc()
    issue: str | None = None  # wrong_item | short | late | damaged | wrong_address | documents


class ReturnLine(_Table, table=True):
    """Units of an order line that came back (SPEC 9.5), with their reason; ``warehouse``: where
    they were restocked (None: not restocked). The natural key makes ``import returns`` idempotent."""

    __tablename__ = "return_line"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "line_no", "returned_at", "reason", name="uq_return_line"),
        sa.CheckConstraint("qty > 0", name="ck_return_line_qty_pos"),
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="orders.order_id", ondelete="CASCADE")
    line_no: int
    sku: str  # the line's
    qty: int
    reason: str
    returned_at: datetime = _utc()
    warehouse: str | None = None


class QcBatch(_Table, table=True):
    __tablename__ = "qc_batch"
    __table_args__ = (
        sa.UniqueConstraint("supplier", "batch_id", name="uq_qc_batch"),
        sa.Index("ix_qc_batch_supplier_inspected", "supplier", "inspected_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    supplier: str = Field(foreign_key="supplier.supplier")
    batch_id: str
    sku: str | None = None
    inspected_at: datetime = _utc()
    passed: int
    total: int
    promised_at: datetime = _utc()
    received_at: datetime = _utc()


# --- workflow --------------------------------------------------------------------------------


class Task(_Table, table=True):
    """One visit of an order to a workflow node, with its SLA clock.

    ``next_action_at`` is when the sweep next has something to do for this task (becoming at
    risk, breaching, or the next escalation step); the sweep reads only rows whose time has
    come, through ``ix_task_due``, so its cost follows the due work.

    Only open tasks are looked up by node or due time, so those indexes hold open tasks only, and
    ``ix_task_order`` (an order's history) leaves the status out: closing a task then removes
    three index entries and adds none (it used to rewrite six, and a set-based close of 70k
    tasks spent a tenth of an allocation run there).
    """

    __table_args__ = (
        sa.Index("ix_task_due", "next_action_at", "id", **_where("status = 'open'")),
        sa.Index("ix_task_order", "order_id"),
        sa.Index("ix_task_node", "node", "entered_at", **_where("status = 'open'")),
        # the breach forecast's history: a node's latest finished visits (core/forecast.py)
        sa.Index("ix_task_finished", "node", "completed_at", **_where("status IN ('done', 'rejected')")),
        sa.Index("uq_task_one_open", "order_id", unique=True, **_where("status = 'open'")),
        sa.CheckConstraint("status in ('open','done','rejected','skipped','cancelled')", name="ck_task_status"),
        sa.CheckConstraint("sla_state in ('on_track','at_risk','breached')", name="ck_task_sla_state"),
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="orders.order_id", ondelete="CASCADE")
    workflow: str
    node: str
    seq: int  # position of the node in its workflow
    status: str = "open"
    owner: str | None = None  # role
    entered_at: datetime = _utc()
    sla_seconds: int
    risk_at: datetime | None = _utc(default=None)
    deadline: datetime | None = _utc(default=None)
    sla_state: str = "on_track"
    held_at: datetime | None = _utc(default=None)
    paused_seconds: float = 0  # business seconds of holds so far; stretches every clock of the task
    next_step: int = 0  # index of the next escalation step to fire
    escalation_level: int = 0  # roles up the chain added so far
    next_action_at: datetime | None = _utc(default=None)
    completed_at: datetime | None = _utc(default=None)
    completed_by: str | None = None
    outcome: str | None = None  # completed | auto_approved | rejected | auto_rejected | skipped | cancelled
    note: str | None = None


class TaskAssignee(_Table, table=True):
    __tablename__ = "task_assignee"
    task_id: int = Field(primary_key=True, foreign_key="task.id", ondelete="CASCADE")
    role: str = Field(primary_key=True)
    reason: str = "owner"  # owner | escalation
    added_at: datetime = _utc()


class TaskStep(_Table, table=True):
    """Exactly-once guard: a (task, step) row exists iff that step has fired."""

    __tablename__ = "task_step"
    task_id: int = Field(primary_key=True, foreign_key="task.id", ondelete="CASCADE")
    step: str = Field(primary_key=True)  # at_risk | breached | esc:<index>
    fired_at: datetime = _utc()


class Event(_Table, table=True):
    """The append-only audit trail. Written only by core/audit.py; never updated or deleted."""

    __table_args__ = (
        sa.Index("ix_event_order", "order_id", "id"),
        sa.Index("ix_event_subject", "subject", "id", **_where("subject IS NOT NULL")),  # order events have none
        # only the kinds a report counts (report sla: escalations and reminders per node)
        sa.Index("ix_event_kind_at", "event", "at", **_where("event IN ('escalated', 'reminded')")),
    )
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _utc()  # effective time: the command clock
    wall_at: datetime = _utc()  # when it was actually written
    actor: str  # who the command acted as (--as, FFCTL_USER, else the login): advisory
    event: str
    order_id: str | None = None
    task_id: int | None = None
    node: str | None = None
    subject: str | None = None  # for events not about an order: "sku:X", "supplier:S", ...
    detail: str | None = None
    login: str | None = None  # the OS login that ran the command (NULL before schema 0005)


class OrderFlag(_Table, table=True):
    __tablename__ = "order_flag"
    __table_args__ = (
        sa.Index("uq_order_flag_standing", "order_id", "flag", unique=True, **_where("cleared_at IS NULL")),
        sa.Index("ix_order_flag_flag", "flag", "cleared_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="orders.order_id", ondelete="CASCADE")
    flag: str
    priority: str = "normal"
    rule: str | None = None
    raised_at: datetime = _utc()
    cleared_at: datetime | None = _utc(default=None)
    cleared_by: str | None = None


# --- notifications, rules, schedules ---------------------------------------------------------


class Notification(_Table, table=True):
    """The outbox: written in the transaction of the event that causes it, delivered later."""

    __table_args__ = (
        sa.Index("ix_notification_pending", "status", "next_attempt_at"),
        sa.CheckConstraint("status in ('pending','sent','failed')", name="ck_notification_status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    recipient: str
    channel: str  # email | webhook | log
    subject: str
    body: str
    priority: str = "normal"
    order_id: str | None = None
    dedupe_key: str | None = Field(default=None, unique=True)
    status: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = _utc()
    next_attempt_at: datetime | None = _utc(default=None)
    sent_at: datetime | None = _utc(default=None)


class Requisition(_Table, table=True):
    __table_args__ = (
        sa.Index("uq_requisition_open_sku", "sku", unique=True, **_where("status = 'draft'")),
        sa.Index("ix_requisition_sku", "sku", "status"),  # the low-stock rule: is a SKU's requisition open?
        sa.CheckConstraint("status in ('draft','approved','rejected')", name="ck_requisition_status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(foreign_key="product.sku")
    qty: int
    supplier: str | None = None
    status: str = "draft"
    reason: str
    rule: str | None = None
    created_at: datetime = _utc()
    decided_at: datetime | None = _utc(default=None)
    decided_by: str | None = None


class RuleRun(_Table, table=True):
    __tablename__ = "rule_run"
    rule: str = Field(primary_key=True)
    last_run_at: datetime | None = _utc(default=None)
    last_hits: int = 0
    total_hits: int = 0


class ScheduleRun(_Table, table=True):
    __tablename__ = "schedule_run"
    job: str = Field(primary_key=True)
    last_due_at: datetime | None = _utc(default=None)  # the cron time last run
    last_ran_at: datetime | None = _utc(default=None)  # the command clock when it ran
    last_result: str | None = None


# --- report facts (derived; rebuilt from the tables above by core/kpi.py) ---------------------


#: an order's counting facts, summed by every cut of ``report kpi`` (order_fact, visit_fact, group_fact)
ORDER_COUNTERS = (
    "shipped",
    "on_time",
    "delivered",
    "perfect",
    "picked",
    "picked_right",
    "decided",
    "within",
    "units",
    "units_on_time",
    "units_shipped",
    "units_returned",
)

#: the order facts visit_fact copies onto an order's first visit of a node (the node cut sums them)
VISIT_COUNTERS = tuple(c for c in ORDER_COUNTERS if c not in ("decided", "within"))

#: visit_fact's per-node sums, read in node order off its covering index ix_visit_fact_sums (no sort
#: of every visit); the percentiles step through the narrow (node, time, created_at) indexes
VISIT_SUMS = ("decided", "within", "auto", "first", "escalations", "reminders", *VISIT_COUNTERS)


#: group_fact's sums, read in (cut, g) order off its covering index ix_group_fact_sums
GROUP_SUMS = (
    "member",
    *ORDER_COUNTERS,
    "line_picked",
    "line_picked_right",
    "line_shipped",
    "line_returned",
)


#: the fact tables, defined in ffctl/core/factmodels.py: only the reports need them (their raw SQL
#: names the tables), and building their wide tables and mappers cost every command ~20 ms
FACT_MODELS = (
    "OrderFact",
    "NodeFact",
    "VisitFact",
    "VisitDay",
    "GroupFact",
    "GroupDay",
    "OrderDay",
    "MissFact",
    "FlowEdge",
    "FlowPath",
    "WorkFact",
    "WorkDay",
    "FactCustomer",
    "FactProduct",
    "FactState",
)


def __getattr__(name: str):
    """``models.OrderFact`` and the other fact tables, imported on first use."""
    if name in FACT_MODELS:
        from ffctl.core import factmodels

        return getattr(factmodels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_all() -> None:
    """Every table in ``SQLModel.metadata`` (the fact tables too): for migrations and schema checks."""
    from ffctl.core import factmodels  # noqa: F401


def postgresql_predicates() -> None:
    """Give every partial index its PostgreSQL predicate, the same as its SQLite one (idempotent).
    Run when both this module and the PostgreSQL dialect are loaded: at this import if the dialect
    was loaded first, else by ``Store`` when it opens a PostgreSQL database."""
    for table in SQLModel.metadata.tables.values():
        for index in table.indexes:
            where = index.dialect_options["sqlite"]["where"]
            if where is not None and index.dialect_options["postgresql"]["where"] is None:
                index.dialect_kwargs["postgresql_where"] = where


if "sqlalchemy.dialects.postgresql" in sys.modules:
    postgresql_predicates()
