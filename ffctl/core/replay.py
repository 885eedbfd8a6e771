"""``sla replay``: the SLA history of a period evaluated under the current config and a candidate.

Read-only: it writes nothing (it runs on a PostgreSQL standby and leaves a SQLite file as it was).
Every node visit that entered in the period is evaluated twice by one model, built on the sweep's
own clock (``workflow.ladder_times``: risk_at, deadline, escalation steps; ``workflow.is_breached``):

    stop      = when the visit's clock stopped as recorded (held_at, else completed_at; None: runs)
    stretches = the visit's running stretches between its holds, each with the business time the
                holds before it covered (counted in that config's calendar)
    step k fires  <=>  in some stretch, is_breached(due_k, end of stretch, now): the visit still ran
                       at its due time, as if a sweep ran at every instant (a step whose time comes
                       before the previous step's is due with it, as the sweep fires them in order)
    breached      <=>  is_breached(deadline, stop, now)                                (SPEC 9.1)
    an auto action that fires ends the visit at its due time (a recorded one: the visit was open
                       at that instant, its own action stopped the clock);
    the steps after it do not fire, the nodes after it are not re-simulated (the order is counted)

People's completion times and holds are kept. A visit a recorded auto action ended ran, as far as
each config knows, until that config's own auto action; a config with none due by the clock ends it
at the recorded time. The recorded column is what happened: breaches by
the same rule over the stored deadline, at-risk warnings and steps from ``task_step`` (what the
sweeps fired), auto actions from the visits' outcomes; with sweeps at every due time it equals the
current column, so the difference is what sweep cadence explains. A fired escalation step is named
by the current config's ladder (``esc:<index>``): after its ladder was reordered, older rows read
with the new names.

One query counts the quiet visits in SQL (``_quiet``: their elapsed business time in the calendar's
own table against the ladder's seconds) and returns the others by id, to be evaluated here; ``visits``
streams every visit for this evaluation (tests compare the two). Per group only counters and the
lateness of the breached visits are kept.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate, chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import workflow
from ffctl.core.bulk import keyed, keyed_rows, stored_time, time_texts
from ffctl.core.clock import UTC, shown
from ffctl.core.config import ESCALATION_ACTIONS, Config
from ffctl.core.errors import Conflict
from ffctl.core.models import Event, Task, TaskStep
from ffctl.core.store import is_postgresql
from ffctl.i18n import _

COLUMNS = ("recorded", "current", "candidate")
GROUPINGS = ("node", "workflow", "role")
AUTO = ("auto_approve", "auto_reject")
RECORDED_AUTO = {"auto_approved": "auto_approve", "auto_rejected": "auto_reject"}
DECIDED = frozenset(("completed", "auto_approved", "rejected", "auto_rejected"))
DEFAULT_DAYS = 30  # the period when --from is not given: the 30 days before --to
CHUNK = 2000  # visits read per batch (and the hold events of their orders)

TASK = Task.__table__
STEP = TaskStep.__table__
EVENT = Event.__table__


# --- one visit ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Visit:
    """A node visit as recorded."""

    id: int
    order_id: str
    workflow: str
    node: str
    entered_at: datetime
    stop: datetime | None  # when its clock stopped (workflow.stopped_at); None: still running
    outcome: str | None
    paused: float
    deadline: datetime | None  # as stored
    steps: list  # task_step keys: at_risk, breached, esc:<index>
    holds: list = field(default_factory=list)  # [(held, released)] inside the visit, released holds only
    levels: tuple = (None, None)  # (current, candidate): how many ladder times passed, when SQL knows (_quiet)


@dataclass(slots=True)
class Outcome:
    """A visit under one config."""

    breached: bool = False
    late: float | None = None  # business seconds past the deadline (breached visits)
    at_risk: bool = False
    steps: tuple = ()  # escalation actions fired, in order
    auto: str | None = None  # auto_approve | auto_reject when one ended the visit
    decided: bool = False
    evaluated: bool = True  # False: the config has no such node


_NOT_EVALUATED = Outcome(evaluated=False)


def evaluate(cfg: Config, visit: Visit, now: datetime, clock=None) -> Outcome:
    """The visit under ``cfg`` by the model in this module's docstring (``clock``: the node's
    calendar in ``cfg``, when the caller holds it)."""
    if visit.node not in cfg.nodes:
        return _NOT_EVALUATED
    cal = clock or cfg.calendar(visit.node)
    if visit.outcome in RECORDED_AUTO and visit.stop is not None:
        # nobody completed it: it ran until an automatic action of this config, or (none by the
        # clock) until the recorded one, when a person's doing instead is unknown
        outcome = _walk(cfg, visit, now, cal, None)
        if outcome.auto is None:
            outcome = _walk(cfg, visit, now, cal, visit.stop)
            outcome.decided = True
        return outcome
    return _walk(cfg, visit, now, cal, visit.stop)


def _walk(cfg: Config, visit: Visit, now: datetime, cal, stop: datetime | None) -> Outcome:
    """Up the ladder while the visit, running until ``stop``, was still open at each time."""
    spec = cfg.nodes[visit.node]
    # a recorded auto action stopped the clock itself, at the sweep's clock: the visit was still open
    # then, so a step due at that very instant fired (a person's completion at it came first)
    slack = _JUST_AFTER if visit.outcome in RECORDED_AUTO else _ZERO
    stretches = _stretches(cal, visit, stop + slack if stop is not None else None)
    fired: list[str] = []
    at_risk = False
    auto = None
    deadline = None
    ladders = [
        workflow.ladder_times(cfg, visit.node, visit.entered_at, paused, clock=cal) for paused, _end in stretches
    ]
    due: list[datetime | None] = [None] * len(stretches)  # per stretch: the running maximum of the ladder times so far
    last = len(stretches) - 1
    for position in range(2 + len(spec.escalation)):
        when = None  # the time this position fires, if it does
        for i, (_paused, end) in enumerate(stretches):
            t = next(ladders[i])
            was = due[i]
            due[i] = t if was is None or t > was else was
            if position == 1 and i == last:
                deadline = t
            if when is None and workflow.is_breached(due[i], end, now):
                when = due[i]
        if when is None:
            break
        if position == 0:
            at_risk = True
        elif position >= 2:
            action = spec.escalation[position - 2].action
            fired.append(action)
            if action in AUTO:
                auto, stop = action, when
                break
    decided = auto is not None or visit.outcome in DECIDED
    if deadline is None:  # never reached: it stopped before its risk time, so before its deadline
        return Outcome(at_risk=at_risk, steps=tuple(fired), decided=decided)
    breached = workflow.is_breached(deadline, stop, now)
    late = cal.between(deadline, stop or now) if breached else None
    return Outcome(breached=breached, late=late, at_risk=at_risk, steps=tuple(fired), auto=auto, decided=decided)


def leveled(cfg: Config, visit: Visit, level: int, now: datetime, cal) -> Outcome:
    """What ``evaluate`` finds for a visit without holds or automatic outcome whose first ``level``
    ladder times passed and no automatic action was due (``_quiet``): only a breach's lateness needs
    the clock."""
    out = at_level(cfg, visit.node, level)
    late = None
    if out.breached:
        deadline = next(workflow.ladder_times(cfg, visit.node, visit.entered_at, 0.0, clock=cal, first=1))
        late = cal.between(deadline, visit.stop or now)
    return Outcome(
        breached=out.breached, late=late, at_risk=out.at_risk, steps=out.steps, decided=visit.outcome in DECIDED
    )


def at_level(cfg: Config, node: str, level: int) -> Outcome:
    """``leveled`` of any visit at ``node`` whose first ``level`` ladder times passed, before its
    lateness and whether it was decided: a breach is its business time past the SLA."""
    spec = cfg.nodes[node]
    breached = level >= 2 or (level == 1 and spec.warn_at > 1)  # warn_at past 1: at risk only when breached
    steps = tuple(step.action for step in spec.escalation[: level - 2]) if level > 2 else ()
    return Outcome(breached=breached, at_risk=level >= 1, steps=steps)


_ZERO = timedelta(0)
_JUST_AFTER = timedelta(microseconds=1)


def _stretches(cal, visit: Visit, last: datetime | None) -> list[tuple[float, datetime | None]]:
    """The visit's running stretches: (business time its holds covered before it, when it ended),
    the last one ending at ``last``."""
    if not visit.holds:
        return [(0.0, last)]
    out, paused = [], 0.0
    for held, released in visit.holds:
        out.append((paused, held))
        paused += cal.between(held, released) if released > held else 0.0
    out.append((paused, last))
    return out


def recorded(cfg: Config, visit: Visit, now: datetime, clock=None) -> Outcome:
    """What happened: the breach fact over the stored deadline, the steps the sweeps fired."""
    stop = visit.stop
    breached = workflow.is_breached(visit.deadline, stop, now)
    late = None
    if breached and visit.node in cfg.nodes:
        late = (clock or cfg.calendar(visit.node)).between(visit.deadline, stop or now)
    escalation = cfg.nodes[visit.node].escalation if visit.node in cfg.nodes else ()
    fired = []
    for key in visit.steps:
        if key.startswith("esc:"):
            index = int(key[4:])
            action = escalation[index].action if index < len(escalation) else None
            if action and action not in AUTO:  # an auto step's row exists even when it found the task closed
                fired.append(action)
    auto = RECORDED_AUTO.get(visit.outcome or "")
    if auto:
        fired.append(auto)
    return Outcome(
        breached=breached,
        late=late,
        at_risk="at_risk" in visit.steps,
        steps=tuple(fired),
        auto=auto,
        decided=visit.outcome in DECIDED,
    )


# --- reading the visits --------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Visits that entered in [start, end)."""

    start: datetime
    end: datetime


