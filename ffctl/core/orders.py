"""Orders as people look them up and act on them: list, show, advance, cancel, unflag.

Queries filter and page in SQL (never load every order to filter in Python); the state of an
order's current task is selected in SQL by ``workflow.clocks``' clauses, the SQL twins of
``workflow.task_view``, which then gives the business-time ``seconds_left`` of each row shown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from ffctl.core import audit, workflow
from ffctl.core.errors import Conflict, FfctlError, NotFound, UsageError
from ffctl.core.models import Allocation, Customer, Event, Order, OrderFlag, OrderLine, Shipment, Task
from ffctl.core.paging import count_matches, fetch_page
from ffctl.core.store import is_postgresql
from ffctl.core.text import command
from ffctl.core.workflow.clocks import state_filter
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

CHUNK = 500
STATUSES = ("open", "partially_shipped", "on_hold", "shipped", "delivered", "cancelled")
STATES = ("on_track", "at_risk", "breached", "on_hold")
FINAL = ("shipped", "delivered", "cancelled")


def check_node(cfg: Config, node: str | None) -> None:
    if node is not None and node not in cfg.nodes:
        raise UsageError(
            _("--node {node!r}: no such node; the config has {names}").format(node=node, names=", ".join(cfg.nodes))
        )


def standing_flags(session: Session, order_ids: Iterable[str]) -> dict[str, list[str]]:
    ids = list(dict.fromkeys(order_ids))
    flags: dict[str, list[str]] = {}
    for start in range(0, len(ids), CHUNK):
        rows = session.execute(
            sa.select(col(OrderFlag.order_id), col(OrderFlag.flag))
            .where(col(OrderFlag.order_id).in_(ids[start : start + CHUNK]), col(OrderFlag.cleared_at).is_(None))
            .order_by(col(OrderFlag.raised_at), col(OrderFlag.id))
        ).all()
        for r in rows:
            flags.setdefault(r.order_id, []).append(r.flag)
    return flags


def _view(cfg: Config, row, now: datetime) -> dict:
    """task_view of a task read as plain columns (None fields when the order has no open task)."""
    if row.task_id is None:
        return {"state": None, "seconds_left": None}
    task = SimpleNamespace(
        node=row.task_node, held_at=row.held_at, sla_state=row.sla_state, deadline=row.deadline, risk_at=row.risk_at
    )
    if task.node not in cfg.nodes:  # the config no longer has the node: state from the stored clocks only
        return {"state": "on_hold" if task.held_at else task.sla_state, "seconds_left": None}
    return workflow.task_view(task, cfg, now)


# --- order list ------------------------------------------------------------------------------


def list_orders(
    session: Session,
    cfg: Config,
    now: datetime,
    *,
    node: str | None = None,
    status: str | None = None,
    at_risk: bool = False,
    breached: bool = False,
    flag: str | None = None,
    customer: str | None = None,
    search: str | None = None,
    limit: int = 200,
) -> tuple[list[dict], int]:
    """Orders matching the filters, oldest first; returns (rows, how many match in all).

    ``search``: a piece of the order id, or of the customer's id or name (any case).
    """
    check_node(cfg, node)
    if status is not None and status not in STATUSES:
        raise UsageError(_("--status {status!r}: use one of {names}").format(status=status, names=", ".join(STATUSES)))
    if limit < 0:
        raise UsageError(_("--limit must be 0 (no limit) or more"))
    t = Task.__table__.c
    open_task = sa.and_(t.order_id == Order.order_id, t.status == "open")
    filters = []
    if node is not None:
        filters.append(col(Order.node) == node)
    # partially_shipped is an open order something has left for (an index lookup by order per row)
    some_shipped = sa.exists().where(col(Shipment.order_id) == Order.order_id)
    if status == "partially_shipped":
        filters += [col(Order.status) == "open", some_shipped]
    elif status == "open":
        filters += [col(Order.status) == "open", ~some_shipped]
    elif status is not None:
        filters.append(col(Order.status) == status)
    states = state_filter(t, now, at_risk=at_risk, breached=breached)
    if states is not None:
        filters += [t.id.is_not(None), states]
    if flag is not None:
        filters.append(
            sa.exists().where(
                col(OrderFlag.order_id) == Order.order_id,
                col(OrderFlag.flag) == flag,
                col(OrderFlag.cleared_at).is_(None),
            )
        )
    if customer is not None:
        if session.get(Customer, customer) is None:
            raise NotFound(
                _("no customer {customer!r}").format(customer=customer),
                hint=_("--customer takes a customer id; --search finds customers by name."),
            )
        filters.append(col(Order.customer) == customer)
    if search is not None and search.strip():
        filters.append(col(Order.order_id).in_(_search_ids(search.strip(), postgresql=is_postgresql(session))))
    stmt = (
        sa.select(
            col(Order.order_id),
            col(Order.customer),
            col(Customer.name).label("customer_name"),
            col(Order.status),
            col(Order.node),
            col(Order.workflow),
            col(Order.promised_ship_date),
            col(Order.created_at),
            sa.case(
                (sa.and_(col(Order.status) == "open", some_shipped), "partially_shipped"), else_=Order.status
            ).label("shown_status"),
            t.id.label("task_id"),
            t.node.label("task_node"),
            t.owner,
            t.held_at,
            t.sla_state,
            t.deadline,
            t.risk_at,
        )
        .join(Customer, col(Customer.customer) == Order.customer)
        .outerjoin(Task, open_task)
        .where(*filters)
        .order_by(col(Order.created_at), col(Order.order_id))
    )
    rows, cut = fetch_page(session, stmt, limit)
    total = len(rows)
    if cut:  # count over the orders alone (every order has one customer and at most one open task)
        counted = sa.select(col(Order.order_id)).where(*filters)
        if states is not None:
            counted = counted.outerjoin(Task, open_task)
        total = count_matches(session, counted)["total"]
    flags = standing_flags(session, [r.order_id for r in rows])
    out = []
    for r in rows:
        view = _view(cfg, r, now)
        out.append(
            {
                "order_id": r.order_id,
                "customer": r.customer,
                "customer_name": r.customer_name,
                "status": r.shown_status,
                "workflow": r.workflow,
                "node": r.node,
                "owner": r.owner,
                "state": view["state"],
                "deadline": r.deadline if r.task_id is not None else None,
                "seconds_left": view["seconds_left"],
                "flags": flags.get(r.order_id, []),
                "promised_ship_date": r.promised_ship_date,
                "created_at": r.created_at,
            }
        )
    return out, total


def _search_ids(text: str, *, postgresql: bool):
    """Ids of the orders whose id contains ``text``, or whose customer's id or name does (any case).

    Two index-driven sets: the order ids are read off the primary key's index (never the orders'
    rows), and the customers are matched in their own small table, then their orders through
    ix_orders_customer. SQLite's LIKE already ignores (ASCII) case; lower() on each key would
    cost three times as much.
    """

    def has(column):
        return column.icontains(text, autoescape=True) if postgresql else column.contains(text, autoescape=True)

    matching_customers = sa.select(col(Customer.customer)).where(
        sa.or_(has(col(Customer.customer)), has(col(Customer.name)))
    )
    return sa.union(
        sa.select(col(Order.order_id)).where(has(col(Order.order_id))),
        sa.select(col(Order.order_id)).where(col(Order.customer).in_(matching_customers)),
    )


# --- order show ------------------------------------------------------------------------------


def _backorder_date(session: Session, cfg: Config, order_id: str, sku: str, qty: int, now: datetime):
    """Earliest date ``qty`` more of ``sku`` can ship for this order, from available-to-promise.

    Returns (date | None, note | None); the note says why there is no date.
    """
    try:
        from ffctl.core import stock
    except ImportError:
        return None, _("available-to-promise is not available in this build")
    result = stock.atp(session, sku, qty, now=now, tz=cfg.timezone, exclude_orders=[order_id])
    earliest = result.get("earliest_date")
    return earliest, None if earliest else _("no known supply covers it")


def show_order(session: Session, cfg: Config, order_id: str, now: datetime) -> dict:
    """Where the order is, who owns it, its lines with allocation, and its timeline."""
    from ffctl.core.misses import why_not_perfect
    from ffctl.core.returns import order_returns

    row = session.execute(
        sa.select(Order, col(Customer.name))
        .join(Customer, col(Customer.customer) == Order.customer)
        .where(col(Order.order_id) == order_id)
    ).first()
    if row is None:
        raise NotFound(_("no order {order_id!r}").format(order_id=order_id))
    order, customer_name = row
    task = workflow.current_task(session, order_id)
    current = None
    if task is not None:
        view = workflow.task_view(task, cfg, now) if task.node in cfg.nodes else {"state": None, "seconds_left": None}
        roles = workflow.assignees(session, task)
        current = {
            "node": task.node,
            "owner": task.owner,
            "auto": cfg.nodes[task.node].auto if task.node in cfg.nodes else None,
            "assignees": roles,
            "people": sorted({m for r in roles if r in cfg.roles for m in cfg.roles[r].members}),
            "entered_at": task.entered_at,
            "deadline": task.deadline,
            "state": view["state"],
            "seconds_left": view["seconds_left"],
            "escalation_level": task.escalation_level,
            "held_at": task.held_at,
        }
    from ffctl.core import shipping

    lines: list[dict[str, Any]] = []
    # a shortfall is a backorder once the order waits at its allocation node (before that, nothing
    # is reserved yet) or, in a workflow that reserves stock, at its ship node (SPEC 9.2)
    waiting_for_stock = (
        order.status in ("open", "on_hold")
        and current is not None
        and (
            current["auto"] == "allocate"
            or current["auto"] == "ship"
            and shipping._reserving(cfg, {"workflow": order.workflow})
        )
    )
    for line in session.execute(
        sa.select(OrderLine).where(col(OrderLine.order_id) == order_id).order_by(col(OrderLine.line_no))
    ).scalars():
        short = line.qty - line.cancelled - line.allocated if waiting_for_stock else 0
        item = {
            "line_no": line.line_no,
            "sku": line.sku,
            "qty": line.qty,
            "allocated": line.allocated - line.shipped,
            "shipped": line.shipped,
            "cancelled": line.cancelled,
            "backordered": short,
            "atp_date": None,
            "atp_note": None,
        }
        if short > 0:
            item["atp_date"], item["atp_note"] = _backorder_date(session, cfg, order_id, line.sku, short, now)
        lines.append(item)
    shipments = [
        {
            "shipment_id": sh["shipment_id"],
            "at": sh["shipped_at"],
            "carrier": sh["carrier"],
            "tracking": sh["tracking"],
            "lines": [{"line_no": ln, "sku": sku, "qty": q} for ln, sku, q in sh["lines"]],
        }
        for sh in shipping._shipments(session, order_id)
    ]
    timeline = [
        {"at": e.at, "event": e.event, "node": e.node, "actor": e.actor, "detail": e.detail}
        for e in session.execute(
            sa.select(Event).where(col(Event.order_id) == order_id).order_by(col(Event.at), col(Event.id))
        ).scalars()
    ]
    hold_reason = _last_detail(timeline, "held") if order.status == "on_hold" else None
    return {
        "order_id": order.order_id,
        "status": shipping.display_status(order.status, sum(ln["shipped"] for ln in lines)),
        "workflow": order.workflow,
        "node": order.node,
        "customer": order.customer,
        "customer_name": customer_name,
        "channel": order.channel,
        "region": order.region,
        "sales_rep": order.sales_rep,
        "priority": order.priority,
        "created_at": order.created_at,
        "promised_ship_date": order.promised_ship_date,
        "flags": standing_flags(session, [order_id]).get(order_id, []),
        "state": current["state"] if current else None,
        "owner": current["owner"] if current else None,
        "assignees": current["assignees"] if current else [],
        "deadline": current["deadline"] if current else None,
        "seconds_left": current["seconds_left"] if current else None,
        "current_task": current,
        "shipped_at": order.shipped_at,
        "delivered_at": order.delivered_at,
        "cancelled_at": order.cancelled_at,
        "carrier": order.carrier,
        "tracking": order.tracking,
        "delivery_issue": order.delivery_issue,
        "hold_reason": hold_reason,
        "cancel_reason": _last_detail(timeline, "cancelled") if order.status == "cancelled" else None,
        "waiting_for": waiting_for(order.status, current, lines, hold_reason),
        "lines": lines,
        "shipments": shipments,
        "timeline": timeline,
        "returns": order_returns(session, order_id),
        "why_not_perfect": why_not_perfect(session, cfg, order_id, now) if order.shipped_at else None,
    }


def _last_detail(timeline: list[dict], event: str) -> str | None:
    return next((e["detail"] for e in reversed(timeline) if e["event"] == event), None)


def waiting_for(status: str, current: dict | None, lines: list[dict], hold_reason: str | None) -> str | None:
    """What the order waits for, in one line: stock (with its ATP date), a node and whose it is, a
    release, a delivery; None once it is delivered or cancelled."""
    if status == "on_hold":
        return _("on hold: {reason}").format(reason=hold_reason or _("no reason recorded"))
    if status == "shipped":
        return _("waiting for delivery")
    if status != "open":
        return None
    if current is None:
        return _("workflow finished")
    if current["auto"] in ("allocate", "ship"):
        short = [
            _("{qty} × {sku}, ATP {date}").format(qty=ln["backordered"], sku=ln["sku"], date=ln["atp_date"])
            if ln["atp_date"]
            else _("{qty} × {sku}, {why}").format(qty=ln["backordered"], sku=ln["sku"], why=ln["atp_note"])
            for ln in lines
            if ln["backordered"]
        ]
        if short:
            return _("waiting for {lines}").format(lines="; ".join(short))
        if current["auto"] == "allocate":
            return _("waiting for `ffctl allocate` to reserve its stock")
    whose = ", ".join(current["assignees"])
    if current["auto"] == "ship":
        return (
            _("waiting for shipment by {roles}").format(roles=whose)
            if whose
            else _("waiting for shipment (`ffctl ship`)")
        )
    if current["auto"]:
        return _("waiting for {node} (automatic)").format(node=current["node"])
    return _("waiting for {node} by {roles}").format(node=current["node"], roles=whose or _("nobody (no owner)"))


# --- advance ---------------------------------------------------------------------------------


def current_node(session: Session, order_id: str) -> str | None:
    """The node of the order's open task (None when it has none); NotFound for no such order."""
    if session.get(Order, order_id) is None:
        raise NotFound(_("no order {order_id!r}").format(order_id=order_id))
    task = workflow.current_task(session, order_id)
    return task.node if task else None


