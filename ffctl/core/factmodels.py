"""The report facts' tables: derived rows, rebuilt from the store's tables by core/kpi.py.

Defined apart from ffctl/core/models.py (which hands them out by name, ``models.OrderFact``)
because only the reports use them, through raw SQL: building these wide tables and their
mappers cost every command's start-up about 20 ms. ``models.load_all()`` imports them where
the whole schema is wanted (migrations, the drift test).
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field

from ffctl.core.models import GROUP_SUMS, VISIT_SUMS, _Table, _utc


class OrderFact(_Table, table=True):
    """One row per order with what ``report kpi`` needs, so a report reads 1 narrow row per
    order instead of the task history. Written only by ``kpi.refresh_facts``, which rewrites
    the rows of every order the audit trail says changed since the last refresh. Derived data:
    deleting every row (and resetting ``fact_state``) only makes the next report rebuild it."""

    __tablename__ = "order_fact"
    order_id: str = Field(primary_key=True)
    created_at: datetime = _utc()
    customer: str
    region: str | None = None  # the order's region, else its customer's
    channel: str | None = None
    sales_rep: str | None = None
    week: date | None = None  # Monday of the local week created_at falls in
    conf: float | None = None  # order confirmation, minutes
    alloc: float | None = None  # allocation, minutes
    cycle: float | None = None  # created -> shipped, hours
    shipped: int = 0
    on_time: int = 0
    delivered: int = 0
    perfect: int = 0
    picked: int = 0
    picked_right: int = 0
    decided: int = 0
    within: int = 0
    units: int = Field(
        default=0, sa_column_kwargs={"server_default": "0"}
    )  # ordered less cancelled (0: order cancelled)
    units_on_time: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # shipped by the promised date
    due: date | None = None  # the promised ship date: fill rate counts the order once it passed
    units_shipped: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # return rate's denominator
    units_returned: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    workflow: str | None = None  # the workflow the order was routed to (the pilot cut)


class NodeFact(_Table, table=True):
    """The node visits that can count for the bottleneck and lateness: breached, or still running
    with a deadline (whether they breach, and their time over SLA, grow with the report's clock;
    ``workflow.breached`` decides at report time)."""

    __tablename__ = "node_fact"
    __table_args__ = (
        sa.Index("ix_node_fact_order", "order_id"),
        sa.Index("ix_node_fact_late", "node", "late", "created_at"),
        # the per-node and owner breach sums every KPI report reads (bottleneck, owners): by index, no sort
        sa.Index("ix_node_fact_sums", "node", "owner", "created_at", "deadline", "completed_at", "late"),
    )
    task_id: int = Field(primary_key=True)
    order_id: str
    node: str
    created_at: datetime = _utc()  # the order's, for the report's period
    breached: int = 0  # 1: its clock stopped past the deadline (a running visit's depends on the clock)
    deadline: datetime | None = _utc(default=None)
    completed_at: datetime | None = _utc(default=None)  # when its clock stopped (held or closed); NULL: running
    owner: str | None = None  # the visit's owner role (breaches per owner)
    late: float | None = None  # business seconds from deadline to completed_at; NULL: running (counted when reporting)


class VisitFact(_Table, table=True):
    """One row per node visit that was not skipped, with what ``report sla`` and ``report kpi
    --by node`` need, so they read narrow rows through indexes by (node, time) instead of sorting
    the task history. ``first`` marks an order's first visit of a node: that row also carries the
    order's own facts (copied from ``order_fact``) and the node's escalations and reminders for the
    order, so the node cut counts each order once. Kept by ``kpi.refresh_facts`` like order_fact."""

    __tablename__ = "visit_fact"
    __table_args__ = (
        sa.Index("ix_visit_fact_order", "order_id"),
        sa.Index("ix_visit_fact_seconds", "node", "seconds", "created_at"),
        sa.Index("ix_visit_fact_sums", "node", "created_at", "seconds", "conf", "alloc", "due", *VISIT_SUMS),
        sa.Index("ix_visit_fact_conf", "node", "conf", "created_at"),
        sa.Index("ix_visit_fact_alloc", "node", "alloc", "created_at"),
        sa.Index(
            "ix_visit_fact_replay",
            "node",
            "breached",
            "auto",
            "paused",
            "elapsed",
            "entered_at",
            "stopped_at",
            "decided",
            "workflow",
        ),
    )
    task_id: int = Field(primary_key=True)
    order_id: str
    node: str
    created_at: datetime = _utc()  # the order's, for the report's period
    seconds: float | None = None  # time in node (entered -> left); NULL: not left, or cancelled
    decided: int = 0  # closed by a decision (completed, approved, rejected)
    within: int = 0  # ... and not breached
    auto: int = 0  # auto_approved or auto_rejected
    first: int = 0  # the order's first visit of this node; the columns below are set only there
    escalations: int = 0
    reminders: int = 0
    conf: float | None = None
    alloc: float | None = None
    shipped: int = 0
    on_time: int = 0
    delivered: int = 0
    perfect: int = 0
    picked: int = 0
    picked_right: int = 0
    units: int = 0
    units_on_time: int = 0
    units_shipped: int = 0
    units_returned: int = 0
    due: date | None = None  # the order's promised ship date (fill rate of the node cut)
    # what ``sla replay`` counts a visit by (core/replay.py, ``_counted``), on every row:
    entered_at: datetime | None = _utc(default=None)
    stopped_at: datetime | None = _utc(default=None)  # when its clock stopped (held or closed); NULL: running
    workflow: str | None = None
    paused: float | None = None  # business seconds its holds stopped the clock (task.paused_seconds)
    breached: int | None = None  # its clock stopped past its deadline
    elapsed: float | None = None  # business seconds entered -> stopped in its node's calendar, less holds


class VisitDay(_Table, table=True):
    """visit_fact's per-node sums by the local day of the orders' created_at (and what fill rate
    reads of a row: units > 0, shipped, due), so ``report sla`` and the node cut sum a period's
    whole days from a few rows per node and day and read visit_fact only for a period's partial
    first and last days. Kept by ``kpi.refresh_facts``: the visit_fact rows a refresh deletes
    are subtracted and those it writes added (a refresh that changes no row changes no sum)."""

    __tablename__ = "visit_day"
    node: str = Field(primary_key=True)
    day: date = Field(primary_key=True)  # local date of the orders' created_at
    key_units: int = Field(primary_key=True)  # 1: the rows' units > 0
    key_shipped: int = Field(primary_key=True)
    key_due: date = Field(primary_key=True)  # the rows' due; 9999-12-31 for none
    visits: int = 0
    n_seconds: int = 0
    n_conf: int = 0
    n_alloc: int = 0
    decided: int = 0
    within: int = 0
    auto: int = 0
    first: int = 0
    escalations: int = 0
    reminders: int = 0
    shipped: int = 0
    on_time: int = 0
    delivered: int = 0
    perfect: int = 0
    picked: int = 0
    picked_right: int = 0
    units: int = 0
    units_on_time: int = 0
    units_shipped: int = 0
    units_returned: int = 0


class GroupFact(_Table, table=True):
    """One row per order and product (``cut = 'product'``) or category it touches, so the line cuts
    of ``report kpi`` read narrow rows through (cut, group, time) indexes instead of joining every
    order line. ``member``: the order has a line of the group; those rows also carry the order's
    own facts (copied from ``order_fact``). The ``line_*`` columns count the order's lines of the
    group itself: pick lines and their errors, units shipped and returned (a pick of a SKU the
    order has no line of makes a row with ``member = 0``). Kept by ``kpi.refresh_facts``."""

    __tablename__ = "group_fact"
    __table_args__ = (
        sa.Index("ix_group_fact_order", "order_id"),
        sa.Index("ix_group_fact_sums", "cut", "g", "conf", "created_at", "alloc", "cycle", "due", *GROUP_SUMS),
        sa.Index("ix_group_fact_conf", "cut", "g", "conf", "created_at"),  # the steps: narrower than the sums'
        sa.Index("ix_group_fact_alloc", "cut", "g", "alloc", "created_at"),
        sa.Index("ix_group_fact_cycle", "cut", "g", "cycle", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    cut: str  # product | category
    g: str | None = None  # the SKU or category (NULL: a SKU without a category)
    order_id: str
    created_at: datetime = _utc()  # the order's, for the report's period
    member: int = 0
    conf: float | None = None
    alloc: float | None = None
    cycle: float | None = None
    shipped: int = 0
    on_time: int = 0
    delivered: int = 0
    perfect: int = 0
    picked: int = 0
    picked_right: int = 0
    decided: int = 0
    within: int = 0
    units: int = 0
    units_on_time: int = 0
    units_shipped: int = 0
    units_returned: int = 0
    due: date | None = None
    line_picked: int = 0
    line_picked_right: int = 0
    line_shipped: int = 0
    line_returned: int = 0


class OrderDay(_Table, table=True):
    """order_fact's sums per local week and day (and what fill rate reads of a row: units > 0,
    shipped, due), so ``report kpi`` over the whole store and ``--by week`` (the dashboard's
    KPIs and weekly panel) sum a period's whole days from a few rows a day and read order_fact
    only for a period's partial first and last days. Kept like group_day."""

    __tablename__ = "order_day"
    week: date = Field(primary_key=True)  # the orders' local week (order_fact.week)
    day: date = Field(primary_key=True)  # local date of the orders' created_at
    key_units: int = Field(primary_key=True)  # 1: the rows' units > 0
    key_shipped: int = Field(primary_key=True)
    key_due: date = Field(primary_key=True)  # the rows' due; 9999-12-31 for none
    n_rows: int = 0  # orders (0: the row is deleted)
    n_conf: int = 0
    n_alloc: int = 0
    n_cycle: int = 0
    shipped: int = 0
    on_time: int = 0
    delivered: int = 0
    perfect: int = 0
    picked: int = 0
    picked_right: int = 0
    decided: int = 0
    within: int = 0
    units: int = 0
    units_on_time: int = 0
    units_shipped: int = 0
    units_returned: int = 0