def default_period(start: datetime | None, end: datetime | None, now: datetime) -> Period:
    """--to defaults to the clock, --from to 30 days before --to."""
    end = end or now
    start = start or end - timedelta(days=DEFAULT_DAYS)
    if end <= start:
        raise ValueError(
            _("--from {isoformat} is not before --to (the clock when --to is not given)").format(
                isoformat=start.isoformat()
            )
        )
    return Period(start, end)


_VISITS_SQL = (
    "SELECT t.id, t.order_id, t.workflow, t.node, t.entered_at, t.held_at, t.completed_at, t.outcome, "
    "t.paused_seconds, t.deadline, s.step FROM task t LEFT JOIN task_step s ON s.task_id = t.id "
    "WHERE t.status <> 'skipped' AND t.entered_at >= {start} AND t.entered_at < {end} ORDER BY t.id"
)


def visits(session: Session, period: Period, *, chunk: int = CHUNK) -> Iterator[list[Visit]]:
    """The period's visits (skipped nodes left out) in batches of about ``chunk``, in id order, each
    with its fired steps; one ordered, streamed query, and the hold events of the batch's orders.

    Rows come through the driver (a million visits: SQLAlchemy's per-value type processing alone
    cost more than evaluating them); times are naive UTC there, made aware here."""
    postgresql = is_postgresql(session)
    mark = "%s" if postgresql else "?"
    bounds = tuple(stored_time(t) if postgresql else time_texts()(t) for t in (period.start, period.end))
    driver: Any = session.connection().connection.driver_connection  # inside the session's transaction
    cursor = driver.cursor(name="ffctl_replay") if postgresql else driver.cursor()  # server-side on PostgreSQL
    when = _aware if postgresql else _parsed
    batch: list[Visit] = []
    last: Visit | None = None
    try:
        cursor.execute(_VISITS_SQL.format(start=mark, end=mark), bounds)
        while True:
            rows = cursor.fetchmany(chunk)
            if not rows:
                break
            for id_, order_id, wf, node, entered, held, completed, outcome, paused, deadline, step in rows:
                if last is not None and id_ == last.id:
                    last.steps.append(step)
                    continue
                if len(batch) >= chunk:
                    _add_holds(session, batch)
                    yield batch
                    batch = []
                last = _visit(when, id_, order_id, wf, node, entered, held, completed, outcome, paused, deadline, step)
                batch.append(last)
    finally:
        cursor.close()
    if batch:
        _add_holds(session, batch)
        yield batch


def _visit(when, id_, order_id, wf, node, entered, held, completed, outcome, paused, deadline, step) -> Visit:
    """One row of ``_VISITS_SQL`` as a visit (its first step; its clock stops when held or closed)."""
    stop = held or completed
    return Visit(
        id_,
        order_id,
        wf,
        node,
        when(entered),
        when(stop) if stop else None,
        outcome,
        paused or 0.0,
        when(deadline) if deadline else None,
        [step] if step else [],
    )


def _visits_by_id(session: Session, ids: list[int]) -> list[Visit]:
    """These visits, as ``visits`` reads them (their steps, not their holds)."""
    select = _VISITS_SQL.split(" WHERE ")[0]
    rows = keyed_rows(session, select + " WHERE {where}", "t.id", ids, tail=" ORDER BY t.id")
    when = _aware if is_postgresql(session) else _parsed
    out: list[Visit] = []
    for id_, order_id, wf, node, entered, held, completed, outcome, paused, deadline, step in rows:
        if out and out[-1].id == id_:
            out[-1].steps.append(step)
            continue
        out.append(_visit(when, id_, order_id, wf, node, entered, held, completed, outcome, paused, deadline, step))
    return out


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _parsed(value: str) -> datetime:
    return datetime.fromisoformat(value + "+00:00")  # eight times faster than .replace(tzinfo=UTC)