def advance(
    session: Session,
    cfg: Config,
    order_id: str,
    *,
    at: datetime,
    actor: str,
    node: str | None,
    note: str | None = None,
    reject: bool = False,
    reason: str | None = None,
) -> dict:
    """A person completes (or rejects) the order's current manual node; returns what happened.

    ``node`` guards: refused if the order is elsewhere by the time its row is locked.
    """
    if reject:
        if not reason:
            raise UsageError(_("--reject needs --reason: say why the order goes back"))
        now_at = workflow.reject(session, cfg, order_id, at=at, actor=actor, reason=reason, node=node, manual=True)
        order = session.get(Order, order_id)
        assert order is not None  # reject locked it
        session.refresh(order)
        closed = _closed_task(session, order_id, at, actor, "rejected")
        return _decision(cfg, order_id, closed, at, "rejected", now_at, order.status == "on_hold", reason)
    nxt = workflow.complete(session, cfg, order_id, at=at, actor=actor, node=node, note=note, manual=True)
    closed = _closed_task(session, order_id, at, actor, "done")
    return _decision(cfg, order_id, closed, at, "completed", nxt, False, None)


def _decision(
    cfg: Config,
    order_id: str,
    closed: Task,
    at: datetime,
    outcome: str,
    next_node: str | None,
    on_hold: bool,
    reason: str | None,
) -> dict:
    """What ``advance`` reports of the task it closed (``order advance``'s JSON object)."""
    return {
        "order_id": order_id,
        "node": closed.node,
        "outcome": outcome,
        "sla": workflow.sla_words(cfg, closed.node, closed.deadline, at),
        "next_node": next_node,
        "on_hold": on_hold,
        "reason": reason,
    }


