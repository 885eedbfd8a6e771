"""Node transitions: orders enter workflows, tasks open and close, holds pause the clocks.

    routing.py  an order's routing facts (what ``match`` and ``when`` read), read from the store
    clocks.py   a task's clocks (risk_at, deadline, the escalation ladder), the breach rule, and an
                open task's state in Python (``task_view``) and in SQL (``breached_clause``, ...)
    entry.py    the one planner of entries: new orders into their workflow, moves to the next node
    moves.py    complete, reject, hold, release, cancel (order row locked, conditional closes)

Every name is re-exported here: ``from ffctl.core import workflow`` then ``workflow.complete``.
"""

from ffctl.core.config import matches  # whether routing facts fit a match/when spec
from ffctl.core.workflow.clocks import (
    at_risk_clause,
    breached,
    breached_clause,
    breached_sql,
    clocks,
    is_breached,
    ladder,
    ladder_position,
    ladder_seconds,
    ladder_times,
    reschedule,
    sla_words,
    state_filter,
    stopped_at,
    stopped_sql,
    task_view,
    urgency,
    visit_breached,
)
from ffctl.core.workflow.entry import Entries, EntryPlanner, enter_orders, plan_entries, write_moves
from ffctl.core.workflow.moves import (
    ADMIN,
    PlannedMoves,
    assignees,
    cancel_tasks,
    complete,
    complete_auto,
    complete_auto_moves,
    complete_tasks,
    current_task,
    hold,
    is_admin,
    lock_order,
    may_act,
    plannable,
    reject,
    release,
)
from ffctl.core.workflow.routing import match_attrs, needs_facts, order_facts, routing_facts

__all__ = [
    "ADMIN",
    "Entries",
    "EntryPlanner",
    "PlannedMoves",
    "assignees",
    "at_risk_clause",
    "breached",
    "breached_clause",
    "breached_sql",
    "cancel_tasks",
    "clocks",
    "complete",
    "complete_auto",
    "complete_auto_moves",
    "complete_tasks",
    "current_task",
    "enter_orders",
    "hold",
    "is_admin",
    "is_breached",
    "ladder",
    "ladder_position",
    "ladder_seconds",
    "ladder_times",
    "lock_order",
    "match_attrs",
    "matches",
    "may_act",
    "needs_facts",
    "order_facts",
    "plan_entries",
    "plannable",
    "reject",
    "release",
    "reschedule",
    "routing_facts",
    "sla_words",
    "state_filter",
    "stopped_at",
    "stopped_sql",
    "task_view",
    "urgency",
    "visit_breached",
    "write_moves",
]