def _add_holds(session: Session, batch: list[Visit]) -> None:
    """The released holds inside each visit that has any (paused_seconds > 0), from the trail."""
    paused = [v for v in batch if v.paused]
    if not paused:
        return
    rows = session.execute(
        sa.select(EVENT.c.order_id, EVENT.c.event, EVENT.c.at)
        .where(
            keyed(session, EVENT.c.order_id, sorted({v.order_id for v in paused})),
            EVENT.c.event.in_(("held", "released")),
        )
        .order_by(EVENT.c.order_id, EVENT.c.at, EVENT.c.id)
    ).all()
    intervals: dict[str, list[tuple[datetime, datetime]]] = {}
    held: dict[str, datetime] = {}
    for order_id, event, at in rows:
        if event == "held":
            held.setdefault(order_id, at)
        elif order_id in held:
            intervals.setdefault(order_id, []).append((held.pop(order_id), at))
    for v in paused:
        v.holds = [
            (h, r) for h, r in intervals.get(v.order_id, ()) if h >= v.entered_at and (v.stop is None or r <= v.stop)
        ]


# --- adding up ----------------------------------------------------------------------------------


class Tally:
    """One column of one group: counters and the lateness of its breached visits."""

    __slots__ = ("visits", "decided", "within", "breached", "late", "at_risk", "steps")

    def __init__(self) -> None:
        self.visits = self.decided = self.within = self.breached = self.at_risk = 0
        self.late = array("d")
        self.steps = dict.fromkeys(ESCALATION_ACTIONS, 0)

    def add(self, o: Outcome) -> None:
        self.visits += 1
        if not o.evaluated:
            return
        if o.decided:
            self.decided += 1
            self.within += not o.breached
        if o.breached:
            self.breached += 1
            if o.late is not None:
                self.late.append(o.late)
        self.at_risk += o.at_risk
        for action in o.steps:
            self.steps[action] += 1

    def add_level(self, o: Outcome, visits: int, decided: int) -> None:
        """``visits`` visits with outcome ``o`` (``at_level``), ``decided`` of them decided; their
        lateness is added apart."""
        self.visits += visits
        self.decided += decided
        if o.breached:
            self.breached += visits
        else:
            self.within += decided
        if o.at_risk:
            self.at_risk += visits
        for action in o.steps:
            self.steps[action] += visits

    def add_quiet(self, visits: int, decided: int, at_risk: int) -> None:
        """Visits counted in SQL (``_quiet``): none breached, no step fired, no automatic action."""
        self.visits += visits
        self.decided += decided
        self.within += decided
        self.at_risk += at_risk

    def merge(self, other: Tally) -> None:
        self.visits += other.visits
        self.decided += other.decided
        self.within += other.within
        self.breached += other.breached
        self.at_risk += other.at_risk
        self.late.extend(other.late)
        for k, v in other.steps.items():
            self.steps[k] += v

    def attainment(self) -> float | None:
        return round(self.within / self.decided, 4) if self.decided else None

    def late_p90(self) -> float | None:
        return percentile(self.late, 0.9)


def percentile(values: Iterable[float], p: float) -> float | None:
    """Linear interpolation between the closest ranks (what the reports' percentile_cont does)."""
    ordered = sorted(values)
    if not ordered:
        return None
    pos = p * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return round(ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo]))


def _metric(values: dict[str, float | int | None]) -> dict:
    cur, cand = values["current"], values["candidate"]
    delta = None if cur is None or cand is None else round(cand - cur, 4)
    return {**values, "delta": delta}


def _row(group: str | None, tallies: dict[str, Tally]) -> dict:
    def each(fn):
        return _metric({c: fn(tallies[c]) for c in COLUMNS})

    return {
        "group": group,
        "visits": tallies["current"].visits,
        "visits_candidate": tallies["candidate"].visits,
        "breached": each(lambda t: t.breached),
        "attainment": each(Tally.attainment),
        "late_p90_seconds": each(Tally.late_p90),
        "at_risk": each(lambda t: t.at_risk),
        "steps": {a: each(lambda t, a=a: t.steps[a]) for a in ESCALATION_ACTIONS},
        "auto_actions": each(lambda t: sum(t.steps[a] for a in AUTO)),
    }


# --- the replay ---------------------------------------------------------------------------------


def _clock_key(cfg: Config, node: str):
    """What a node's clock depends on: equal keys give equal outcomes for every visit."""
    spec = cfg.nodes.get(node)
    if spec is None:
        return None
    calendar = cfg.calendars.get(spec.calendar) if spec.calendar else None
    return (spec.sla_seconds, spec.warn_at, spec.escalation, calendar)


def _routing(cfg: Config) -> tuple:
    return (
        tuple((wf.name, tuple(sorted(wf.match.items())), wf.nodes) for wf in cfg.workflows),
        tuple(sorted((n, tuple(sorted(s.when.items()))) for n, s in cfg.nodes.items() if s.when)),
    )


