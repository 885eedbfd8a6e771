"""A task's clocks and the state they put it in, in Python and in SQL side by side.

A task is one visit of an order to a node. Its clocks all count business time in the node's
calendar from ``entered_at``, stretched by ``paused_seconds`` (the business time its holds
covered):

    risk_at  = add(entered_at, warn_at * sla + paused)
    deadline = add(entered_at, sla + paused)
    step k   = add(entered_at, sla + paused + after_k)     # escalation ladder, past the deadline

so a hold adds exactly the business time it covered, before or after the deadline.
``next_action_at`` is the earliest of those the sweep has not yet acted on.

An open task's state (``task_view`` in Python, ``breached_clause``/``at_risk_clause`` in SQL):
on_hold while held; breached once its clock runs at or past the deadline (``breached``, SPEC 9.1);
at_risk from ``risk_at`` (or once a sweep recorded it) until then; on_track before.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ffctl.core.durations import format_duration
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config


def clocks(cfg: Config, node: str, entered_at: datetime, paused: float, sla_state: str, next_step: int) -> dict:
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


def ladder(cfg: Config, node: str, entered_at: datetime, paused: float) -> list[datetime]:
    """Every time the sweep acts on a task, in order: [risk_at, deadline, step 0, step 1, ...]
    (a task in ``sla_state``/``next_step`` is next due at index ``ladder_position``)."""
    return list(ladder_times(cfg, node, entered_at, paused))


def ladder_times(
    cfg: Config, node: str, entered_at: datetime, paused: float, *, clock=None, first: int = 0
) -> Iterator[datetime]:
    """``ladder`` one time at a time, from position ``first``: a caller that stops at the first
    time past a visit's end (``sla replay``) computes no more. ``clock``: the node's calendar,
    when the caller holds it."""
    spec = cfg.nodes[node]
    cal = clock or cfg.calendar(node)
    for position in range(first, 2 + len(spec.escalation)):
        yield _ladder_time(cal, spec, entered_at, paused, position)


def ladder_position(sla_state: str, next_step: int) -> int:
    """Where a task in this SLA state stands on its ``ladder``."""
    return 0 if sla_state == "on_track" else 1 if sla_state == "at_risk" else 2 + next_step


def ladder_seconds(spec) -> list[float]:
    """The business seconds after ``entered_at`` (before holds) at which each ladder time falls:
    [warn_at * sla, sla, sla + after_0, ...]. ``_ladder_time`` adds them on the node's calendar;
    ``sla replay`` compares a visit's elapsed business time with them (``add`` is the first instant
    the elapsed time reaches them)."""
    return [_ladder_second(spec, position) for position in range(2 + len(spec.escalation))]


def _ladder_second(spec, position: int) -> float:
    sla = spec.sla_seconds
    if position == 0:
        return spec.warn_at * sla
    if position == 1:
        return sla
    return sla + spec.escalation[position - 2].after_seconds


def _ladder_time(cal, spec, entered_at: datetime, paused: float, position: int) -> datetime:
    """The formulas above: risk_at (0), the deadline (1), escalation step k (2 + k)."""
    return cal.add(entered_at, _ladder_second(spec, position) + paused)


def reschedule(task, cfg: Config) -> None:
    """Recompute a task row's clocks in place (after a release, or a config change)."""
    values = clocks(cfg, task.node, task.entered_at, task.paused_seconds or 0, task.sla_state, task.next_step)
    task.risk_at, task.deadline = values["risk_at"], values["deadline"]
    task.next_action_at = None if task.held_at or task.status != "open" else values["next_action_at"]


# --- the breach rule (SPEC 9.1) ----------------------------------------------------------------


def stopped_at(task):
    """When a visit's clock stopped, over a task's columns: the start of the hold that pauses it,
    else its completion (or rejection, skip or cancel); NULL while it runs."""
    return sa.func.coalesce(task.held_at, task.completed_at)


def stopped_sql(t: str) -> str:
    """``stopped_at`` as SQL text for a task row aliased ``t``."""
    return _text(
        stopped_at(
            SimpleNamespace(
                held_at=sa.literal_column(f"{t}.held_at"), completed_at=sa.literal_column(f"{t}.completed_at")
            )
        )
    )


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
    return sa.and_(
        deadline.is_not(None),
        sa.or_(sa.and_(stop.is_(None), deadline <= now), sa.and_(stop.is_not(None), stop > deadline)),
    )


def breached_sql(t: str, *, stop: str | None = None, now: str = ":now") -> str:
    """``breached`` as SQL text, for the reports' raw SQL over a visit row aliased ``t`` (``stop``:
    another expression for when its clock stopped, e.g. a fact table's column)."""
    condition = breached(
        sa.literal_column(f"{t}.deadline"), sa.literal_column(stop or stopped_sql(t)), sa.literal_column(now)
    )
    return f"({_text(condition)})"


def is_breached(deadline: datetime | None, stop: datetime | None, now: datetime) -> bool:
    """``breached`` for one visit in Python."""
    if deadline is None:
        return False
    return deadline <= now if stop is None else stop > deadline


def visit_breached(task, now: datetime):
    """``breached`` over a task's own columns (a held task counts when held after its deadline)."""
    return breached(task.deadline, stopped_at(task), now)


def sla_words(cfg: Config, node: str, deadline: datetime | None, at: datetime) -> str:
    """How a visit closed at ``at`` kept its SLA, as its event says: "SLA met" / "SLA breached by
    2h 5m" ("" without a deadline)."""
    if deadline is None:
        return ""
    if at <= deadline:
        return _("SLA met")
    return _("SLA breached by {duration}").format(duration=format_duration(cfg.calendar(node).between(deadline, at)))


# --- an open task's state: Python and SQL ------------------------------------------------------


def task_view(task, cfg: Config, now: datetime) -> dict:
    """How a task stands at ``now``: state (on_track | at_risk | breached | on_hold) and seconds left.

    Computed from the clocks, so the inbox is right even before the next sweep has run.
    ``seconds_left`` is business time in the node's calendar; negative once breached.
    The SQL twins below (``breached_clause``, ``at_risk_clause``) select the same states.
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


def breached_clause(task, now: datetime):
    """SQL: an open task in state breached (``task_view``): running past its deadline, not on hold
    (that is a state of its own)."""
    return sa.and_(task.held_at.is_(None), visit_breached(task, now))


def at_risk_clause(task, now: datetime):
    """SQL: an open task in state at_risk (``task_view``): running, not breached, past ``risk_at``
    (or recorded at risk by a sweep)."""
    return sa.and_(
        task.held_at.is_(None),
        sa.or_(task.deadline.is_(None), task.deadline > now),
        sa.or_(task.sla_state != "on_track", task.risk_at <= now),
    )


def state_filter(task, now: datetime, *, at_risk: bool, breached: bool):
    """The WHERE clause for --at-risk / --breached (both given: either state); None for no filter."""
    clauses = []
    if breached:
        clauses.append(breached_clause(task, now))
    if at_risk:
        clauses.append(at_risk_clause(task, now))
    return sa.or_(*clauses) if clauses else None


def urgency(task, now: datetime):
    """Sort key: breached first, then the rest by deadline; on hold last."""
    return sa.case((task.held_at.is_not(None), 2), (breached_clause(task, now), 0), else_=1)
