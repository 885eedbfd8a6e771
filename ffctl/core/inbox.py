"""The task inbox: open node tasks (manual and automatic), most urgent first.

Whose tasks: by default the ones assigned (as owner or by escalation) to a role the user is a
member of; ``--role R`` a role's; ``--all`` every open task, for members of ``admin`` only.
Filtering, ordering and paging happen in SQL; only the page shown gets its business-time
``seconds_left`` from ``workflow.task_view``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from ffctl.core import workflow
from ffctl.core.errors import PermissionDenied, UsageError
from ffctl.core.models import Customer, Order, Task, TaskAssignee
from ffctl.core.orders import CHUNK
from ffctl.core.paging import count_matches, fetch_page
from ffctl.core.workflow.clocks import breached_clause, state_filter, urgency
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config


def roles_of(cfg: Config, user: str) -> list[str]:
    """The roles ``user`` is a member of, in config order."""
    return [name for name, role in cfg.roles.items() if user in role.members]


def only_mine(cfg: Config, user: str, *, mine: bool, role: str | None, everyone: bool) -> bool:
    """Whether the list keeps to the user's own tasks: yes unless ``--role`` or ``--all`` says otherwise.

    ``--all`` is for members of admin (who may act on every task); anyone may look at a role's tasks.
    """
    if everyone and mine:
        raise UsageError(_("--all and --mine contradict each other; give one"))
    if everyone and not workflow.is_admin(cfg, user):
        raise PermissionDenied(
            _("{user} is not in the {admin} role; --all lists every open task for admins only").format(
                user=user, admin=workflow.ADMIN
            ),
            hint=_("--role ROLE lists a role's tasks; without options you see your own."),
        )
    return mine or not (everyone or role is not None)


def _assigned_to(task, roles: list[str]):
    """The task's owner is one of ``roles``, or it was escalated to one of them."""
    ta = TaskAssignee.__table__.c
    return sa.or_(
        task.owner.in_(roles),
        sa.exists().where(ta.task_id == task.id, ta.role.in_(roles)),
    )


def list_tasks(
    session: Session,
    cfg: Config,
    now: datetime,
    *,
    user: str | None = None,
    mine: bool = False,
    role: str | None = None,
    at_risk: bool = False,
    breached: bool = False,
    limit: int = 200,
) -> tuple[list[dict], dict[str, int]]:
    """Open tasks, breached first, then by deadline; on hold last.

    ``mine``: tasks assigned (owner or escalation) to a role ``user`` is a member of; without it,
    every open task (``only_mine`` decides which a person asked for). Returns (rows, counts):
    ``counts`` has ``total`` and ``breached`` over every match, not just the rows shown.
    """
    if role is not None and role not in cfg.roles:
        raise UsageError(
            _("--role {role!r}: no such role; the config has {names}").format(role=role, names=", ".join(cfg.roles))
        )
    if limit < 0:
        raise UsageError(_("--limit must be 0 (no limit) or more"))
    t = Task.__table__.c
    filters = [t.status == "open"]
    if mine:
        mine_roles = roles_of(cfg, user or "")
        if not mine_roles:
            return [], {"total": 0, "breached": 0}
        filters.append(_assigned_to(t, mine_roles))
    if role is not None:
        filters.append(_assigned_to(t, [role]))
    states = state_filter(t, now, at_risk=at_risk, breached=breached)
    if states is not None:
        filters.append(states)
    stmt = (
        sa.select(
            t.id,
            t.order_id,
            t.workflow,
            t.node,
            t.owner,
            t.entered_at,
            t.deadline,
            t.risk_at,
            t.held_at,
            t.sla_state,
            t.escalation_level,
            col(Order.customer),
            col(Order.priority),
            col(Order.promised_ship_date),
            col(Customer.name).label("customer_name"),
        )
        .join(Order, col(Order.order_id) == t.order_id)
        .join(Customer, col(Customer.customer) == Order.customer)
        .where(*filters)
        .order_by(urgency(t, now), t.deadline, t.order_id)
    )
    rows, cut = fetch_page(session, stmt, limit)
    extra = _escalated_roles(session, [r.id for r in rows])
    from ffctl.core.forecast import for_tasks

    likely = for_tasks(session, cfg, now, [r.id for r in rows])  # the page only: one window query
    out = []
    for r in rows:
        view = workflow.task_view(r, cfg, now)
        owners = [r.owner] if r.owner else []
        spec = cfg.nodes.get(r.node)
        out.append(
            {
                "order_id": r.order_id,
                "node": r.node,
                "owner": r.owner,
                "assignees": owners + [x for x in extra.get(r.id, []) if x not in owners],
                "entered_at": r.entered_at,
                "deadline": r.deadline,
                "state": view["state"],
                "seconds_left": view["seconds_left"],
                "auto": spec.auto if spec else None,
                "customer": r.customer,
                "escalation_level": r.escalation_level,
                "customer_name": r.customer_name,
                "priority": r.priority,
                "promised_ship_date": r.promised_ship_date,
                "p_breach": likely[r.id][0],
                "p_breach_reason": likely[r.id][1],
            }
        )
    if cut:  # counted over the open tasks alone: each has one order, and each order one customer
        counts = count_matches(session, sa.select(t.id).where(*filters), breached=breached_clause(t, now))
    else:
        counts = {"total": len(out), "breached": sum(1 for r in out if r["state"] == "breached")}
    return out, counts


def _escalated_roles(session: Session, task_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for start in range(0, len(task_ids), CHUNK):
        for task_id, role in session.execute(
            sa.select(col(TaskAssignee.task_id), col(TaskAssignee.role))
            .where(col(TaskAssignee.task_id).in_(task_ids[start : start + CHUNK]))
            .order_by(col(TaskAssignee.task_id), col(TaskAssignee.added_at))
        ).all():
            found.setdefault(task_id, []).append(role)
    return found