class Replay:
    """Adds up visits under both configs, by group; keeps the orders whose path would change."""

    def __init__(self, current: Config, candidate: Config, *, now: datetime, by: str = "node") -> None:
        if by not in GROUPINGS:
            raise ValueError(f"--by {by!r}: use one of {', '.join(GROUPINGS)}")
        self.current, self.candidate, self.now, self.by = current, candidate, now, by
        self.groups: dict[str | None, dict[str, Tally]] = {}
        self.changed: dict[str, set[str]] = {}  # order_id -> why its path would change
        self.slots: dict[tuple[str, str | None], tuple] = {}  # (node, workflow) -> what its visits need (_slot)
        self.orders: set[str] = set()  # the period's orders, kept only when the routing differs
        self.rerouting = _routing(current) != _routing(candidate)
        self.count = 0

    def _slot(self, node: str, wf: str | None) -> tuple:
        """What a visit at ``node`` in workflow ``wf`` needs: whether the candidate's clock is the
        current one's, both clocks, and the tallies it adds to (recorded, current, candidate)."""
        clocks = tuple(cfg.calendar(node) if node in cfg.nodes else None for cfg in (self.current, self.candidate))
        groups = [
            node
            if self.by == "node"
            else wf
            if self.by == "workflow"
            else (cfg.nodes[node].owner if node in cfg.nodes else None)
            for cfg in (self.current, self.candidate)
        ]
        return (
            _clock_key(self.current, node) == _clock_key(self.candidate, node),
            *clocks,
            self._tally(groups[0], "recorded"),
            self._tally(groups[0], "current"),
            self._tally(groups[1], "candidate"),
        )

    def _tally(self, group, column: str) -> Tally:
        tallies = self.groups.get(group)
        if tallies is None:
            tallies = self.groups[group] = {c: Tally() for c in COLUMNS}
        return tallies[column]

    def add(self, batch: list[Visit]) -> None:
        cur_cfg, cand_cfg, now, slots = self.current, self.candidate, self.now, self.slots
        for v in batch:
            slot = slots.get((v.node, v.workflow))
            if slot is None:
                slot = slots[v.node, v.workflow] = self._slot(v.node, v.workflow)
            same, cur_clock, cand_clock, was_tally, cur_tally, cand_tally = slot
            cur_level, cand_level = v.levels
            if cur_level is None:
                cur = evaluate(cur_cfg, v, now, cur_clock)
            else:
                cur = leveled(cur_cfg, v, cur_level, now, cur_clock)
            if same:
                cand = cur
            elif cand_level is None:
                cand = evaluate(cand_cfg, v, now, cand_clock)
            else:
                cand = leveled(cand_cfg, v, cand_level, now, cand_clock)
            was_tally.add(recorded(cur_cfg, v, now, cur_clock))
            cur_tally.add(cur)
            cand_tally.add(cand)
            if cand.auto != cur.auto:
                what = cand.auto or cur.auto
                words = _("{node}: {action} would fire") if cand.auto else _("{node}: {action} would not fire")
                self.changed.setdefault(v.order_id, set()).add(words.format(node=v.node, action=what))
            elif not cand.evaluated and cur.evaluated:
                self.changed.setdefault(v.order_id, set()).add(
                    _("{node}: not a node of the candidate").format(node=v.node)
                )
        self.count += len(batch)
        if self.rerouting:
            self.orders.update(v.order_id for v in batch)

    def reroute(self, session: Session) -> None:
        """Orders the candidate's workflows (``match``, ``nodes``, a node's ``when``) route elsewhere."""
        ids = sorted(self.orders)
        current, candidate = (workflow.EntryPlanner(cfg, "sla replay") for cfg in (self.current, self.candidate))
        for start in range(0, len(ids), 500):
            for facts in workflow.order_facts(session, ids[start : start + 500]):
                was = current.path(facts)
                would = candidate.path(facts)
                if was != would:
                    self.changed.setdefault(facts["order_id"], set()).add(
                        _("routed {was} → {would}").format(was=_path(was), would=_path(would))
                    )
        self.orders = set()

    def result(self, period: Period, changes: list[str], *, list_orders: bool) -> dict:
        known = list(self.current.nodes) + [n for n in self.candidate.nodes if n not in self.current.nodes]
        order: dict[str | None, int] = {name: i for i, name in enumerate(known)} if self.by == "node" else {}
        keys = sorted(self.groups, key=lambda g: (g is None, order.get(g, len(order)), str(g)))
        totals = {c: Tally() for c in COLUMNS}
        for g in keys:
            for c in COLUMNS:
                totals[c].merge(self.groups[g][c])
        out = {
            "from": period.start,
            "to": period.end,
            "now": self.now,
            "by": self.by,
            "changes": changes,
            "rows": [_row(g, self.groups[g]) for g in keys],
            "totals": _row(None, totals),
            "changed_path_orders": len(self.changed),
            "assumptions": assumptions(self, period),
        }
        if list_orders:
            out["orders"] = [{"order_id": o, "why": sorted(self.changed[o])} for o in sorted(self.changed)]
        return out


def _path(route: tuple[str | None, tuple[str, ...]]) -> str:
    name, nodes = route
    return f"{name} ({' > '.join(nodes)})" if name else _("no workflow")


def assumptions(rep: Replay, period: Period) -> list[str]:
    tz = rep.current.timezone
    out = [
        _("Visits that entered a node from {start} to {end}; those still open are evaluated at {now}.").format(
            start=shown(period.start, tz), end=shown(period.end, tz), now=shown(rep.now, tz)
        ),
        _("People's recorded completion times and holds are kept; each config counts the holds in its own calendar."),
        _(
            "A step counts as fired when the visit was still open at its due time, as if a sweep ran at every "
            "instant; the recorded column is what the sweeps fired, so the gap to the current column is what "
            "sweep cadence explains."
        ),
        _(
            "An automatic action that fires ends the visit at its due time; later nodes are not re-simulated. "
            "A visit a recorded automatic action ended runs until the config's own automatic action, or ends at "
            "the recorded time when the config has none due by the clock."
        ),
        _(
            "Orders whose path would change (automatic actions, routing by workflow match, nodes or when) are "
            "counted, not simulated; --orders lists them."
        ),
    ]
    if rep.by == "role":
        out.append(_("By role: a visit counts for its node's owner under each config."))
    return out


def replay(
    session: Session,
    current: Config,
    candidate: Config,
    *,
    period: Period,
    now: datetime,
    by: str = "node",
    list_orders: bool = False,
    changes: list[str] | None = None,
) -> dict:
    """The side-by-side figures of ``sla replay`` (SPEC 9.3) as one plain dict; reads only."""
    rep = Replay(current, candidate, now=now, by=by)
    plan = _plan(session, rep)
    if plan is None:
        batches: Iterable[list[Visit]] = _quiet(session, rep, period)
    else:
        patches, recount = plan
        batches = _counted(session, rep, period, patches, recount)
        if recount:
            batches = chain(batches, _quiet(session, rep, period, only=recount))
    for batch in batches:
        rep.add(batch)
    if rep.rerouting:  # the orders of the visits counted in SQL too: routing is decided per order
        rep.orders.update(
            r[0]
            for r in session.execute(
                sa.select(TASK.c.order_id)
                .where(TASK.c.status != "skipped", TASK.c.entered_at >= period.start, TASK.c.entered_at < period.end)
                .distinct()
            )
        )
    if not rep.count:
        raise NoVisits(period, _span(session), current.timezone)
    rep.reroute(session)
    return rep.result(period, changes or [], list_orders=list_orders)


# --- the quiet visits, counted in SQL -----------------------------------------------------------

#: business seconds: a visit whose elapsed business time lies this close to a ladder time goes to
#: the scalar clock (the SQL counts in floats, SQLite's julianday to the millisecond)
MARGIN = 1.0


