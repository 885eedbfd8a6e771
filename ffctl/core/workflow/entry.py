"""Entering nodes: the one planner of the tasks, order moves and events an entry writes.

An order enters a workflow (the first whose ``match`` fits its routing facts) at its first node,
or moves on from a completed node; it opens the first node from there whose ``when`` fits,
recording each node it skips. Imports (new orders), the demo (through imports), ``complete`` and
``allocate`` (moves to the next node) and ``reject`` (back to a node) all plan here.

Planned as rows of stored values ready for ``bulk.insert_rows``/COPY, with each route decided once
per distinct combination of the facts the config reads and each task's clocks computed once per
(node, instant its clock starts): an import plans tens of thousands of orders a batch.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit, csvio
from ffctl.core.bulk import Rows, text_array
from ffctl.core.calendar import WALL_CLOCK
from ffctl.core.config import describe_spec, matches
from ffctl.core.durations import format_duration
from ffctl.core.store import is_postgresql
from ffctl.core.workflow.clocks import clocks
from ffctl.core.workflow.routing import match_attrs, workflow_nodes
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config

# A planned task's columns that differ row by row, and what they all have (given once)
_TASK = ("order_id", "workflow", "node", "seq", "owner", "entered_at", "sla_seconds")  # every planned task's
OPEN_TASK = (*_TASK, "risk_at", "deadline", "next_action_at")
SKIPPED_TASK = (*_TASK, "completed_at", "risk_at", "deadline")
HELD_TASK = (*OPEN_TASK, "held_at")
_NEW_TASK = {"sla_state": "on_track", "paused_seconds": 0.0, "next_step": 0, "escalation_level": 0, "note": None}
_OPEN = {"status": "open", **_NEW_TASK, "completed_at": None, "completed_by": None, "outcome": None}
OPEN_TASK_FIXED = {**_OPEN, "held_at": None}
_MEMO_LIMIT = 20_000  # entries a memo may hold before it starts over (bounded memory)
_ORDER_KEYS = ("channel", "region", "tier", "customer", "sales_rep", "priority", "has_custom_items")
_MICROSECOND = timedelta(microseconds=1)

stored = csvio.stored_time  # an aware time as the store keeps it (the planner's rows carry these texts)


class EntryPlanner:
    """Routes and clocks, remembered for the life of one config (an import keeps one per run)."""

    def __init__(self, cfg: Config, actor: str) -> None:
        keys: set[str] = set()
        for wf in cfg.workflows:
            keys.update(wf.match)
        for spec in cfg.nodes.values():
            keys.update(spec.when)
        self.cfg, self.actor = cfg, actor
        self.by_line = bool({"category", "sku"} & keys)
        used = [k for k in _ORDER_KEYS if k in keys]  # the order-level facts a route depends on
        self.pick = (
            (lambda facts: ())
            if not used
            else (itemgetter(*used) if len(used) > 1 else (lambda facts, k=used[0]: (facts[k],)))
        )
        self.routes: dict[tuple, tuple] = {}
        self.clocks: dict[tuple[str, datetime], tuple[str, str, str]] = {}
        self.entered: dict[tuple[str, str], tuple[str, str, str]] = {}  # (node, at) -> the same, exactly
        self.calendars: dict[str, tuple] = {}  # node -> (its clock, whether closed hours may share a start)
        from ffctl.core.clock import zone

        self._zone = zone(cfg.timezone)  # the entered event shows due times there

    def begin(self) -> Entries:
        return Entries(self, stored(datetime.now(timezone.utc)))

    def route(self, facts: dict | None, workflow: str | None, seq: int) -> tuple:
        """(workflow or None, detail of the created event, steps, node the order waits at) for an
        order entering ``workflow`` at ``seq`` (None: the workflow its facts match, from its
        start). Each step is (node, seq, skipped, owner, sla_seconds, event detail or its prefix).
        ``facts`` None: the nodes from ``seq`` on have no ``when`` (``routing.needs_facts``)."""
        key: tuple
        if facts is None:
            key = (workflow, seq)
        else:
            key = (workflow, seq, self.pick(facts))
            if self.by_line:
                key += (frozenset(facts["skus"]), frozenset(facts["categories"]))
        found = self.routes.get(key)
        if found is None:
            if len(self.routes) >= _MEMO_LIMIT:
                self.routes.clear()
            found = self.routes[key] = self._route(match_attrs(facts) if facts is not None else {}, workflow, seq)
        return found

    def path(self, facts: dict) -> tuple[str | None, tuple[str, ...]]:
        """The workflow an order with these facts enters and every node it would visit, its entry
        routed on node after node as the order completes each (``sla replay`` compares two configs')."""
        workflow, _created, steps, node = self.route(facts, None, 0)
        visited = [step[0] for step in steps if not step[2]]
        while node is not None:
            _wf, _detail, steps, node = self.route(facts, workflow, steps[-1][1] + 1)
            visited += [step[0] for step in steps if not step[2]]
        return workflow, tuple(visited)

    def _route(self, attrs: dict, workflow: str | None, seq: int) -> tuple:
        cfg = self.cfg
        if workflow is None:
            wf = cfg.workflow_for(attrs)
            if wf is None:
                return None, _("no workflow matches this order"), (), None
            workflow, nodes = wf.name, wf.nodes
        else:
            nodes = workflow_nodes(cfg, workflow)
        steps = []
        for position in range(seq, len(nodes)):
            node = nodes[position]
            spec = cfg.nodes[node]
            if spec.when and not matches(spec.when, attrs):
                steps.append(
                    (
                        node,
                        position,
                        True,
                        spec.owner,
                        spec.sla_seconds,
                        _("skipped: the order does not match {when}").format(when=describe_spec(spec.when)),
                    )
                )
                continue
            steps.append((node, position, False, spec.owner, spec.sla_seconds, self.entered_prefix(node)))
            return workflow, _("workflow {workflow}").format(workflow=workflow), tuple(steps), node
        return workflow, _("workflow {workflow}").format(workflow=workflow), tuple(steps), None

    def entered_prefix(self, node: str) -> str:
        """The "entered" event's detail up to its due time."""
        spec = self.cfg.nodes[node]
        owner = _("owner {owner}").format(owner=spec.owner) if spec.owner else _("auto: {auto}").format(auto=spec.auto)
        return _("{owner}; SLA {sla}, due ").format(owner=owner, sla=format_duration(spec.sla_seconds))

    def clock(self, node: str, at: str) -> tuple[str, str, str]:
        """(risk_at, deadline, the deadline as the entered event shows it) of a task entered at ``at``
        (stored text), by ``clocks.clocks``.

        Remembered per instant the clock starts from: every order that arrives while a node's
        calendar is closed (nights, weekends: most of the week) starts at its next opening and
        gets the same deadlines, so those cost one calendar step instead of two and the texts."""
        exact = self.entered
        found = exact.get((node, at))  # a move enters every order of a command at its one clock
        if found is not None:
            return found
        entered = csvio.from_stored(at)
        start = self._start(node, entered)
        memo = self.clocks
        found = memo.get((node, start))
        if found is None:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            c = clocks(self.cfg, node, entered, 0.0, "on_track", 0)
            found = memo[(node, start)] = (
                stored(c["risk_at"]),
                stored(c["deadline"]),
                c["deadline"].astimezone(self._zone).isoformat(" ", "minutes")[:16],
            )
        if len(exact) >= _MEMO_LIMIT:
            exact.clear()
        exact[(node, at)] = found
        return found

    def _start(self, node: str, entered: datetime) -> datetime:
        """The instant ``node``'s SLA clock starts counting for a task entered at ``entered``: its
        calendar's next opening when closed then (adding business time from either instant gives
        the same deadline), else ``entered``."""
        found = self.calendars.get(node)
        if found is None:
            spec = self.cfg.nodes[node]
            cal = self.cfg.calendar(node)
            # a zero duration returns its start as it is: only positive ones may share a start
            counts = cal is not WALL_CLOCK and spec.sla_seconds > 0 and spec.warn_at > 0
            found = self.calendars[node] = (cal, counts)
        cal, counts = found
        if not counts:
            return entered
        return cal.add(entered, 1e-6) - _MICROSECOND  # open: entered itself; closed: the next opening


class Entries:
    """The tasks, order moves and events of one write: planned by ``enter``/``reopen``/``event``,
    written by ``write`` (in the caller's transaction), or formatted for COPY ahead by ``format``."""

    def __init__(self, planner: EntryPlanner, wall: str) -> None:
        self.planner, self.wall = planner, wall
        actor = planner.actor
        self.opened = Rows("task", OPEN_TASK, OPEN_TASK_FIXED)
        self.skipped = Rows(
            "task",
            SKIPPED_TASK,
            {
                "status": "skipped",
                **_NEW_TASK,
                "held_at": None,
                "completed_by": actor,
                "outcome": "skipped",
                "next_action_at": None,
            },
        )
        self.held = Rows("task", HELD_TASK, _OPEN)
        self.events = audit.EventRows(actor, wall)
        self.moves: dict[str, tuple[str | None, str | None]] = {}  # order -> (workflow, node) it is now at
        self._formatted: tuple | None = None

    def enter(
        self, order_id: str, facts: dict | None, at: str, *, workflow: str | None = None, seq: int = 0
    ) -> tuple[str | None, str | None]:
        """Plan an order's entry at ``at`` (stored text): into the workflow its facts match, with its
        "created" event (``workflow`` None), or into ``workflow`` from node ``seq`` on. Returns the
        (workflow, node) it is now at (node None: the workflow is finished, or none matched)."""
        planner = self.planner
        fresh = workflow is None
        workflow, created, steps, node = planner.route(facts, workflow, seq)
        events = self.events
        if fresh:
            events.add(at, "created", order_id, None, created)
        for step, position, skipped, owner, sla, detail in steps:
            risk_at, deadline, due = planner.clock(step, at)
            if skipped:
                self.skipped.rows.append((order_id, workflow, step, position, owner, at, sla, at, risk_at, deadline))
                events.add(at, "skipped", order_id, step, detail)
            else:
                self.opened.rows.append(
                    (order_id, workflow, step, position, owner, at, sla, risk_at, deadline, risk_at)
                )
                events.add(at, "entered", order_id, step, detail + due)
        self.moves[order_id] = (workflow, node)
        return workflow, node

    def reopen(
        self, order_id: str, workflow: str, node: str, seq: int, at: str, detail: str, *, held: bool = False
    ) -> None:
        """A fresh task at ``node`` (a rejected order sent back), held from ``at`` with ``held``."""
        spec = self.planner.cfg.nodes[node]
        risk_at, deadline, _ = self.planner.clock(node, at)
        if held:
            self.held.rows.append(
                (order_id, workflow, node, seq, spec.owner, at, spec.sla_seconds, risk_at, deadline, None, at)
            )
            self.events.add(at, "held", order_id, node, detail)
        else:
            self.opened.rows.append(
                (order_id, workflow, node, seq, spec.owner, at, spec.sla_seconds, risk_at, deadline, risk_at)
            )
            self.events.add(at, "entered", order_id, node, detail)
        self.moves[order_id] = (workflow, node)

    def event(self, at: str, event: str, order_id: str, node: str | None = None, detail: str | None = None) -> None:
        self.events.add(at, event, order_id, node, detail)

    def tasks(self) -> list[Rows]:
        """The planned tasks, each table part in order id order (each index walked once, in order)."""
        parts = [p for p in (self.skipped, self.opened, self.held) if p.rows]
        for part in parts:
            part.rows.sort(key=_ORDER_ID)
        return parts

    def task_count(self) -> int:
        return len(self.skipped) + len(self.opened) + len(self.held)

    def format(self, *, postgresql: bool) -> Entries:
        """On PostgreSQL, make the COPY text now (a planning thread), so that ``write`` only sends."""
        if postgresql:
            self._formatted = ([p.formatted() for p in self.tasks()], _order_moves(self.moves), self.events.formatted())
        return self

    def write(self, session: Session, *, move_orders: bool = True) -> None:
        """Insert the tasks, move the orders to their new (workflow, node) (``move_orders``: orders
        an import inserts carry theirs), append the events."""
        if self._formatted is not None:
            tasks, moves, events = self._formatted
            for part in tasks:
                part.write(session)
            if move_orders and self.moves:
                session.execute(_MOVE_ORDERS, moves)
            events.write(session)
            return
        for part in self.tasks():
            part.write(session)
        if move_orders:
            write_moves(session, self.moves)
        self.events.write(session)


_ORDER_ID = itemgetter(0)


# PostgreSQL: orders to (workflow, node) in one statement (``_order_moves`` gives its parameters)
_MOVE_ORDERS = sa.text(
    "UPDATE orders AS o SET workflow = v.wf, node = v.nd FROM unnest(CAST(:ids AS text[]), "
    "CAST(:wfs AS text[]), CAST(:nds AS text[])) AS v(id, wf, nd) WHERE o.order_id = v.id"
)


def _order_moves(orders: dict[str, tuple[str | None, str | None]]) -> dict[str, str]:
    ids = sorted(orders)
    return {
        "ids": text_array(ids),
        "wfs": text_array(orders[i][0] for i in ids),
        "nds": text_array(orders[i][1] for i in ids),
    }


def write_moves(session: Session, orders: dict[str, tuple[str | None, str | None]]) -> None:
    """Set each order's (workflow, node), in order id order: one ``UPDATE ... FROM unnest`` on
    PostgreSQL, the driver's executemany on SQLite."""
    if not orders:
        return
    session.flush()
    if is_postgresql(session):
        session.execute(_MOVE_ORDERS, _order_moves(orders))
    else:
        raw: Any = session.connection().connection.driver_connection
        raw.executemany(
            "UPDATE orders SET workflow = ?, node = ? WHERE order_id = ?",
            [(orders[i][0], orders[i][1], i) for i in sorted(orders)],
        )


def enter_orders(session: Session, cfg: Config, orders: list[dict], *, actor: str) -> None:
    """New orders (their routing facts: ``routing.order_facts``) enter their workflow's first
    applicable node at their created_at."""
    planner = EntryPlanner(cfg, actor)
    for start in range(0, len(orders), 5000):
        plan_entries(cfg, orders[start : start + 5000], actor=actor, planner=planner).write(session)


def plan_entries(cfg: Config, orders: list[dict], *, actor: str, planner: EntryPlanner | None = None) -> Entries:
    """Plan (not write) the workflow entry of new orders given by their routing facts."""
    entries = (planner or EntryPlanner(cfg, actor)).begin()
    for facts in orders:
        entries.enter(facts["order_id"], facts, stored(facts["created_at"]))
    return entries
