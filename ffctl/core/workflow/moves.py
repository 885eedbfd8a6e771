"""Moves of an order through its workflow: complete, reject, hold, release, cancel.

Writers lock the order row (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction is already
exclusive) and close a task with a conditional UPDATE (``... AND status = 'open'``), so two
people or a person and a sweep cannot both complete one task. The next node is planned by
``entry`` (the one planner of entries), the events checked by ``audit``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from ffctl.core import audit
from ffctl.core.bulk import among, int_array, keyed, text_array
from ffctl.core.durations import format_duration
from ffctl.core.errors import Conflict, NotFound, PermissionDenied
from ffctl.core.models import Order, Task, TaskAssignee
from ffctl.core.store import is_postgresql
from ffctl.core.text import command
from ffctl.core.workflow.clocks import reschedule, sla_words
from ffctl.core.workflow.entry import Entries, EntryPlanner, stored
from ffctl.core.workflow.routing import needs_facts, order_facts
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

CHUNK = 500
ADMIN = "admin"  # the role whose members may act on every node
TASK = Task.__table__
ORDERS = Order.__table__

# The single-order statements of every advance, built once per process: SQLAlchemy then reuses
# each one's cache key and compiled form instead of building the expression again per call.
_ORDER = sa.select(Order).where(col(Order.order_id) == sa.bindparam("order_id"))
_ORDER_LOCKED = _ORDER.with_for_update()
_OPEN_TASK = sa.select(Task).where(col(Task.order_id) == sa.bindparam("order_id"), col(Task.status) == "open")
_OPEN_TASK_LOCKED = _OPEN_TASK.with_for_update()
_ASSIGNEES = (
    sa.select(col(TaskAssignee.role))
    .where(col(TaskAssignee.task_id) == sa.bindparam("task_id"))
    .order_by(col(TaskAssignee.added_at))
)
_CLOSE = (
    sa.update(TASK)
    .where(TASK.c.id == sa.bindparam("task_id"), TASK.c.status == "open")
    .values(
        status=sa.bindparam("to_status"),
        outcome=sa.bindparam("to_outcome"),
        completed_at=sa.bindparam("to_completed_at", type_=TASK.c.completed_at.type),
        completed_by=sa.bindparam("to_completed_by"),
        note=sa.bindparam("to_note"),
        next_action_at=None,
    )
)


# --- reading ---------------------------------------------------------------------------------


def lock_order(session: Session, order_id: str, *, at: datetime, tz: str) -> Order:
    """Lock the order a command is about to change at ``at``; refused if its timeline would run
    backwards (``audit.refuse_earlier``)."""
    stmt = _ORDER_LOCKED if is_postgresql(session) else _ORDER
    order = session.execute(stmt, {"order_id": order_id}).scalar_one_or_none()
    if order is None:
        raise NotFound(
            _("no order {order_id!r}").format(order_id=order_id),
            hint=_("`ffctl order list` shows the orders in the store."),
        )
    audit.refuse_earlier(session, order_id, at, tz)
    return order


def current_task(session: Session, order_id: str, *, lock: bool = False) -> Task | None:
    stmt = _OPEN_TASK_LOCKED if lock and is_postgresql(session) else _OPEN_TASK
    return session.execute(stmt, {"order_id": order_id}).scalar_one_or_none()


def assignees(session: Session, task: Task) -> list[str]:
    """Roles a task is assigned to: its owner, then roles it was escalated to."""
    extra = session.execute(_ASSIGNEES, {"task_id": task.id}).scalars().all()
    roles = [task.owner] if task.owner else []
    return roles + [r for r in extra if r not in roles]


def may_act(session: Session, cfg: Config, task: Task, user: str) -> bool:
    """Members of the owner role, of roles the task escalated to, and of ``admin``."""
    return is_admin(cfg, user) or any(user in cfg.roles[r].members for r in assignees(session, task) if r in cfg.roles)


def is_admin(cfg: Config, user: str) -> bool:
    """Members of the ``admin`` role may act on every node (and see every task)."""
    return ADMIN in cfg.roles and user in cfg.roles[ADMIN].members


def _open_order(order: Order, verb: str) -> None:
    if order.status == "on_hold":
        raise Conflict(
            _("order {order_id} is on hold; cannot {verb} it").format(order_id=order.order_id, verb=verb),
            hint=_("Release it first: `{command}`.").format(command=command("order", "release", order.order_id)),
        )
    if order.status != "open":
        raise Conflict(
            _("order {order_id} is {status}; cannot {verb} it").format(
                order_id=order.order_id, status=order.status, verb=verb
            )
        )


def _require_task(session: Session, order: Order, node: str | None, verb: str) -> Task:
    task = current_task(session, order.order_id, lock=True)
    if task is None:
        raise Conflict(
            _("order {order_id} has no open node to {verb} (its workflow is finished)").format(
                order_id=order.order_id, verb=verb
            )
        )
    if node is not None and task.node != node:
        raise Conflict(
            _("order {order_id} is at node {node}, not {node2}; nothing was changed").format(
                order_id=order.order_id, node=task.node, node2=node
            )
        )
    return task


def _close(
    session: Session, task: Task, *, status: str, outcome: str, at: datetime, actor: str, note: str | None
) -> None:
    done = session.execute(  # type: ignore[attr-defined]  # an UPDATE/INSERT gives a CursorResult; Session.execute is typed Result
        _CLOSE,
        {
            "task_id": task.id,
            "to_status": status,
            "to_outcome": outcome,
            "to_completed_at": at,
            "to_completed_by": actor,
            "to_note": note,
        },
    ).rowcount
    if not done:
        raise Conflict(
            _("order {order_id}: node {node} was closed by someone else just now; nothing was changed").format(
                order_id=task.order_id, node=task.node
            )
        )
    # the object now says what the UPDATE wrote, without reading the row back or marking it dirty
    for name, value in (
        ("status", status),
        ("outcome", outcome),
        ("completed_at", at),
        ("completed_by", actor),
        ("note", note),
        ("next_action_at", None),
    ):
        set_committed_value(task, name, value)


def _entries(cfg: Config, actor: str) -> Entries:
    return EntryPlanner(cfg, actor).begin()


# --- complete ----------------------------------------------------------------------------------


def complete(
    session: Session,
    cfg: Config,
    order_id: str,
    *,
    at: datetime,
    actor: str,
    outcome: str = "completed",
    node: str | None = None,
    note: str | None = None,
    manual: bool = False,
) -> str | None:
    """Complete the order's current node and enter the next; returns the new node (None: finished).

    ``manual=True`` is a person's ``advance``: only manual nodes, only people allowed on the task.
    """
    order = lock_order(session, order_id, at=at, tz=cfg.timezone)
    _open_order(order, "advance")
    task = _require_task(session, order, node, "complete")
    if manual:
        spec = cfg.nodes.get(task.node)
        if spec is not None and spec.auto:
            by = "ffctl allocate" if spec.auto == "allocate" else "ffctl ship"
            raise Conflict(
                _("node {node} of order {order_id} is completed by `{by}`, not by advance").format(
                    node=task.node, order_id=order_id, by=by
                )
            )
        if not may_act(session, cfg, task, actor):
            need = " or ".join(assignees(session, task) + ["admin"])
            raise PermissionDenied(
                _("{actor} may not complete {node} of order {order_id}: it needs a member of {need}").format(
                    actor=actor, node=task.node, order_id=order_id, need=need
                )
            )
    words = sla_words(cfg, task.node, task.deadline, at)
    _close(session, task, status="done", outcome=outcome, at=at, actor=actor, note=note)
    event = "auto_approved" if outcome == "auto_approved" else "completed"
    detail = "; ".join(x for x in (words, note) if x)
    entries, when = _entries(cfg, actor), stored(at)
    entries.event(when, event, order_id, task.node, detail or None)
    facts = _facts_one(session, order_id) if needs_facts(cfg, task.workflow, task.seq + 1) else None
    _entered, nxt = entries.enter(order_id, facts, when, workflow=task.workflow, seq=task.seq + 1)
    entries.write(session)
    return nxt


def complete_auto(
    session: Session,
    cfg: Config,
    order_ids: Iterable[str],
    kind: str,
    *,
    at: datetime | Mapping[str, datetime],
    actor: str,
) -> list[str]:
    """Complete the current ``auto = kind`` node of each listed order (set-based); returns those moved.

    ``at``: one time for all, or each order's own (``{order_id: time}``: an import's shipments)."""
    return list(complete_auto_moves(session, cfg, order_ids, kind, at=at, actor=actor))


def complete_auto_moves(
    session: Session,
    cfg: Config,
    order_ids: Iterable[str],
    kind: str,
    *,
    at: datetime | Mapping[str, datetime],
    actor: str,
    tasks: Iterable | None = None,
    move_orders: bool = True,
) -> dict[str, str | None]:
    """``complete_auto``, returning ``{order_id: node it is now at}`` as ``complete_tasks`` does.

    ``tasks``: the open tasks of the listed orders (open, locked by the caller), read by the caller
    with id, order_id, node, workflow, seq, deadline and held_at, saving their reading here;
    ``move_orders`` False: the caller sets the orders' nodes from what this returns."""
    nodes = [name for name, spec in cfg.nodes.items() if spec.auto == kind]
    moved: dict[str, str | None] = {}
    if not nodes:
        return moved
    if tasks is not None:  # the same choice as the statement below
        chosen = [r for r in tasks if r.node in nodes and r.held_at is None]
        return complete_tasks(session, cfg, chosen, at=at, actor=actor, move_orders=move_orders)
    ids = list(dict.fromkeys(order_ids))
    size = max(len(ids), 1) if is_postgresql(session) else CHUNK  # one array parameter on PostgreSQL
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        rows = session.execute(
            sa.select(TASK.c.id, TASK.c.order_id, TASK.c.node, TASK.c.workflow, TASK.c.seq, TASK.c.deadline)
            .join(ORDERS, ORDERS.c.order_id == TASK.c.order_id)
            .where(
                among(session, TASK.c.order_id, chunk),
                TASK.c.status == "open",
                TASK.c.node.in_(nodes),
                TASK.c.held_at.is_(None),
                ORDERS.c.status == "open",
            )
        ).all()
        moved.update(complete_tasks(session, cfg, rows, at=at, actor=actor, move_orders=move_orders))
    return moved