class GroupDay(_Table, table=True):
    """group_fact's sums per line cut and group by the local day of the orders' created_at (and
    what fill rate reads of a row: units > 0, shipped, due), so ``report kpi --by product`` and
    ``--by category`` sum a period's whole days from a few rows per group and day and read
    group_fact only for a period's partial first and last days (as visit_day serves the node
    cut). Kept by ``kpi.refresh_facts``: the group_fact rows a refresh deletes are subtracted and
    those it writes added; a store upgraded with group_fact rows fills it at its next refresh."""

    __tablename__ = "group_day"
    cut: str = Field(primary_key=True)
    g: str = Field(primary_key=True)  # the group; '' for none (a SKU without a category)
    day: date = Field(primary_key=True)  # local date of the orders' created_at
    key_units: int = Field(primary_key=True)  # 1: the rows' units > 0
    key_shipped: int = Field(primary_key=True)
    key_due: date = Field(primary_key=True)  # the rows' due; 9999-12-31 for none
    n_rows: int = 0  # group_fact rows (0: the row is deleted)
    n_conf: int = 0
    n_alloc: int = 0
    n_cycle: int = 0
    member: int = 0
    shipped: int = 0
    on_time: int = 0
    delivered: int = 0
    perfect: int = 0
    picked: int = 0
    picked_right: int = 0
    decided: int = 0
    within: int = 0
    units: int = 0
    units_on_time: int = 0
    units_shipped: int = 0
    units_returned: int = 0
    line_picked: int = 0
    line_picked_right: int = 0
    line_shipped: int = 0
    line_returned: int = 0