def _quiet(session: Session, rep: Replay, period: Period, *, only: list[str] | None = None) -> Iterator[list[Visit]]:
    """Counts the period's *quiet* visits in SQL into ``rep`` and yields the others, in batches, for
    ``Replay.add``.

    Each visit's elapsed business time E (entry to stop, or to now, in the node's calendar under
    each config) is counted in the calendar's own table of business time (``utc_days``: the index
    ``BusinessCalendar.add`` and ``between`` search). ``add`` returns the first instant at which the
    elapsed time reaches its seconds, so for a visit without holds a ladder time (the seconds of
    ``workflow.ladder_seconds``, which ``ladder_times`` adds) has passed exactly when E exceeds its
    seconds, and the visit's level (how many ladder times passed, in order) is a count. A visit is
    *clear* under a config when E is more than ``MARGIN`` away from each of them and below its first
    automatic action: its level is then exact in spite of floats. Quiet visits (no hold, no
    automatic outcome, neither breached nor escalated as recorded, clear and below the SLA under
    both configs) are only counted; the others come back one by one, with their levels where clear
    (``Replay.add`` then needs the scalar clock only for a breach's lateness), else evaluated whole.
    ``only``: only the visits of these nodes (None: every visit).
    """
    from ffctl.core import kpi  # the reports' business-time SQL (kpi imports this module's callers)

    postgresql = is_postgresql(session)
    sql = kpi._Sql(session, rep.current.timezone, rep.now)
    configs = {"cur": rep.current, "cand": rep.candidate}
    nodes = sorted(set(rep.current.nodes) & set(rep.candidate.nodes))
    clocks = {f"{c}:{n}": cfg.calendar(n) for c, cfg in configs.items() for n in nodes}
    bt = kpi._BusinessTime(sql, rep.current, clocks=clocks, name="replay_day")
    key = {c: {n: bt.node_key.get(f"{c}:{n}", 0) for n in nodes} for c in configs}
    differs = [n for n in nodes if clocks[f"cur:{n}"] != clocks[f"cand:{n}"]]

    def literal(t: datetime) -> str:
        text = stored_time(t).isoformat(sep=" ", timespec="microseconds")
        return f"TIMESTAMP '{text}'" if postgresql else f"'{text}'"

    ladders, width = _ladders(configs, nodes)

    def node_row(n: str) -> str:
        values = [f"'{n}'", str(key["cur"][n]), str(key["cand"][n]) if n in differs else "NULL"]
        values.append(repr(min(min(workflow.ladder_seconds(cfg.nodes[n])) for cfg in configs.values()) - MARGIN))
        return f"({', '.join(values + _ladder_values(configs, ladders, width, n))})"

    columns = ["node", "k_cur", "k_cand", "low", *_ladder_columns(configs, width)]
    node_cte = f"replay_node({', '.join(columns)}) AS (VALUES {', '.join(node_row(n) for n in nodes)})"
    now = literal(rep.now)
    day_cte, days = bt.table() if bt.key else ("", 0)
    joins, elapsed = [], {}
    for c, keys in (("cur", key["cur"]), ("cand", {n: key["cand"][n] for n in differs})):
        wall = "x.eb - x.ea"
        if not any(keys.values()):
            elapsed[c] = wall
            continue
        a, b = f"{c}_a", f"{c}_b"
        # business time is at most the wall-clock time: below every ladder time by the wall clock,
        # the visit needs no calendar (E = wall time classifies it the same: level 0, clear)
        counted = f"x.k_{c} * {kpi._DAY_KEY}"
        joins.append(f"LEFT JOIN replay_day {a} ON {a}.k = CASE WHEN {wall} >= x.low THEN {counted} + x.da END")
        joins.append(
            f"LEFT JOIN replay_day {b} ON {b}.k = CASE WHEN {wall} >= x.low AND x.db <> x.da THEN {counted} + x.db END"
        )
        since = bt._total(a, "x.ea", days, epoch=False)
        elapsed[c] = (
            f"CASE WHEN x.k_{c} = 0 OR {wall} < x.low THEN {wall} WHEN x.db = x.da THEN "
            f"{bt._total(a, 'x.eb', days, epoch=False)} - {since} ELSE {bt._total(b, 'x.eb', days, epoch=False)} - "
            f"{since} END"
        )

    def classes(e: str, c: str) -> tuple[str, str, str]:
        return _classes(e, c, width)

    if postgresql:  # one hash join; subqueries inside a CASE would run once per visit
        steps_join = (
            "LEFT JOIN (SELECT task_id, MAX(CASE WHEN step = 'at_risk' THEN 1 ELSE 0 END) AS at_risk, "
            "MAX(CASE WHEN step <> 'at_risk' THEN 1 ELSE 0 END) AS stepped FROM task_step GROUP BY task_id) st "
            "ON st.task_id = t.id"
        )
        at_risk, stepped = "COALESCE(st.at_risk, 0)", "COALESCE(st.stepped, 0)"
    else:  # SQLite probes task_step's primary key per visit
        steps_join = ""
        at_risk = "CASE WHEN EXISTS (SELECT 1 FROM task_step s WHERE s.task_id = t.id AND s.step = 'at_risk') THEN 1 ELSE 0 END"
        stepped = "CASE WHEN EXISTS (SELECT 1 FROM task_step s WHERE s.task_id = t.id AND s.step <> 'at_risk') THEN 1 ELSE 0 END"

    stop = f"COALESCE(t.held_at, t.completed_at, {now})"
    autos = ", ".join(f"'{o}'" for o in RECORDED_AUTO)
    decided = ", ".join(f"'{o}'" for o in sorted(DECIDED))
    # each level is computed once per visit, and carries on only the columns the next one reads
    fence = "OFFSET 0" if postgresql else "LIMIT -1 OFFSET 0"
    visits_sql = (
        "SELECT t.id, t.workflow, t.node, t.outcome, "
        f"{sql.epoch('t.entered_at')} AS ea, {sql.epoch(stop)} AS eb, "
        f"{sql.epoch_day('t.entered_at')} AS da, {sql.epoch_day(stop)} AS db, n.k_cur, n.k_cand, n.low, "
        "CASE WHEN n.node IS NOT NULL AND COALESCE(t.paused_seconds, 0) = 0 "
        f"AND COALESCE(t.outcome, '') NOT IN ({autos}) THEN 1 ELSE 0 END AS simple, "
        f"CASE WHEN NOT {workflow.breached_sql('t', now=now)} AND {stepped} = 0 THEN 1 ELSE 0 END AS rec_clean, "
        f"{at_risk} AS rec_risk FROM task t LEFT JOIN replay_node n ON n.node = t.node {steps_join} "
        f"WHERE t.status <> 'skipped' AND t.entered_at >= {literal(period.start)} "
        f"AND t.entered_at < {literal(period.end)}{'' if only is None else f' AND t.node IN {_names(only)}'} {fence}"
    )
    timed = (
        "SELECT x.id, x.workflow, x.node, x.outcome, x.rec_clean, x.rec_risk, x.k_cand, "
        "CASE WHEN x.eb - x.ea < x.low THEN 1 ELSE 0 END AS short, "
        f"CASE WHEN x.simple = 1 THEN {elapsed['cur']} END AS cur, "
        f"CASE WHEN x.simple = 1 AND x.k_cand IS NOT NULL THEN {elapsed['cand']} END AS cand_only "
        f"FROM ({visits_sql}) x {' '.join(joins)} {fence}"
    )
    cand = "(CASE WHEN e.k_cand IS NULL THEN e.cur ELSE e.cand_only END)"
    (cur_clear, cur_quiet, cur_level), (cand_clear, cand_quiet, cand_level) = (
        classes("e.cur", "cur"),
        classes(cand, "cand"),
    )
    # below every ladder time by the wall clock (short): level 0, clear, quiet, no need of the node's row
    cleared = (
        "SELECT e.node, e.workflow, e.outcome, e.rec_risk, e.rec_clean, e.id, "
        f"CASE WHEN e.cur IS NULL THEN 0 WHEN e.short = 1 THEN 1 ELSE {cur_clear} END AS cur_clear, "
        f"CASE WHEN {cand} IS NULL THEN 0 WHEN e.short = 1 THEN 1 ELSE {cand_clear} END AS cand_clear, "
        f"CASE WHEN e.short = 1 THEN 1 ELSE {cur_quiet} END AS cur_quiet, "
        f"CASE WHEN e.short = 1 THEN 1 ELSE {cand_quiet} END AS cand_quiet, "
        f"CASE WHEN e.short = 1 THEN 0 ELSE {cur_level} END AS cur_level, "
        f"CASE WHEN e.short = 1 THEN 0 ELSE {cand_level} END AS cand_level "
        f"FROM ({timed}) e LEFT JOIN replay_node n ON n.node = CASE WHEN e.short = 1 THEN NULL ELSE e.node END "
        f"{fence}"
    )
    quiet = "e.rec_clean = 1 AND e.cur_clear = 1 AND e.cand_clear = 1 AND e.cur_quiet = 1 AND e.cand_quiet = 1"
    classed = (
        f"SELECT e.node, e.workflow, e.outcome, e.rec_risk, CASE WHEN {quiet} THEN 0 ELSE e.id END AS q, "
        f"CASE WHEN e.cur_level > 0 THEN 1 ELSE 0 END AS cur_risk, CASE WHEN e.cand_level > 0 THEN 1 ELSE 0 END "
        f"AS cand_risk, CASE WHEN e.cur_clear = 1 THEN e.cur_level END AS cur_level, "
        f"CASE WHEN e.cand_clear = 1 THEN e.cand_level END AS cand_level FROM ({cleared}) e"
    )
    ctes = ", ".join(part for part in (day_cte, node_cte) if part)
    query = (
        f"WITH {ctes} SELECT y.node, y.workflow, y.q, COUNT(*), "
        f"SUM(CASE WHEN y.outcome IN ({decided}) THEN 1 ELSE 0 END), SUM(y.rec_risk), SUM(y.cur_risk), "
        "SUM(y.cand_risk), MIN(y.cur_level), MIN(y.cand_level) "
        f"FROM ({classed}) y GROUP BY y.node, y.workflow, y.q"
    )
    driver: Any = session.connection().connection.driver_connection
    cursor = driver.cursor(name="ffctl_replay") if postgresql else driver.cursor()
    try:
        cursor.execute(query)
        others: dict[int, tuple] = {}  # visit id -> (current level, candidate level)
        while True:
            rows = cursor.fetchmany(CHUNK)
            if not rows:
                break
            for node, wf, q, n, n_decided, rec_risk, cur_risk, cand_risk, cur_level, cand_level in rows:
                if q != 0:
                    others[q] = (cur_level, cand_level)
                    continue
                slot = rep.slots.get((node, wf))
                if slot is None:
                    slot = rep.slots[node, wf] = rep._slot(node, wf)
                was, cur, cand = slot[3:]
                was.add_quiet(n, n_decided, rec_risk)
                cur.add_quiet(n, n_decided, cur_risk)
                cand.add_quiet(n, n_decided, cand_risk)
                rep.count += n
    finally:
        cursor.close()
    yield from _by_id(session, others)