class OpenTask(NamedTuple):
    """An order's open task as ``complete_tasks`` and ``complete_auto_moves`` take it from a caller
    that read and locked it (allocation, shipping)."""

    id: int
    order_id: str
    node: str
    workflow: str
    seq: int
    deadline: datetime | None
    held_at: object = None


def complete_tasks(
    session: Session,
    cfg: Config,
    tasks: Sequence[Any],
    *,
    at: datetime | Mapping[str, datetime],
    actor: str,
    move_orders: bool = True,
) -> dict[str, str | None]:
    """Complete open tasks whose orders the caller has checked (open, not held) and enter each
    order's next node; set-based. ``tasks`` are rows with id, order_id, node, workflow, seq and
    deadline (a caller that has read and locked them, like ``allocate``, saves reading them again);
    ``at`` one time for all or ``{order_id: time}``.

    Returns ``{order_id: node it is now at}`` (None: its workflow is finished) for the tasks this
    transaction closed, in the given order (``move_orders`` False: the caller moves those orders): one conditional UPDATE whose RETURNING says which, so
    a concurrent completer's tasks are neither advanced twice nor re-entered.
    """
    if not tasks:
        return {}
    closed: set[int] = set()
    when = at if isinstance(at, datetime) else [at[r.order_id] for r in tasks]
    for ids in _close_completed(session, [r.id for r in tasks], at=when, actor=actor):
        closed.update(ids)
    rows = [r for r in tasks if r.id in closed]
    if not rows:
        return {}
    facts = None
    if any(needs_facts(cfg, r.workflow, r.seq + 1) for r in rows):
        facts = {f["order_id"]: f for f in order_facts(session, [r.order_id for r in rows])}
    entries = _entries(cfg, actor)
    moved = _advance(entries, cfg, rows, facts, at)
    entries.write(session, move_orders=move_orders)
    return moved


