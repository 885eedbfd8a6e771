"""Node transitions: orders enter workflows, tasks open and close, holds pause the clocks.

A task is one visit of an order to a node. Its clocks all count business time in the node's
calendar from ``entered_at``, stretched by ``paused_seconds`` (the business time its holds
covered):

    risk_at  = add(entered_at, warn_at * sla + paused)
    deadline = add(entered_at, sla + paused)
    step k   = add(entered_at, sla + paused + after_k)     # escalation ladder, past the deadline

so a hold adds exactly the business time it covered, before or after the deadline.
``next_action_at`` is the earliest of those the sweep has not yet acted on.

Writers lock the order row (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction is already
exclusive) and close a task with a conditional UPDATE (``... AND status = 'open'``), so two
people or a person and a sweep cannot both complete one task.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ffctl.core import audit
from ffctl.core.bulk import CopyRows, insert_rows, is_postgresql, keyed, text_array, time_texts
from ffctl.core.clock import local
from ffctl.core.config import describe_spec, matches
from ffctl.core.durations import format_duration
from ffctl.core.errors import Conflict, NotFound, PermissionDenied
from ffctl.core.text import command
from ffctl.core.models import Customer, Order, OrderLine, Product, Task, TaskAssignee
from ffctl.i18n import ngettext

CHUNK = 500
ADMIN = "admin"  # the role whose members may act on every node
TASK = Task.__table__
ORDERS = Order.__table__


# --- clocks ----------------------------------------------------------------------------------

def clocks(cfg, node: str, entered_at: datetime, paused: float, sla_state: str, next_step: int) -> dict:
    """risk_at, deadline and next_action_at of a task at ``node`` in the given SLA state."""
    spec = cfg.nodes[node]
    cal = cfg.calendar(node)
    risk_at = _ladder_time(cal, spec, entered_at, paused, 0)
    deadline = _ladder_time(cal, spec, entered_at, paused, 1)
    position = ladder_position(sla_state, next_step)
    if position == 0:
        next_action = risk_at
    elif position == 1:
        next_action = deadline
    elif position - 2 < len(spec.escalation):
        next_action = _ladder_time(cal, spec, entered_at, paused, position)
    else:
        next_action = None
    return {"risk_at": risk_at, "deadline": deadline, "next_action_at": next_action}


def ladder(cfg, node: str, entered_at: datetime, paused: float) -> list[datetime]:
    """Every time the sweep acts on a task, in order: [risk_at, deadline, step 0, step 1, ...]
    (a task in ``sla_state``/``next_step`` is next due at index ``ladder_position``)."""
    spec = cfg.nodes[node]
    cal = cfg.calendar(node)
    return [_ladder_time(cal, spec, entered_at, paused, i) for i in range(2 + len(spec.escalation))]


def ladder_position(sla_state: str, next_step: int) -> int:
    """Where a task in this SLA state stands on its ``ladder``."""
    return 0 if sla_state == "on_track" else 1 if sla_state == "at_risk" else 2 + next_step


def _ladder_time(cal, spec, entered_at: datetime, paused: float, position: int) -> datetime:
    """The formulas above: risk_at (0), the deadline (1), escalation step k (2 + k)."""
    sla = spec.sla_seconds
    if position == 0:
        return cal.add(entered_at, spec.warn_at * sla + paused)
    if position == 1:
        return cal.add(entered_at, sla + paused)
    return cal.add(entered_at, sla + paused + spec.escalation[position - 2].after_seconds)


def stopped_at(task):
    """When a visit's clock stopped, over a task's columns: the start of the hold that pauses it,
    else its completion (or rejection, skip or cancel); NULL while it runs."""
    return sa.func.coalesce(task.held_at, task.completed_at)


def stopped_sql(t: str) -> str:
    """``stopped_at`` as SQL text for a task row aliased ``t``."""
    return _text(stopped_at(SimpleNamespace(held_at=sa.literal_column(f"{t}.held_at"),
                                            completed_at=sa.literal_column(f"{t}.completed_at"))))


def _text(expression) -> str:
    """A SQL expression as text for the reports' raw SQL (the same on both backends)."""
    return str(expression.compile(compile_kwargs={"literal_binds": True}))