def _by_id(session: Session, others: dict[int, tuple]) -> Iterator[list[Visit]]:
    """The visits ``others`` names (id -> their levels, ``Visit.levels``), with their holds, in batches."""
    ids = sorted(others)
    for start in range(0, len(ids), CHUNK):
        batch = _visits_by_id(session, ids[start : start + CHUNK])
        for v in batch:
            v.levels = others[v.id]
        _add_holds(session, batch)
        yield batch


def _ladder(cfg: Config, n: str) -> tuple[list[float], float | None]:
    """(the ladder seconds before the first automatic action, each at least the one before: a
    later time is due with an earlier one; the seconds of that action, None without one)."""
    spec = cfg.nodes[n]
    seconds = [float(v) for v in accumulate(workflow.ladder_seconds(spec), max)]
    auto = next((2 + i for i, step in enumerate(spec.escalation) if step.action in AUTO), len(seconds))
    return seconds[:auto], seconds[auto] if auto < len(seconds) else None


def _ladders(configs: dict[str, Config], nodes: list[str]) -> tuple[dict, int]:
    """(per config and node its ``_ladder``, the most ladder times any has)."""
    ladders = {c: {n: _ladder(cfg, n) for n in nodes} for c, cfg in configs.items()}
    return ladders, max([len(times) for by in ladders.values() for times, _auto in by.values()] + [1])


_NEVER = 1e15  # seconds: a padding ladder time no visit reaches


def _ladder_columns(configs: dict[str, Config], width: int) -> list[str]:
    return [f"{c}_{name}" for c in configs for name in ("sla", "auto", *(f"t{i}" for i in range(width)))]


def _ladder_values(configs: dict[str, Config], ladders: dict, width: int, n: str) -> list[str]:
    """Node ``n``'s values of ``_ladder_columns``: per config its SLA, first automatic action and ladder."""
    values = []
    for c, cfg in configs.items():
        times, auto = ladders[c][n]
        values += [repr(float(cfg.nodes[n].sla_seconds)), repr(auto if auto is not None else _NEVER)]
        values += [repr(t) for t in times + [_NEVER] * (width - len(times))]
    return values


def _classes(e: str, c: str, width: int) -> tuple[str, str, str]:
    """(clear, quiet, level) of a visit under config ``c``, over its elapsed business time ``e``
    and its node's row ``n`` of replay_node (``_ladder_columns``)."""
    return _classed(e, [f"n.{c}_t{i}" for i in range(width)], f"n.{c}_sla", f"n.{c}_auto")


def _classed(e: str, times: list[str], sla: str, auto: str | None) -> tuple[str, str, str]:
    """(clear, quiet, level) over elapsed time ``e`` and a node's ladder (``_ladder``: its times,
    SLA and first automatic action, as SQL): clear when E is more than ``MARGIN`` from each time
    and the SLA and below the automatic action; quiet below the SLA; level, how many times E passed."""
    clear = " AND ".join(
        [f"ABS({e} - {t}) > {MARGIN}" for t in [*times, sla]] + ([f"{e} < {auto} - {MARGIN}"] if auto else [])
    )
    level = " + ".join(f"CAST({e} > {t} AS INTEGER)" for t in times) or "0"
    return f"CASE WHEN {clear} THEN 1 ELSE 0 END", f"CASE WHEN {e} < {sla} THEN 1 ELSE 0 END", level


def _clear_ranges(ladders: list[tuple[list[float], float | None, float]]) -> list[tuple[float | None, float | None]]:
    """The open ranges (None: unbounded) of elapsed time E that ``_classed`` finds clear under every
    one of ``ladders`` ((times, first automatic action, SLA), as ``_ladder`` and the node give them):
    more than ``MARGIN`` from each time and SLA, below each automatic action by more than it. No
    ladder time falls inside a range, so all of a range's visits have one level per config."""
    marks = sorted({t for times, _auto, sla in ladders for t in (*times, sla)})
    autos = [auto for _times, auto, _sla in ladders if auto is not None]
    top = min(autos) - MARGIN if autos else None
    out: list[tuple[float | None, float | None]] = []
    lo: float | None = None
    for mark in [*marks, None]:
        hi = mark - MARGIN if mark is not None else None
        if top is not None and (hi is None or hi > top):
            hi = top
        if lo is None or hi is None or lo < hi:
            out.append((lo, hi))
        if mark is None or (top is not None and mark - MARGIN >= top):
            break
        lo = mark + MARGIN
    return out