class MissFact(_Table, table=True):
    """One row per shipped order that is not perfect (``report misses``): its failed components
    and its one primary cause (core/misses.py). Derived like order_fact, refreshed with it."""

    __tablename__ = "miss_fact"
    __table_args__ = (sa.Index("ix_miss_fact_created", "created_at"),)
    order_id: str = Field(primary_key=True)
    created_at: datetime = _utc()
    late: int = 0
    short: int = 0
    wrong_item: int = 0
    delivery_issue: int = 0
    returned: int = 0
    cause: str  # node:NAME | stockout:SKU | hold:REASON | pick_error | delivery:ISSUE | returned:REASON | ...
    node: str | None = None  # the node the cause names (or where the order waited)
    role: str | None = None  # that node's owner role
    sku: str | None = None
    supplier: str | None = None


class FlowEdge(_Table, table=True):
    """One row per directly-follows step of an order (a visit that was not skipped, then the
    order's next such visit): ``report flow``'s edges, with the business time from entering
    ``node`` to entering ``next_node`` in ``node``'s calendar (core/flow.py). Indexed by (node,
    next_node, seconds) so an edge's median is an OFFSET into its range. Kept by
    ``kpi.refresh_facts`` like order_fact."""

    __tablename__ = "flow_edge"
    __table_args__ = (
        sa.Index("ix_flow_edge_order", "order_id"),
        sa.Index("ix_flow_edge_seconds", "node", "next_node", "seconds", "created_at"),
    )
    task_id: int = Field(primary_key=True)  # the visit to ``node``
    order_id: str
    created_at: datetime = _utc()  # the order's, for the report's period
    node: str
    next_node: str
    seconds: float