def _advance(
    entries: Entries, cfg: Config, rows: list, facts: dict[str, dict] | None, at: datetime | Mapping[str, datetime]
) -> dict[str, str | None]:
    """Plan each closed task's "completed" event and its order's entry into the next node."""
    words: dict[tuple, str | None] = {}  # (node, deadline, at) -> "SLA met" / "SLA breached by ..."
    texts: dict[datetime, str] = {}
    for r in rows:
        t = at if isinstance(at, datetime) else at[r.order_id]
        when = texts.get(t) or texts.setdefault(t, stored(t))
        key = (r.node, r.deadline, t)
        if key in words:
            said = words[key]
        else:
            said = words[key] = sla_words(cfg, r.node, r.deadline, t) or None
        entries.event(when, "completed", r.order_id, r.node, said)
        entries.enter(
            r.order_id, facts[r.order_id] if facts is not None else None, when, workflow=r.workflow, seq=r.seq + 1
        )
    return {r.order_id: entries.moves[r.order_id][1] for r in rows}


def plannable(cfg: Config, tasks: list) -> bool:
    """Whether ``PlannedMoves`` can plan these tasks' moves without the store (no later node of
    their workflows has a ``when``, which would need the orders' facts)."""
    return not any(needs_facts(cfg, r.workflow, r.seq + 1) for r in tasks)