def breached(deadline, stop, now):
    """The breach rule (SPEC 9.1), as a SQL condition over a visit's deadline, the time its clock
    stopped (None: still running) and the clock asked about.

    A visit is breached when its clock ran past its deadline: it stopped (completed, rejected,
    cancelled, held) after the deadline, or it still runs at or past it. A fact of the visit's own
    times, whether or not a sweep ran (a sweep only records it: ``sla_state``, the ``breached``
    event). Every count of breaches calls this (reports, facts, bottleneck, ``sla status``, the
    task lists, the demo's summary); ``is_breached`` is the same rule for one visit in Python.
    """
    # never NULL (NOT of it is meaningful): each branch tests the NULL it depends on
    return sa.and_(deadline.is_not(None),
                   sa.or_(sa.and_(stop.is_(None), deadline <= now), sa.and_(stop.is_not(None), stop > deadline)))


def breached_sql(t: str, *, stop: str | None = None, now: str = ":now") -> str:
    """``breached`` as SQL text, for the reports' raw SQL over a visit row aliased ``t`` (``stop``:
    another expression for when its clock stopped, e.g. a fact table's column)."""
    condition = breached(sa.literal_column(f"{t}.deadline"), sa.literal_column(stop or stopped_sql(t)),
                         sa.literal_column(now))
    return f"({_text(condition)})"


def is_breached(deadline: datetime | None, stop: datetime | None, now: datetime) -> bool:
    """``breached`` for one visit in Python."""
    if deadline is None:
        return False
    return deadline <= now if stop is None else stop > deadline


def reschedule(task: Task, cfg) -> None:
    """Recompute a task row's clocks in place (after a release, or a config change)."""
    values = clocks(cfg, task.node, task.entered_at, task.paused_seconds or 0, task.sla_state, task.next_step)
    task.risk_at, task.deadline = values["risk_at"], values["deadline"]
    task.next_action_at = None if task.held_at or task.status != "open" else values["next_action_at"]


def task_view(task, cfg, now: datetime) -> dict:
    """How a task stands at ``now``: state (on_track | at_risk | breached | on_hold) and seconds left.

    Computed from the clocks, so the inbox is right even before the next sweep has run.
    ``seconds_left`` is business time in the node's calendar; negative once breached.
    """
    cal = cfg.calendar(task.node) if task.node in cfg.nodes else None
    if task.held_at is not None:
        state, ref = "on_hold", task.held_at
    else:
        ref = now
        if is_breached(task.deadline, None, now):
            state = "breached"
        elif task.sla_state != "on_track" or (task.risk_at and now >= task.risk_at):
            state = "at_risk"
        else:
            state = "on_track"
    if cal is None or task.deadline is None:
        left = None
    elif ref < task.deadline:
        left = cal.between(ref, task.deadline)
    else:
        left = -cal.between(task.deadline, ref)
    return {"state": state, "seconds_left": None if left is None else round(left)}


# --- order facts (what `match` and `when` look at) -------------------------------------------

def order_facts(session: Session, order_ids: Iterable[str]) -> list[dict]:
    """The attributes workflows match on, for each order, read in chunks."""
    ids = list(dict.fromkeys(order_ids))
    facts: dict[str, dict] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        rows = session.execute(
            sa.select(
                Order.order_id, Order.created_at, Order.channel, Order.region, Order.customer,
                Order.sales_rep, Order.priority, Customer.tier, Customer.region.label("customer_region"),
            )
            .join(Customer, Customer.customer == Order.customer)
            .where(keyed(session, Order.order_id, chunk))
        ).all()
        for r in rows:
            facts[r.order_id] = {
                "order_id": r.order_id, "created_at": r.created_at, "channel": r.channel,
                "region": r.region or r.customer_region, "customer": r.customer, "sales_rep": r.sales_rep,
                "priority": r.priority, "tier": r.tier, "has_custom_items": False,
                "categories": set(), "skus": set(),
            }
        lines = session.execute(
            sa.select(OrderLine.order_id, OrderLine.sku, Product.category, Product.custom)
            .join(Product, Product.sku == OrderLine.sku)
            .where(keyed(session, OrderLine.order_id, chunk))
        ).all()
        for line in lines:
            f = facts[line.order_id]
            f["skus"].add(line.sku)
            if line.category:
                f["categories"].add(line.category)
            f["has_custom_items"] = f["has_custom_items"] or bool(line.custom)
    return [facts[i] for i in ids if i in facts]