class FlowPath(_Table, table=True):
    """One row per order with a node visit: its nodes in visit order and the nodes of its visits
    closed by a reject, each joined by a tab (``report flow``'s variants, edge counts and rework
    come from counting these by group). Kept by ``kpi.refresh_facts`` like order_fact."""

    __tablename__ = "flow_path"
    __table_args__ = (sa.Index("ix_flow_path_groups", "path", "rejects", "created_at"),)
    order_id: str = Field(primary_key=True)
    created_at: datetime = _utc()
    path: str
    rejects: str = ""


class WorkFact(_Table, table=True):
    """One row per node visit that was not skipped, with what ``report workload`` needs (core/
    workload.py): its owner role and who closed it, when it entered and was decided, the times its
    breach depends on, and its handling time (business seconds entering -> decision in the node's
    calendar, less holds), so arrivals and completions are range reads by time and the handling
    p50/p90 rank steps through a (group, handling) index. Kept by ``kpi.refresh_facts``."""

    __tablename__ = "work_fact"
    __table_args__ = (
        sa.Index("ix_work_fact_order", "order_id"),
        sa.Index("ix_work_fact_arrived", "entered_at", "owner", "node", "deadline", "stopped_at"),
        sa.Index(
            "ix_work_fact_done",
            "done_at",
            "owner",
            "completed_by",
            "node",
            "deadline",
            "stopped_at",
            "entered_at",
            "handling",
        ),
        sa.Index("ix_work_fact_role", "owner", "handling", "done_at"),
        sa.Index("ix_work_fact_person", "completed_by", "handling", "done_at"),
        sa.Index("ix_work_fact_open", "completed_at"),
    )
    task_id: int = Field(primary_key=True)
    order_id: str
    node: str
    owner: str | None = None  # the node's owner role (None: an automatic node)
    completed_by: str | None = None
    entered_at: datetime = _utc()
    completed_at: datetime | None = _utc(default=None)  # closed (any way); NULL: open
    done_at: datetime | None = _utc(default=None)  # completed_at of a decided visit (DECIDED), else NULL
    stopped_at: datetime | None = _utc(default=None)  # when its clock stopped (workflow.stopped_at)
    deadline: datetime | None = _utc(default=None)
    handling: float | None = None  # decided visits: business seconds entered -> done, less paused_seconds


class WorkDay(_Table, table=True):
    """work_fact's visits counted per UTC day, group and node (``kind``: "arrived", a role's by
    entry day; "role" and "person", decided visits by decision day): ``report workload`` sums a
    period's whole days here and reads only the rows of its two edge days. ``breached`` counts
    stopped visits only (a running one's breach depends on the report's clock). Kept with
    work_fact by adding and taking away the counts of the rows it writes and deletes."""

    __tablename__ = "work_day"
    kind: str = Field(primary_key=True)
    null_g: int = Field(default=0, primary_key=True)  # 1: the group is None (an automatic node's visits)
    g: str = Field(default="", primary_key=True)  # the role or person ('' when ``null_g``)
    node: str = Field(primary_key=True)
    day: int = Field(primary_key=True)  # days since 1970-01-01 UTC
    n: int = 0
    breached: int = 0
    handled: int = 0  # decided visits with a handling time


class FactCustomer(_Table, table=True):
    """The customer regions the facts were written with (a changed region rewrites its orders)."""

    __tablename__ = "fact_customer"
    customer: str = Field(primary_key=True)
    region: str | None = None


class FactProduct(_Table, table=True):
    """The product categories the facts were written with (a changed category rewrites the orders
    with a line of the product)."""

    __tablename__ = "fact_product"
    sku: str = Field(primary_key=True)
    category: str | None = None


class FactState(_Table, table=True):
    """One row (id 1): the last audit event the facts include, and what they were computed under."""

    __tablename__ = "fact_state"
    id: int = Field(primary_key=True)
    event_id: int | None = None  # None: never built
    fingerprint: str | None = None  # time zone, allocation nodes, definitions version
    refreshed_at: datetime | None = _utc(default=None)