class PlannedMoves:
    """``complete_tasks`` in two steps, for open tasks the caller holds locked: planned now without
    the store (see ``plannable``), and on PostgreSQL formatted for COPY; ``write`` closes the tasks,
    enters the next nodes, moves the orders and appends the events. ``allocate`` plans a chunk's
    moves on its planning thread while its writing thread writes the chunk before.

    ``moved`` is ``{order_id: node it is now at}`` (None: its workflow is finished).
    """

    def __init__(self, cfg: Config, tasks: list, *, at: datetime, actor: str, postgresql: bool) -> None:
        self.at, self.actor = at, actor
        self.task_ids = sorted(r.id for r in tasks)
        entries = _entries(cfg, actor)
        self.moved = _advance(entries, cfg, tasks, None, at)
        self.entries = entries.format(postgresql=postgresql)

    def write(self, session: Session) -> None:
        if not self.task_ids:
            return
        closed = sum(len(ids) for ids in _close_completed(session, self.task_ids, at=self.at, actor=self.actor))
        if closed != len(self.task_ids):  # the caller holds them locked: cannot happen; refuse rather than guess
            raise Conflict(
                ngettext(
                    "{n} of {total} task was closed by someone else while being completed; "
                    "nothing was written, run the command again",
                    "{n} of {total} tasks were closed by someone else while being completed; "
                    "nothing was written, run the command again",
                    len(self.task_ids),
                ).format(n=len(self.task_ids) - closed, total=len(self.task_ids))
            )
        self.entries.write(session)


def _close_completed(
    session: Session, ids: list[int], *, at: datetime | list[datetime], actor: str
) -> Iterable[Sequence[int]]:
    """The UPDATEs that complete the open tasks among ``ids`` (one on PostgreSQL, IN-list sized on
    SQLite); each gives the ids it closed. ``at``: one time, or each task's (aligned with ``ids``)."""
    if not isinstance(at, datetime):
        yield from _close_completed_at(session, ids, at, actor=actor)
        return
    if not ids:
        return
    if not is_postgresql(session):  # through the driver: SQLAlchemy's handling of the IN lists was most of it
        session.flush()
        raw: Any = session.connection().connection.driver_connection
        for start in range(0, len(ids), CHUNK):
            part = ids[start : start + CHUNK]
            yield [
                r[0]
                for r in raw.execute(
                    "UPDATE task SET status = 'done', outcome = 'completed', completed_at = ?, completed_by = ?, "
                    f"next_action_at = NULL WHERE id IN ({', '.join('?' * len(part))}) AND status = 'open' RETURNING id",
                    [stored(at), actor, *part],
                ).fetchall()
            ]
        return
    yield (
        session.execute(
            sa.update(TASK)
            .where(keyed(session, TASK.c.id, ids), TASK.c.status == "open")
            .values(status="done", outcome="completed", completed_at=at, completed_by=actor, next_action_at=None)
            .returning(TASK.c.id)
        )
        .scalars()
        .all()
    )


def _close_completed_at(session: Session, ids: list[int], times: list[datetime], *, actor: str) -> Iterable:
    """``_close_completed`` with each task's own completion time: one ``UPDATE ... FROM unnest`` on
    PostgreSQL; on SQLite one IN-list UPDATE per time (its statements cost no round trip)."""
    if is_postgresql(session):
        yield (
            session.execute(
                sa.text(
                    "UPDATE task AS t SET status = 'done', outcome = 'completed', completed_at = v.at, "
                    "completed_by = :actor, next_action_at = NULL FROM unnest(CAST(:ids AS bigint[]), "
                    "CAST(:ats AS timestamp[])) AS v(id, at) WHERE t.id = v.id AND t.status = 'open' RETURNING t.id"
                ),
                {"ids": int_array(ids), "ats": text_array(stored(t) for t in times), "actor": actor},
            )
            .scalars()
            .all()
        )
        return
    by_time: dict[datetime, list[int]] = {}
    for task_id, t in zip(ids, times):
        by_time.setdefault(t, []).append(task_id)
    for t, part in by_time.items():
        yield from _close_completed(session, part, at=t, actor=actor)


# --- reject, hold, release, cancel -------------------------------------------------------------