def _match_attrs(facts: dict) -> dict:
    attrs = dict(facts)
    attrs["category"] = facts.get("categories", set())
    attrs["sku"] = facts.get("skus", set())
    return attrs


# --- entering nodes ----------------------------------------------------------------------------

class _Writer:
    """Collects task inserts, order updates and events, and writes them in bulk."""

    def __init__(self, cfg, at_default: datetime | None, actor: str) -> None:
        self.cfg, self.actor = cfg, actor
        self.tasks: list[dict] = []
        self.orders: dict[str, tuple[str | None, str | None]] = {}
        self.events: list[dict] = []
        self._entering: dict[tuple, tuple[dict, str]] = {}  # (node, at) -> (its clocks, "entered" detail)

    def event(self, event: str, at: datetime, order_id: str, node: str | None = None, detail: str | None = None,
              actor: str | None = None) -> None:
        self.events.append({"event": event, "at": at, "actor": actor or self.actor, "order_id": order_id,
                            "node": node, "detail": detail})

    def enter_from(self, facts: dict, workflow: str, seq: int, at: datetime) -> str | None:
        """Open the first applicable node at or after ``seq``; record skips. Returns the node or None."""
        nodes = next(wf.nodes for wf in self.cfg.workflows if wf.name == workflow)
        attrs = None
        order_id = facts["order_id"]
        for position in range(seq, len(nodes)):
            node = nodes[position]
            spec = self.cfg.nodes[node]
            if spec.when:
                attrs = attrs or _match_attrs(facts)
                if not matches(spec.when, attrs):
                    self.tasks.append(self._task(order_id, workflow, node, position, at, status="skipped"))
                    self.event("skipped", at, order_id, node, f"skipped: the order does not match {describe_spec(spec.when)}")
                    continue
            self.tasks.append(self._task(order_id, workflow, node, position, at))
            self.orders[order_id] = (workflow, node)
            self.event("entered", at, order_id, node, self._entered(node, at)[1])
            return node
        self.orders[order_id] = (workflow, None)
        return None

    def _entered(self, node: str, at: datetime) -> tuple[dict, str]:
        """The clocks of a fresh task at ``node`` entered at ``at``, and its "entered" event detail
        (computed once per node and time: a set-based move enters many orders at one time)."""
        key = (node, at)
        found = self._entering.get(key)
        if found is None:
            spec = self.cfg.nodes[node]
            times = clocks(self.cfg, node, at, 0.0, "on_track", 0)
            owner = f"owner {spec.owner}" if spec.owner else f"auto: {spec.auto}"
            due = local(times["deadline"], self.cfg.timezone).strftime("%Y-%m-%d %H:%M")
            found = self._entering[key] = (times, f"{owner}; SLA {format_duration(spec.sla_seconds)}, due {due}")
        return found

    def _task(self, order_id: str, workflow: str, node: str, seq: int, at: datetime, status: str = "open") -> dict:
        spec = self.cfg.nodes[node]
        row = {
            "order_id": order_id, "workflow": workflow, "node": node, "seq": seq, "status": status,
            "owner": spec.owner, "entered_at": at, "sla_seconds": spec.sla_seconds, "sla_state": "on_track",
            "held_at": None, "paused_seconds": 0.0, "next_step": 0, "escalation_level": 0,
            "completed_at": None, "completed_by": None, "outcome": None, "note": None,
        }
        row.update(self._entered(node, at)[0])
        if status == "skipped":
            row.update(completed_at=at, completed_by=self.actor, outcome="skipped", next_action_at=None)
        return row

    def flush(self, session: Session) -> None:
        if len(self.tasks) >= BULK_ROWS or len(self.orders) >= BULK_ROWS:
            _bulk_flush(session, self.tasks, self.orders)
        else:
            if self.tasks:
                session.execute(sa.insert(TASK), self.tasks)
            if self.orders:
                session.execute(
                    sa.update(ORDERS).where(ORDERS.c.order_id == sa.bindparam("oid"))
                    .values(workflow=sa.bindparam("wf"), node=sa.bindparam("nd")),
                    [{"oid": oid, "wf": wf, "nd": node} for oid, (wf, node) in self.orders.items()],
                )
        audit.record_many(session, self.events)
        self.tasks, self.orders, self.events = [], {}, []