def _closed_task(session: Session, order_id: str, at: datetime, actor: str, status: str) -> Task:
    return session.execute(
        sa.select(Task)
        .where(
            col(Task.order_id) == order_id,
            col(Task.status) == status,
            col(Task.completed_by) == actor,
            col(Task.completed_at) == at,
        )
        .order_by(col(Task.id).desc())
        .limit(1)
    ).scalar_one()


def advance_message(result: dict) -> str:
    """One line for the person: what was closed, the SLA outcome, and where the order is now."""
    sla = f" ({result['sla']})" if result["sla"] else ""
    head = f"{result['order_id']}: {result['node']} {result['outcome']}{sla}"
    if result["outcome"] == "rejected":
        if result["on_hold"]:
            return _("{head} → on hold at {node} (the first node); `{command}` resumes it").format(
                head=head, node=result["next_node"], command=command("order", "release", result["order_id"])
            )
        return _("{head} → back at {node}").format(head=head, node=result["next_node"])
    if result["next_node"] is None:
        return _("{head} → workflow finished").format(head=head)
    return _("{head} → now at {node}").format(head=head, node=result["next_node"])


# --- cancel and unflag -----------------------------------------------------------------------


def cancel_order(session: Session, cfg: Config, order_id: str, *, at: datetime, actor: str, reason: str) -> dict:
    """Release the order's reservations, close its open tasks, and mark it cancelled."""
    if not reason or not reason.strip():
        raise UsageError(_("--reason is required: say why the order is cancelled"))
    order = workflow.lock_order(session, order_id, at=at, tz=cfg.timezone)
    if order.status in FINAL:
        raise Conflict(
            _("order {order_id} is {status}; it cannot be cancelled").format(order_id=order_id, status=order.status)
        )
    shipped = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(col(OrderLine.shipped)), 0)).where(col(OrderLine.order_id) == order_id)
    ).scalar_one()
    if shipped:
        raise Conflict(
            _("order {order} has shipped {n} units already; it cannot be cancelled as a whole").format(
                order=order_id, n=shipped
            ),
            hint=_("Cancel what is left of its lines: `{cmd}`.").format(
                cmd=command("order", "cancel", order_id, "--line", "LINE_NO", "--reason", reason)
            ),
        )
    release_order: Callable[..., int] | None
    try:
        from ffctl.core.stock import release_order
    except ImportError:  # a build without core/stock.py: refuse rather than strand reservations
        release_order = None
    if release_order is not None:
        reserved = release_order(session, order_id, at=at, actor=actor)
    else:
        reserved = session.execute(
            sa.select(sa.func.coalesce(sa.func.sum(col(Allocation.qty)), 0)).where(col(Allocation.order_id) == order_id)
        ).scalar_one()
        if reserved:
            raise FfctlError(
                ngettext(
                    "order {order} holds {n} reserved unit and this build cannot release it "
                    "(core/stock.py is missing); nothing was changed",
                    "order {order} holds {n} reserved units and this build cannot release them "
                    "(core/stock.py is missing); nothing was changed",
                    reserved,
                ).format(order=order_id, n=reserved)
            )
    node = order.node
    workflow.cancel_tasks(session, order_id, at=at, actor=actor, reason=reason)
    order.status, order.cancelled_at, order.node = "cancelled", at, None
    session.flush()
    released = (
        ngettext("; released {n} reserved unit", "; released {n} reserved units", reserved).format(n=reserved)
        if reserved
        else ""
    )
    audit.record(
        session, event="cancelled", at=at, actor=actor, order_id=order_id, node=node, detail=f"{reason}{released}"
    )
    return {"order_id": order_id, "node": node, "released": int(reserved)}


def unflag(session: Session, order_id: str, flag: str, *, at: datetime, actor: str, tz: str = "UTC") -> None:
    """Clear a standing flag (it stays in the history)."""
    workflow.lock_order(session, order_id, at=at, tz=tz)
    cleared = session.execute(  # type: ignore[attr-defined]  # an UPDATE/INSERT gives a CursorResult; Session.execute is typed Result
        sa.update(OrderFlag)
        .where(col(OrderFlag.order_id) == order_id, col(OrderFlag.flag) == flag, col(OrderFlag.cleared_at).is_(None))
        .values(cleared_at=at, cleared_by=actor)
    ).rowcount
    if not cleared:
        standing = standing_flags(session, [order_id]).get(order_id, [])
        known = (
            _("; its standing flags: {flags}").format(flags=", ".join(standing))
            if standing
            else _("; it has no standing flags")
        )
        raise NotFound(
            _("order {order_id} has no standing flag {flag!r}{known}").format(order_id=order_id, flag=flag, known=known)
        )
    audit.record(
        session, event="unflagged", at=at, actor=actor, order_id=order_id, detail=_("{flag} cleared").format(flag=flag)
    )
