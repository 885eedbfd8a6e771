"""The task inbox: open node tasks (manual and automatic), most urgent first.

Filtering, ordering and paging happen in SQL; only the page shown gets its business-time
``seconds_left`` from ``workflow.task_view``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import workflow
from ffctl.core.errors import UsageError
from ffctl.core.models import Order, Task, TaskAssignee
from ffctl.core.orders import CHUNK, state_filter, urgency


def roles_of(cfg, user: str) -> list[str]:
    """The roles ``user`` is a member of, in config order."""
    return [name for name, role in cfg.roles.items() if user in role.members]


def _assigned_to(task, roles: list[str]):
    """The task's owner is one of ``roles``, or it was escalated to one of them."""
    ta = TaskAssignee.__table__.c
    return sa.or_(
        task.owner.in_(roles),
        sa.exists().where(ta.task_id == task.id, ta.role.in_(roles)),
    )


def list_tasks(session: Session, cfg, now: datetime, *, user: str | None = None, mine: bool = False,
               role: str | None = None, at_risk: bool = False, breached: bool = False,
               limit: int = 200) -> tuple[list[dict], bool]:
    """Open tasks, breached first, then by deadline; on hold last. Returns (rows, truncated).

    ``mine``: tasks assigned (owner or escalation) to a role ``user`` is a member of. Without it
    everyone sees every open task; ``admin`` may act on all of them but does not own them.
    """
    if role is not None and role not in cfg.roles:
        raise UsageError(f"--role {role!r}: no such role; the config has {', '.join(cfg.roles)}")
    if limit < 0:
        raise UsageError("--limit must be 0 (no limit) or more")
    t = Task.__table__.c
    stmt = (
        sa.select(t.id, t.order_id, t.workflow, t.node, t.owner, t.entered_at, t.deadline, t.risk_at, t.held_at,
                  t.sla_state, t.escalation_level, Order.customer, Order.priority)
        .join(Order, Order.order_id == t.order_id)
        .where(t.status == "open")
    )
    if mine:
        mine_roles = roles_of(cfg, user or "")
        if not mine_roles:
            return [], False
        stmt = stmt.where(_assigned_to(t, mine_roles))
    if role is not None:
        stmt = stmt.where(_assigned_to(t, [role]))
    states = state_filter(t, now, at_risk=at_risk, breached=breached)
    if states is not None:
        stmt = stmt.where(states)
    stmt = stmt.order_by(urgency(t, now), t.deadline, t.order_id)
    if limit:
        stmt = stmt.limit(limit + 1)
    rows = session.execute(stmt).all()
    truncated = bool(limit) and len(rows) > limit
    rows = rows[:limit] if limit else rows
    extra = _escalated_roles(session, [r.id for r in rows])
    out = []
    for r in rows:
        view = workflow.task_view(r, cfg, now)
        owners = [r.owner] if r.owner else []
        spec = cfg.nodes.get(r.node)
        out.append({
            "order_id": r.order_id, "node": r.node, "owner": r.owner,
            "assignees": owners + [x for x in extra.get(r.id, []) if x not in owners],
            "entered_at": r.entered_at, "deadline": r.deadline, "state": view["state"],
            "seconds_left": view["seconds_left"], "auto": spec.auto if spec else None,
            "customer": r.customer, "escalation_level": r.escalation_level,
        })
    return out, truncated


def _escalated_roles(session: Session, task_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for start in range(0, len(task_ids), CHUNK):
        for task_id, role in session.execute(
            sa.select(TaskAssignee.task_id, TaskAssignee.role)
            .where(TaskAssignee.task_id.in_(task_ids[start:start + CHUNK]))
            .order_by(TaskAssignee.task_id, TaskAssignee.added_at)
        ).all():
            found.setdefault(task_id, []).append(role)
    return found