BULK_ROWS = 200  # from this many rows on, _Writer.flush writes through the driver


def _bulk_flush(session: Session, tasks: list[dict], orders: dict) -> None:
    """Task inserts and order moves without per-row SQLAlchemy processing (a set-based
    ``complete_auto`` of 70k orders spent most of its time there): COPY and one
    ``UPDATE ... FROM unnest`` on PostgreSQL, the driver's executemany on SQLite. Rows go in
    order id order, so each index is walked once in order rather than at random."""
    session.flush()
    pg = is_postgresql(session)
    if tasks:
        cols, rows = _task_rows(tasks)
        if not pg:
            stamp = time_texts()

            def cell(v):
                return stamp(v) if v.__class__ is datetime else v

            rows = [tuple(map(cell, r)) for r in rows]
        insert_rows(session, "task", cols, rows)
    if orders:
        ids = sorted(orders)
        if pg:
            session.execute(_MOVE_ORDERS, _order_moves(orders))
        else:
            session.connection().connection.driver_connection.executemany(
                "UPDATE orders SET workflow = ?, node = ? WHERE order_id = ?",
                [(orders[i][0], orders[i][1], i) for i in ids])


# PostgreSQL: orders to (workflow, node) in one statement (``_order_moves`` gives its parameters)
_MOVE_ORDERS = sa.text(
    "UPDATE orders AS o SET workflow = v.wf, node = v.nd FROM unnest(CAST(:ids AS text[]), "
    "CAST(:wfs AS text[]), CAST(:nds AS text[])) AS v(id, wf, nd) WHERE o.order_id = v.id")


def _order_moves(orders: dict[str, tuple[str | None, str | None]]) -> dict[str, str]:
    ids = sorted(orders)
    return {"ids": text_array(ids), "wfs": text_array(orders[i][0] for i in ids),
            "nds": text_array(orders[i][1] for i in ids)}


def _close_completed(session: Session, ids: list[int], *, at: datetime, actor: str) -> Iterable:
    """The UPDATEs that complete the open tasks among ``ids`` (one on PostgreSQL, IN-list sized on
    SQLite); each RETURNs the ids it closed."""
    size = max(len(ids), 1) if is_postgresql(session) else CHUNK
    for start in range(0, len(ids), size):
        yield session.execute(
            sa.update(TASK).where(keyed(session, TASK.c.id, ids[start:start + size]), TASK.c.status == "open")
            .values(status="done", outcome="completed", completed_at=at, completed_by=actor, next_action_at=None)
            .returning(TASK.c.id))


def _task_rows(tasks: list[dict]) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of planned task dicts, in order id order (each index walked once, in order)."""
    cols = list(tasks[0]) if tasks else []
    return cols, sorted((tuple(t[c] for c in cols) for t in tasks), key=lambda r: r[0])


def plan_entries(cfg, orders: list[dict], *, actor: str) -> _Writer:
    """Plan (not write) the workflow entry of new orders: tasks, order (workflow, node), events.

    Imports use this to write the rows with their own bulk path; ``enter_orders`` writes them.
    """
    writer = _Writer(cfg, None, actor)
    for facts in orders:
        at = facts["created_at"]
        wf = cfg.workflow_for(_match_attrs(facts))
        writer.event("created", at, facts["order_id"], None,
                     f"workflow {wf.name}" if wf else "no workflow matches this order")
        if wf is None:
            writer.orders[facts["order_id"]] = (None, None)
            continue
        writer.enter_from(facts, wf.name, 0, at)
    return writer


def enter_orders(session: Session, cfg, orders: list[dict], *, actor: str) -> None:
    """New orders enter their workflow's first applicable node at their created_at."""
    for start in range(0, len(orders), 5000):
        plan_entries(cfg, orders[start:start + 5000], actor=actor).flush(session)