def _quote(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _names(names: Iterable[str]) -> str:
    return "(" + ", ".join(_quote(n) for n in names) + ")"


# --- the visits counted from the facts -----------------------------------------------------------

#: a candidate calendar that differs from the current one on more separate stretches of days than
#: this (its hours, say) has its node's visits counted by ``_quiet`` instead
PATCHES = 64


def _plan(session: Session, rep: Replay) -> tuple[dict[str, list[tuple[datetime, datetime]]], list[str]] | None:
    """How ``replay`` reads the visits: None when the report facts are not current for the current
    config (``kpi.facts_current``: ``_quiet`` reads every visit); else (per node whose candidate
    calendar differs on a few days, those days as UTC [start, end) stretches; the nodes whose
    clock differs more, counted by ``_quiet``).

    visit_fact keeps each visit's elapsed business time in its node's current calendar. A visit's
    elapsed time is the sum of its calendar's open ranges over the days it spans, so where the
    candidate's day ranges (``utc_days``) equal the current ones on each of those days, so does
    its elapsed time: only the visits touching a changed day need the candidate's clock."""
    from ffctl.core import kpi  # kpi imports this module's callers

    if not kpi.facts_current(session, rep.current):
        return None
    lo, hi = kpi._Sql(session, rep.current.timezone, rep.now).span()
    first, last = int(lo.timestamp() // 86400), int(hi.timestamp() // 86400)
    patches: dict[str, list[tuple[datetime, datetime]]] = {}
    recount = []
    for n in sorted(set(rep.current.nodes) & set(rep.candidate.nodes)):
        cur, cand = rep.current.calendar(n), rep.candidate.calendar(n)
        if cur == cand:
            continue
        days = _changed_days(cur, cand, first, last)
        if days is None or len(days) > PATCHES:
            recount.append(n)
        else:
            patches[n] = days
    return patches, recount


def _changed_days(cur, cand, first: int, last: int) -> list[tuple[datetime, datetime]] | None:
    """The UTC days in [first, last] (days since 1970) on which two business calendars' open
    ranges differ, as merged [start, end) stretches; None when either is the wall clock."""
    if not (hasattr(cur, "utc_days") and hasattr(cand, "utc_days")):
        return None
    out: list[tuple[datetime, datetime]] = []
    for (d, _cum, a), (_d, _cum2, b) in zip(cur.utc_days(first, last), cand.utc_days(first, last)):
        if a == b:
            continue
        start, end = (datetime.fromtimestamp(x * 86400, UTC) for x in (d, d + 1))
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _counted(
    session: Session,
    rep: Replay,
    period: Period,
    patches: dict[str, list[tuple[datetime, datetime]]],
    recount: list[str],
) -> Iterator[list[Visit]]:
    """Counts the period's visits from visit_fact into ``rep`` and yields, in batches, the ones
    ``Replay.add`` evaluates whole; the visits of the ``recount`` nodes are left to ``_quiet``.

    A visit is *counted* when its clock stopped without a hold or an automatic outcome, at a node of
    both configs, and its stored elapsed business time E (``_plan``: the candidate's too, unless it
    touches a day of ``patches``) is clear of every ladder time under both (``_quiet``'s rule).
    Then its level under each config (how many ladder times E passed) is all ``at_level`` needs, a
    breach is late by E less the SLA (the deadline is where E reaches it), and the recorded column
    is the breach fact the facts keep, the lateness past the stored deadline counted by the
    reports' business time (``kpi._BusinessTime``) and the steps the sweeps fired (``task_step``).
    Counts go by node (and workflow, ``--by workflow``) through ranges of visit_fact's (node,
    breached, auto, paused, elapsed) index; only the breached visits' E come back, and the ids of the visits not counted."""
    postgresql = is_postgresql(session)
    configs = {"cur": rep.current, "cand": rep.candidate}
    both = sorted((set(rep.current.nodes) & set(rep.candidate.nodes)) - set(recount))
    nodes = _stored_nodes(session, set(recount))  # every node with a visit there, the unknown ones too
    if not nodes:
        return
    sla = {c: {n: float(cfg.nodes[n].sla_seconds) for n in both} for c, cfg in configs.items()}

    def literal(t: datetime) -> str:
        text = stored_time(t).isoformat(sep=" ", timespec="microseconds")
        return f"TIMESTAMP '{text}'" if postgresql else f"'{text}'"

    period_sql = f"v.entered_at >= {literal(period.start)} AND v.entered_at < {literal(period.end)}"
    by_wf = rep.by == "workflow"
    counted: dict[str, str] = {}  # node -> whether a visit is counted (1 or 0, never NULL)
    buckets: dict[str, list[tuple[float | None, float | None]]] = {}
    ladders = {c: {n: _ladder(cfg, n) for n in both} for c, cfg in configs.items()}

    def within(lo: float | None, hi: float | None) -> str:
        return " AND ".join([f"v.elapsed > {lo!r}"] * (lo is not None) + [f"v.elapsed < {hi!r}"] * (hi is not None))

    for n in both:
        buckets[n] = _clear_ranges([(*ladders[c][n], sla[c][n]) for c in configs])
        touched = " OR ".join(
            f"(v.entered_at < {literal(b)} AND v.stopped_at >= {literal(a)})" for a, b in patches.get(n, ())
        )
        ranges = " OR ".join(f"({within(lo, hi)})" for lo, hi in buckets[n]) or "1 = 0"
        counted[n] = (
            f"CASE WHEN v.paused = 0 AND v.auto = 0 AND ({ranges}){f' AND NOT ({touched})' if touched else ''} "
            "THEN 1 ELSE 0 END"
        )
    wf = ", v.workflow" if by_wf else ""
    # one aggregate per node and range of E clear of every ladder time: a range of visit_fact's
    # (node, elapsed, ...) index each, every counted visit read once, no sort
    counts = " UNION ALL ".join(
        f"SELECT {_quote(n)}, {i}{wf}, COUNT(*), SUM(v.decided), SUM(v.breached), SUM(v.decided * v.breached) "
        f"FROM visit_fact v WHERE v.node = {_quote(n)} AND v.breached IN (0, 1) AND v.auto = 0 AND v.paused = 0 "
        f"AND {within(lo, hi)} AND {period_sql}"
        + "".join(
            f" AND NOT (v.entered_at < {literal(b)} AND v.stopped_at >= {literal(a)})" for a, b in patches.get(n, ())
        )
        + (" GROUP BY v.workflow" if by_wf else "")
        for n in both
        for i, (lo, hi) in enumerate(buckets[n])
    )
    # the counted visits a column finds breached (E past the smaller SLA, or breached as recorded, with
    # the stored deadline), and the visits not counted
    listed = []
    for n in both:
        # every range a seek of the (node, breached, auto, paused, elapsed) index; a visit may come twice
        low = min(sla[c][n] for c in configs) - MARGIN
        gaps = [(a[1], b[0]) for a, b in zip(buckets[n], buckets[n][1:]) if a[1] is not None and a[1] < low]
        last = buckets[n][-1][1] if buckets[n] else None
        if last is not None:
            low = min(low, last)  # past the last range: none counted
        arms = [
            f"v.breached IN (0, 1) AND v.auto = 0 AND v.paused = 0 AND v.elapsed >= {low!r}",  # a breach in a column
            "v.breached IN (0, 1) AND v.auto IN (0, 1) AND v.elapsed IS NULL",  # running
            f"v.breached = 1 AND v.auto = 0 AND v.paused = 0 AND v.elapsed < {low!r}",  # breached as recorded
            "v.breached IN (0, 1) AND v.auto = 1",  # an automatic outcome
            "v.breached IN (0, 1) AND v.auto = 0 AND v.paused > 0",  # holds
            *(
                f"v.breached IN (0, 1) AND v.auto = 0 AND v.paused = 0 AND v.elapsed >= {a!r} AND v.elapsed <= {b!r}"
                for a, b in gaps
            ),  # within a second of a ladder time
        ]
        if patches.get(n):
            arms.append(
                "v.breached IN (0, 1) AND v.auto = 0 AND v.paused = 0 AND ("
                + " OR ".join(f"(v.entered_at < {literal(b)} AND v.stopped_at >= {literal(a)})" for a, b in patches[n])
                + ")"
            )  # a day the candidate's calendar changes
        listed += [
            f"SELECT v.task_id, {_quote(n)}, v.workflow, {counted[n]}, v.elapsed, v.stopped_at, "
            "CASE WHEN v.breached = 1 THEN (SELECT t.deadline FROM task t WHERE t.id = v.task_id) END "
            f"FROM visit_fact v WHERE v.node = {_quote(n)} AND {where} AND {period_sql}"
            for where in arms
        ]
    unknown = [n for n in nodes if n not in counted]
    if unknown:
        listed.append(
            "SELECT v.task_id, v.node, v.workflow, 0, NULL, NULL, NULL FROM visit_fact v "
            f"WHERE v.node IN {_names(unknown)} AND {period_sql}"
        )
    dispatch = " ".join(f"WHEN {_quote(n)} THEN {counted[n]}" for n in both)
    keys = "v.node, v.workflow" if by_wf else "v.node"
    # the steps the sweeps fired for counted visits: every task_step row, its visit by key
    steps = (
        f"SELECT {keys}, s.step, COUNT(*) FROM task_step s {'JOIN' if postgresql else 'CROSS JOIN'} visit_fact v "
        f"ON v.task_id = s.task_id WHERE v.node IN {_names(both)} AND {period_sql} "
        f"AND (CASE v.node {dispatch} ELSE 0 END) = 1 GROUP BY {keys}, s.step"
    )

    def slot(node: str, wf: str | None) -> tuple:
        found = rep.slots.get((node, wf))
        if found is None:
            found = rep.slots[node, wf] = rep._slot(node, wf)
        return found

    others: dict[int, tuple] = {}
    when = _aware if postgresql else _parsed
    if both:
        for row in session.execute(sa.text(counts)):
            node, i, wf_ = row[0], row[1], row[2] if by_wf else None
            n, decided, rec_breached, rec_late_decided = row[2 + by_wf :]
            if not n:
                continue
            was, cur, cand = slot(node, wf_)[3:]
            was.visits += n
            was.decided += decided
            was.within += decided - rec_late_decided
            was.breached += rec_breached
            lo = buckets[node][i][0]
            for c, tally in (("cur", cur), ("cand", cand)):
                level = 0 if lo is None else sum(1 for t in ladders[c][node][0] if t < lo)  # none inside the range
                tally.add_level(at_level(configs[c], node, level), n, decided)
            rep.count += n
        for row in session.execute(sa.text(steps)):
            node, wf_ = row[0], row[1] if by_wf else None
            step, n = row[1 + by_wf :]
            was = slot(node, wf_)[3]
            if step == "at_risk":
                was.at_risk += n
            elif step.startswith("esc:"):
                escalation = rep.current.nodes[node].escalation
                index = int(step[4:])
                action = escalation[index].action if index < len(escalation) else None
                if action and action not in AUTO:  # as ``recorded``
                    was.steps[action] += n
    breaches: dict[tuple, bool] = {}  # (config, node, level) -> whether that level is a breach
    clocks = {n: rep.current.calendar(n) for n in both}
    seen: set[int] = set()
    for statement in listed:
        for task_id, node, wf_, is_counted, e, stop, deadline in session.execute(sa.text(statement)):
            if task_id in seen:
                continue
            seen.add(task_id)
            if not is_counted:
                others[task_id] = (None, None)
                continue
            tallies = slot(node, wf_ if by_wf else None)
            for c, tally in (("cur", tallies[4]), ("cand", tallies[5])):
                key = (c, node, sum(1 for t in ladders[c][node][0] if e > t))  # the level, as ``_classed`` counts it
                if key not in breaches:
                    breaches[key] = at_level(configs[c], node, key[2]).breached
                if breaches[key]:
                    tally.late.append(e - sla[c][node])  # the deadline is where E reaches the SLA (``add``)
            if deadline is not None:  # breached as recorded: as ``recorded`` counts it
                tallies[3].late.append(clocks[node].between(when(deadline), when(stop)))
    yield from _by_id(session, others)


def _stored_nodes(session: Session, leave: set[str]) -> list[str]:
    """The nodes visit_fact has visits of, but ``leave``: one index probe each (a loose index scan)."""
    out: list[str] = []
    last = None
    while True:
        where = "" if last is None else " WHERE node > :last"
        found = session.execute(sa.text(f"SELECT MIN(node) FROM visit_fact{where}"), {"last": last} if last else {})
        last = found.scalar_one()
        if last is None:
            return [n for n in out if n not in leave]
        out.append(last)


def _span(session: Session) -> tuple[datetime | None, datetime | None]:
    first, last = session.execute(
        sa.select(sa.func.min(TASK.c.entered_at), sa.func.max(TASK.c.entered_at)).where(TASK.c.status != "skipped")
    ).one()
    return first, last


class NoVisits(Conflict):
    """The period holds no node visit: nothing to compare."""

    def __init__(self, period: Period, span: tuple[datetime | None, datetime | None], tz: str) -> None:
        message = _("no node visit entered between {start} and {end}: nothing to replay").format(
            start=shown(period.start, tz), end=shown(period.end, tz)
        )
        first, last = span
        if first is None:
            hint = _("The store has no node visits yet.")
        else:
            hint = _("The store's visits entered from {first} to {last}; pick --from and --to inside.").format(
                first=shown(first, tz), last=shown(last, tz)
            )
        super().__init__(message, hint=hint)