def reject(
    session: Session,
    cfg: Config,
    order_id: str,
    *,
    at: datetime,
    actor: str,
    reason: str,
    outcome: str = "rejected",
    node: str | None = None,
    manual: bool = False,
) -> str | None:
    """Send the order back to the previous node (a fresh task), or on hold at the first node.

    Returns the node the order is now at.
    """
    order = lock_order(session, order_id, at=at, tz=cfg.timezone)
    _open_order(order, "reject")
    task = _require_task(session, order, node, "reject")
    if manual and cfg.nodes.get(task.node) is not None and cfg.nodes[task.node].auto:
        raise Conflict(
            _(
                "node {node} of order {order_id} is automatic ({auto}); advance --reject works on manual nodes only"
            ).format(node=task.node, order_id=order_id, auto=cfg.nodes[task.node].auto)
        )
    if manual and not may_act(session, cfg, task, actor):
        need = " or ".join(assignees(session, task) + ["admin"])
        raise PermissionDenied(
            _("{actor} may not reject {node} of order {order_id}: it needs a member of {need}").format(
                actor=actor, node=task.node, order_id=order_id, need=need
            )
        )
    _close(session, task, status="rejected", outcome=outcome, at=at, actor=actor, note=reason)
    previous = session.execute(
        sa.select(col(Task.node), col(Task.seq))
        .where(col(Task.order_id) == order_id, col(Task.seq) < task.seq, col(Task.status) == "done")
        .order_by(col(Task.seq).desc(), col(Task.id).desc())
        .limit(1)
    ).first()
    entries, when = _entries(cfg, actor), stored(at)
    entries.event(when, "auto_rejected" if outcome == "auto_rejected" else "rejected", order_id, task.node, reason)
    if previous is not None:
        entries.reopen(
            order_id,
            task.workflow,
            previous.node,
            previous.seq,
            when,
            _("sent back from {node}: {reason}").format(node=task.node, reason=reason),
        )
        entries.write(session)
        return previous.node
    # first node: a fresh task there, and the order goes on hold with the reason
    entries.reopen(
        order_id,
        task.workflow,
        task.node,
        task.seq,
        when,
        _("rejected at the first node: {reason}").format(reason=reason),
        held=True,
    )
    entries.write(session)
    session.execute(sa.update(ORDERS).where(ORDERS.c.order_id == order_id).values(status="on_hold"))
    return task.node


def hold(session: Session, cfg: Config, order_id: str, *, at: datetime, actor: str, reason: str) -> None:
    """Pause every SLA clock of the order."""
    order = lock_order(session, order_id, at=at, tz=cfg.timezone)
    _open_order(order, "hold")
    session.execute(
        sa.update(TASK)
        .where(TASK.c.order_id == order_id, TASK.c.status == "open")
        .values(held_at=at, next_action_at=None)
    )
    session.execute(sa.update(ORDERS).where(ORDERS.c.order_id == order_id).values(status="on_hold"))
    audit.record(session, event="held", at=at, actor=actor, order_id=order_id, node=order.node, detail=reason)


def release(session: Session, cfg: Config, order_id: str, *, at: datetime, actor: str) -> None:
    """Resume the clocks with the business time that was left."""
    order = lock_order(session, order_id, at=at, tz=cfg.timezone)
    if order.status != "on_hold":
        raise Conflict(
            _("order {order_id} is {status}, not on hold; nothing to release").format(
                order_id=order_id, status=order.status
            )
        )
    task = current_task(session, order_id, lock=True)
    detail = None
    if task is not None and task.held_at is not None:
        covered = cfg.calendar(task.node).between(task.held_at, at) if at > task.held_at else 0.0
        task.paused_seconds = (task.paused_seconds or 0) + covered
        task.held_at = None
        reschedule(task, cfg)
        detail = _("clock resumes; the hold covered {format_duration} of business time").format(
            format_duration=format_duration(covered)
        )
    order.status = "open"
    session.flush()
    audit.record(session, event="released", at=at, actor=actor, order_id=order_id, node=order.node, detail=detail)


def cancel_tasks(session: Session, order_id: str, *, at: datetime, actor: str, reason: str) -> None:
    """Close the order's open tasks (the order is being cancelled). A held task keeps ``held_at``:
    its clock stopped there, which is what ``breached`` compares with its deadline."""
    session.execute(
        sa.update(TASK)
        .where(TASK.c.order_id == order_id, TASK.c.status == "open")
        .values(
            status="cancelled",
            outcome="cancelled",
            completed_at=at,
            completed_by=actor,
            note=reason,
            next_action_at=None,
        )
    )


def _facts_one(session: Session, order_id: str) -> dict:
    found = order_facts(session, [order_id])
    if not found:
        raise NotFound(_("no order {order_id!r}").format(order_id=order_id))
    return found[0]