# --- reading ---------------------------------------------------------------------------------

def _lock_order(session: Session, order_id: str, *, at: datetime, tz: str) -> Order:
    """Lock the order a command is about to change at ``at``; refused if its timeline would run
    backwards (``audit.refuse_earlier``)."""
    stmt = sa.select(Order).where(Order.order_id == order_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    order = session.execute(stmt).scalar_one_or_none()
    if order is None:
        raise NotFound(f"no order {order_id!r}", hint="`ffctl order list` shows the orders in the store.")
    audit.refuse_earlier(session, order_id, at, tz)
    return order


def current_task(session: Session, order_id: str, *, lock: bool = False) -> Task | None:
    stmt = sa.select(Task).where(Task.order_id == order_id, Task.status == "open")
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def assignees(session: Session, task: Task) -> list[str]:
    """Roles a task is assigned to: its owner, then roles it was escalated to."""
    extra = session.execute(
        sa.select(TaskAssignee.role).where(TaskAssignee.task_id == task.id).order_by(TaskAssignee.added_at)
    ).scalars().all()
    roles = [task.owner] if task.owner else []
    return roles + [r for r in extra if r not in roles]


def may_act(session: Session, cfg, task: Task, user: str) -> bool:
    """Members of the owner role, of roles the task escalated to, and of ``admin``."""
    return is_admin(cfg, user) or any(user in cfg.roles[r].members for r in assignees(session, task) if r in cfg.roles)


def is_admin(cfg, user: str) -> bool:
    """Members of the ``admin`` role may act on every node (and see every task)."""
    return ADMIN in cfg.roles and user in cfg.roles[ADMIN].members


def _open_order(order: Order, verb: str) -> None:
    if order.status == "on_hold":
        raise Conflict(f"order {order.order_id} is on hold; cannot {verb} it",
                       hint=f"Release it first: `{command('order', 'release', order.order_id)}`.")
    if order.status != "open":
        raise Conflict(f"order {order.order_id} is {order.status}; cannot {verb} it")


def _require_task(session: Session, order: Order, node: str | None, verb: str) -> Task:
    task = current_task(session, order.order_id, lock=True)
    if task is None:
        raise Conflict(f"order {order.order_id} has no open node to {verb} (its workflow is finished)")
    if node is not None and task.node != node:
        raise Conflict(f"order {order.order_id} is at node {task.node}, not {node}; nothing was changed")
    return task


# --- transitions -----------------------------------------------------------------------------

def _close(session: Session, task: Task, *, status: str, outcome: str, at: datetime, actor: str,
           note: str | None) -> None:
    done = session.execute(
        sa.update(TASK)
        .where(TASK.c.id == task.id, TASK.c.status == "open")
        .values(status=status, outcome=outcome, completed_at=at, completed_by=actor, note=note, next_action_at=None)
    ).rowcount
    if not done:
        raise Conflict(f"order {task.order_id}: node {task.node} was closed by someone else just now; nothing was changed")
    # the object now says what the UPDATE wrote, without reading the row back or marking it dirty
    for name, value in (("status", status), ("outcome", outcome), ("completed_at", at), ("completed_by", actor),
                        ("note", note), ("next_action_at", None)):
        set_committed_value(task, name, value)


def _sla_words(cfg, task: Task, at: datetime) -> str:
    if task.deadline is None:
        return ""
    if at <= task.deadline:
        return "SLA met"
    late = cfg.calendar(task.node).between(task.deadline, at)
    return f"SLA breached by {format_duration(late)}"


def complete(session: Session, cfg, order_id: str, *, at: datetime, actor: str, outcome: str = "completed",
             node: str | None = None, note: str | None = None, manual: bool = False) -> str | None:
    """Complete the order's current node and enter the next; returns the new node (None: finished).

    ``manual=True`` is a person's ``advance``: only manual nodes, only people allowed on the task.
    """
    order = _lock_order(session, order_id, at=at, tz=cfg.timezone)
    _open_order(order, "advance")
    task = _require_task(session, order, node, "complete")
    if manual:
        spec = cfg.nodes.get(task.node)
        if spec is not None and spec.auto:
            by = "ffctl allocate" if spec.auto == "allocate" else "ffctl ship"
            raise Conflict(f"node {task.node} of order {order_id} is completed by `{by}`, not by advance")
        if not may_act(session, cfg, task, actor):
            need = " or ".join(assignees(session, task) + ["admin"])
            raise PermissionDenied(f"{actor} may not complete {task.node} of order {order_id}: it needs a member of {need}")
    words = _sla_words(cfg, task, at)
    _close(session, task, status="done", outcome=outcome, at=at, actor=actor, note=note)
    event = "auto_approved" if outcome == "auto_approved" else "completed"
    detail = "; ".join(x for x in (words, note) if x)
    writer = _Writer(cfg, at, actor)
    writer.event(event, at, order_id, task.node, detail or None)
    facts = _facts_one(session, order_id) if _needs_facts(cfg, task.workflow, task.seq + 1) else {"order_id": order_id}
    nxt = writer.enter_from(facts, task.workflow, task.seq + 1, at)
    writer.flush(session)
    return nxt


def complete_auto(session: Session, cfg, order_ids: Iterable[str], kind: str, *, at: datetime, actor: str) -> list[str]:
    """Complete the current ``auto = kind`` node of each listed order (set-based); returns those moved."""
    nodes = [name for name, spec in cfg.nodes.items() if spec.auto == kind]
    ids = list(dict.fromkeys(order_ids))
    moved: list[str] = []
    if not nodes:
        return moved
    size = max(len(ids), 1) if is_postgresql(session) else CHUNK  # one array parameter on PostgreSQL
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        rows = session.execute(
            sa.select(TASK.c.id, TASK.c.order_id, TASK.c.node, TASK.c.workflow, TASK.c.seq, TASK.c.deadline)
            .join(ORDERS, ORDERS.c.order_id == TASK.c.order_id)
            .where(keyed(session, TASK.c.order_id, chunk), TASK.c.status == "open", TASK.c.node.in_(nodes),
                   TASK.c.held_at.is_(None), ORDERS.c.status == "open")
        ).all()
        moved.extend(complete_tasks(session, cfg, rows, at=at, actor=actor))
    return moved


def complete_tasks(session: Session, cfg, tasks: list, *, at: datetime, actor: str) -> dict[str, str | None]:
    """Complete open tasks whose orders the caller has checked (open, not held) and enter each
    order's next node; set-based. ``tasks`` are rows with id, order_id, node, workflow, seq and
    deadline (a caller that has read and locked them, like ``allocate``, saves reading them again).

    Returns ``{order_id: node it is now at}`` (None: its workflow is finished) for the tasks this
    transaction closed, in the given order: one conditional UPDATE whose RETURNING says which, so
    a concurrent completer's tasks are neither advanced twice nor re-entered.
    """
    if not tasks:
        return {}
    closed: set[int] = set()
    for result in _close_completed(session, [r.id for r in tasks], at=at, actor=actor):
        closed.update(result.scalars())
    rows = [r for r in tasks if r.id in closed]
    if not rows:
        return {}
    if any(_needs_facts(cfg, r.workflow, r.seq + 1) for r in rows):
        facts = {f["order_id"]: f for f in order_facts(session, [r.order_id for r in rows])}
    else:
        facts = {r.order_id: {"order_id": r.order_id} for r in rows}
    writer = _Writer(cfg, at, actor)
    moved = _advance(writer, cfg, rows, facts, at)
    writer.flush(session)
    return moved


def _advance(writer: _Writer, cfg, rows: list, facts: dict[str, dict], at: datetime) -> dict[str, str | None]:
    """Plan each closed task's "completed" event and its order's entry into the next node."""
    late_words: dict[tuple, str] = {}  # (node, deadline) -> "SLA met" / "SLA breached by ..."
    for r in rows:
        words = late_words.get((r.node, r.deadline))
        if words is None:
            words = late_words[(r.node, r.deadline)] = "SLA met" if r.deadline is None or at <= r.deadline else \
                f"SLA breached by {format_duration(cfg.calendar(r.node).between(r.deadline, at))}"
        writer.event("completed", at, r.order_id, r.node, words)
        writer.enter_from(facts[r.order_id], r.workflow, r.seq + 1, at)
    return {r.order_id: writer.orders[r.order_id][1] for r in rows}


def plannable(cfg, tasks: list) -> bool:
    """Whether ``PlannedMoves`` can plan these tasks' moves without the store (no later node of
    their workflows has a ``when``, which would need the orders' facts)."""
    return not any(_needs_facts(cfg, r.workflow, r.seq + 1) for r in tasks)


class PlannedMoves:
    """``complete_tasks`` in two steps, for open tasks the caller holds locked: planned now without
    the store (see ``plannable``), and on PostgreSQL formatted for COPY; ``write`` closes the tasks,
    enters the next nodes, moves the orders and appends the events. ``allocate`` plans a chunk's
    moves on its planning thread while its writing thread writes the chunk before.

    ``moved`` is ``{order_id: node it is now at}`` (None: its workflow is finished).
    """

    def __init__(self, cfg, tasks: list, *, at: datetime, actor: str, postgresql: bool) -> None:
        self.at, self.actor = at, actor
        self.task_ids = sorted(r.id for r in tasks)
        writer = _Writer(cfg, at, actor)
        self.moved = _advance(writer, cfg, tasks, {r.order_id: {"order_id": r.order_id} for r in tasks}, at)
        self.writer, self.tasks = writer, None
        if postgresql:
            self.tasks = CopyRows("task", *_task_rows(writer.tasks))
            self.orders = _order_moves(writer.orders)
            self.events = audit.prepare_many(writer.events, postgresql=True)
            self.writer = None

    def write(self, session: Session) -> None:
        if not self.task_ids:
            return
        closed = sum(len(result.all())
                     for result in _close_completed(session, self.task_ids, at=self.at, actor=self.actor))
        if closed != len(self.task_ids):  # the caller holds them locked: cannot happen; refuse rather than guess
            raise Conflict(ngettext("{n} of {total} task was closed by someone else while being completed; "
                                    "nothing was written, run the command again",
                                    "{n} of {total} tasks were closed by someone else while being completed; "
                                    "nothing was written, run the command again",
                                    len(self.task_ids)).format(n=len(self.task_ids) - closed, total=len(self.task_ids)))
        if self.writer is not None:
            self.writer.flush(session)
            return
        self.tasks.write(session)
        session.execute(_MOVE_ORDERS, self.orders)
        self.events.write(session)


def reject(session: Session, cfg, order_id: str, *, at: datetime, actor: str, reason: str,
           outcome: str = "rejected", node: str | None = None, manual: bool = False) -> str | None:
    """Send the order back to the previous node (a fresh task), or on hold at the first node.

    Returns the node the order is now at.
    """
    order = _lock_order(session, order_id, at=at, tz=cfg.timezone)
    _open_order(order, "reject")
    task = _require_task(session, order, node, "reject")
    if manual and cfg.nodes.get(task.node) is not None and cfg.nodes[task.node].auto:
        raise Conflict(f"node {task.node} of order {order_id} is automatic ({cfg.nodes[task.node].auto}); "
                       "advance --reject works on manual nodes only")
    if manual and not may_act(session, cfg, task, actor):
        need = " or ".join(assignees(session, task) + ["admin"])
        raise PermissionDenied(f"{actor} may not reject {task.node} of order {order_id}: it needs a member of {need}")
    _close(session, task, status="rejected", outcome=outcome, at=at, actor=actor, note=reason)
    previous = session.execute(
        sa.select(Task.node, Task.seq).where(Task.order_id == order_id, Task.seq < task.seq, Task.status == "done")
        .order_by(Task.seq.desc(), Task.id.desc()).limit(1)
    ).first()
    writer = _Writer(cfg, at, actor)
    writer.event("auto_rejected" if outcome == "auto_rejected" else "rejected", at, order_id, task.node, reason)
    if previous is not None:
        writer.tasks.append(writer._task(order_id, task.workflow, previous.node, previous.seq, at))
        writer.orders[order_id] = (task.workflow, previous.node)
        writer.event("entered", at, order_id, previous.node, f"sent back from {task.node}: {reason}")
        writer.flush(session)
        return previous.node
    # first node: a fresh task there, and the order goes on hold with the reason
    writer.tasks.append(writer._task(order_id, task.workflow, task.node, task.seq, at))
    writer.tasks[-1].update(held_at=at, next_action_at=None)
    writer.orders[order_id] = (task.workflow, task.node)
    writer.event("held", at, order_id, task.node, f"rejected at the first node: {reason}")
    writer.flush(session)
    session.execute(sa.update(ORDERS).where(ORDERS.c.order_id == order_id).values(status="on_hold"))
    return task.node


def hold(session: Session, cfg, order_id: str, *, at: datetime, actor: str, reason: str) -> None:
    """Pause every SLA clock of the order."""
    order = _lock_order(session, order_id, at=at, tz=cfg.timezone)
    _open_order(order, "hold")
    session.execute(
        sa.update(TASK).where(TASK.c.order_id == order_id, TASK.c.status == "open")
        .values(held_at=at, next_action_at=None)
    )
    session.execute(sa.update(ORDERS).where(ORDERS.c.order_id == order_id).values(status="on_hold"))
    audit.record(session, event="held", at=at, actor=actor, order_id=order_id, node=order.node, detail=reason)


def release(session: Session, cfg, order_id: str, *, at: datetime, actor: str) -> None:
    """Resume the clocks with the business time that was left."""
    order = _lock_order(session, order_id, at=at, tz=cfg.timezone)
    if order.status != "on_hold":
        raise Conflict(f"order {order_id} is {order.status}, not on hold; nothing to release")
    task = current_task(session, order_id, lock=True)
    detail = None
    if task is not None and task.held_at is not None:
        covered = cfg.calendar(task.node).between(task.held_at, at) if at > task.held_at else 0.0
        task.paused_seconds = (task.paused_seconds or 0) + covered
        task.held_at = None
        reschedule(task, cfg)
        detail = f"clock resumes; the hold covered {format_duration(covered)} of business time"
    order.status = "open"
    session.flush()
    audit.record(session, event="released", at=at, actor=actor, order_id=order_id, node=order.node, detail=detail)


def cancel_tasks(session: Session, order_id: str, *, at: datetime, actor: str, reason: str) -> None:
    """Close the order's open tasks (the order is being cancelled). A held task keeps ``held_at``:
    its clock stopped there, which is what ``breached`` compares with its deadline."""
    session.execute(
        sa.update(TASK).where(TASK.c.order_id == order_id, TASK.c.status == "open")
        .values(status="cancelled", outcome="cancelled", completed_at=at, completed_by=actor,
                note=reason, next_action_at=None)
    )


def _needs_facts(cfg, workflow: str, seq: int) -> bool:
    """Whether a node from ``seq`` on has a ``when`` (only then are the order's facts read)."""
    nodes = next((wf.nodes for wf in cfg.workflows if wf.name == workflow), ())
    return any(cfg.nodes[n].when for n in nodes[seq:] if n in cfg.nodes)


def _facts_one(session: Session, order_id: str) -> dict:
    found = order_facts(session, [order_id])
    if not found:
        raise NotFound(f"no order {order_id!r}")
    return found[0]
