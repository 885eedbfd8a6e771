"""Breach forecast (SPEC 9.4): how likely each open task is to finish after its deadline.

For a running task at node N at clock ``now`` (all times business time in N's calendar):

    history  D = durations of N's visits completed in [now - window, now) (holds left out),
                 at most the ``sample`` most recent ones
    waited   w = business time the task has run (holds left out)
    left     r = business time to its deadline (``workflow.task_view``'s seconds_left)
    ahead    k = running tasks of the same node and owner role due before it (earlier deadline;
                 ties: entered earlier), i.e. its place in the queue
    pace     λ = the node's pace when busy: over every run of 20 consecutive completions in the
                 history, completions per business hour; the 90th percentile of those (its capacity
                 when it had work queued; a node that works many tasks at once shows a high pace,
                 and its queue weighs little)

    p_history = S(w + r) / S(w)          S(x): share of D longer than x (a visit that has lasted
                                         w, outlasting its deadline)
    p_queue   = min(P(Poisson(λ r) < k), even at its best pace the node does not finish the k
                    trust)               ahead in the time left; trust: of the past visits this
                                         estimate would have warned at their entry (ahead then: the
                                         visits running when it came in), the share that ran late
                                         (1 before any), so a node whose visits take their own time
                                         whatever the queue is judged by its history alone
    p_breach  = max(p_history, p_queue)

A task past its deadline is breached (``workflow.is_breached``): 1. Fewer than ``min_history``
visits in the window: no figure (None), and the reason says so. A held task's clock is stopped:
no figure either. Cheap and explainable: no model weights, one pass over sorted lists.

The live forecast reads the histories and the queue positions with window functions
(``ROW_NUMBER() OVER (PARTITION BY ...)``) and a node's business time by bisect over its
calendar's days; the backtest replays a period at 15-minute instants in one chronological pass,
feeding each instant only visits completed before it. One ``Tracker`` builds a node's history for
both, so the backtest scores the model the live forecast runs.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property, lru_cache
from operator import itemgetter
from typing import TYPE_CHECKING, overload

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from ffctl.core import workflow
from ffctl.core.durations import approx_duration
from ffctl.core.models import Task, TaskAssignee, TaskStep
from ffctl.core.store import is_postgresql
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

PACE_VISITS = 20  # the node's pace: runs of 20 consecutive completions (min_history, if fewer)
PACE_QUANTILE = 0.9  # ... its pace when busy: 9 runs in 10 were slower (the fastest is luck, the median idle time)
QUEUE_WARNS = 0.5  # a past visit the queue estimate would have warned at entry (its track record)
STEP = timedelta(minutes=15)  # the backtest's instants
FINISHED = ("done", "rejected")  # a visit that ended with its node's work done (or sent back)
FINISHED_SQL = "task.status IN ('done', 'rejected')"  # as ix_task_finished's predicate says it
ALERT_STEP = "forecast"  # the task_step row that makes a forecast alert fire once per task
TASK = Task.__table__
UTC = timezone.utc


# --- the model ---------------------------------------------------------------------------------


@dataclass
class History:
    """A node's completed visits as the model reads them at one clock."""

    durations: list  # business seconds, sorted
    pace: float | None  # completions per business second at its best; inf: many at one instant
    queued: int = 0  # past visits the queue estimate would have warned at their entry
    queued_late: int = 0  # ... of which ended past their deadline

    @property
    def count(self) -> int:
        return len(self.durations)

    @cached_property
    def pace_text(self) -> str:
        """The pace as a reason says it, per business hour."""
        return "?" if self.pace is None else _("many at once") if math.isinf(self.pace) else f"{self.pace * 3600:.1f}"

    @cached_property
    def track_text(self) -> str:
        """The queue's track record as a reason adds it (``trust``); empty before any."""
        if not self.queued:
            return ""
        return ngettext(
            "; of {queued} past visit that came in behind a queue this node could not clear in time, {late} ran late",
            "; of {queued} past visits that came in behind a queue this node could not clear in time, {late} ran late",
            self.queued,
        ).format(queued=self.queued, late=self.queued_late)

    @cached_property
    def per_hour(self) -> float | None:
        """The pace in JSON: completions per business hour (None: unknown, or many at once)."""
        return None if self.pace is None or math.isinf(self.pace) else round(self.pace * 3600, 2)

    @property
    def trust(self) -> float:
        """How far the queue estimate has held here: the late share of the visits it would have
        warned at entry; 1 before any (the queue speaks as the Poisson count says)."""
        return (self.queued_late + 1) / (self.queued + 1)


class Tracker:
    """A node's completed visits in the order they completed, as the model reads them: durations,
    paces of runs, and the queue estimate's track record. One owner for the live forecast (fed the
    window's sample) and the backtest (fed visits as they complete, the old ones dropped)."""

    def __init__(self, run: int) -> None:
        self.run = run
        self.visits: deque = deque()  # (done_at, c_entered, c_done, duration, queued, late), oldest first
        self.durations: list = []  # sorted
        self.entered: list = []  # business times of entry, sorted
        self.done: list = []  # business times of completion, sorted
        self.runs: deque = deque()  # (done_at of the run's first, pace), in order
        self.paces: list = []  # sorted
        self.queued = self.queued_late = 0

    def add(self, done_at, c_entered: float, c_done: float, duration: float, allowed: float) -> None:
        """One visit completed at ``c_done`` (business seconds), ``allowed`` its SLA (holds included):
        was it behind a queue the estimate would have warned about at its entry, and was it late?"""
        ahead = (len(self.done) - bisect_right(self.done, c_entered)) - (
            len(self.entered) - bisect_right(self.entered, c_entered)
        )
        queued = queue_warns(ahead, brisk(self.paces), allowed)
        late = duration > allowed
        self.queued += queued
        self.queued_late += queued and late
        self.visits.append((done_at, c_entered, c_done, duration, queued, late))
        insort(self.durations, duration)
        insort(self.entered, c_entered)
        insort(self.done, c_done)
        if len(self.visits) >= self.run:
            first = self.visits[-self.run]
            pace = run_pace(c_done - first[2], self.run)
            self.runs.append((first[0], pace))
            insort(self.paces, pace)

    def drop(self, since, keep: int) -> None:
        """Forget the visits completed before ``since`` and all but the ``keep`` latest."""
        visits = self.visits
        while visits and (visits[0][0] < since or len(visits) > keep):
            _at, c_entered, c_done, duration, queued, late = visits.popleft()
            for values, x in ((self.durations, duration), (self.entered, c_entered), (self.done, c_done)):
                del values[bisect_left(values, x)]
            self.queued -= queued
            self.queued_late -= queued and late
        while self.runs and (self.runs[0][0] < since or len(self.runs) > keep):  # runs that began before the window
            del self.paces[bisect_left(self.paces, self.runs.popleft()[1])]

    def history(self) -> History:
        return History(self.durations, brisk(self.paces), self.queued, self.queued_late)


def run_length(cfg: Config) -> int:
    """How many consecutive completions make one measure of the node's pace."""
    return max(2, min(PACE_VISITS, cfg.forecast.min_history))


def run_pace(span: float, run: int) -> float:
    """Completions per business second of ``run`` consecutive completions over ``span``; inf for
    a run done in no time (a batch)."""
    return math.inf if span <= 0 else (run - 1) / span


def brisk(paces: list) -> float | None:
    """The node's pace when busy: the PACE_QUANTILE of its runs' paces (sorted); None without any."""
    if not paces:
        return None
    return paces[min(len(paces) - 1, int(PACE_QUANTILE * len(paces)))]


def queue_late(ahead: int, pace: float | None, left: float) -> float:
    """P(Poisson(pace * left) < ahead): the tasks ahead are not all done in the time left."""
    if ahead <= 0 or pace is None or math.isinf(pace):
        return 0.0  # nobody ahead, no pace known (the history speaks alone), or a node done in batches
    mu = pace * max(left, 0.0)
    if mu <= 0:
        return 1.0
    spread = 12 * math.sqrt(mu) + 12
    if ahead > mu + spread:
        return 1.0
    first = max(0, int(mu - spread))
    if first >= ahead:
        return 0.0
    # terms j = first .. ahead - 1 of the Poisson mass, starting in log space (no overflow)
    term = math.exp(first * math.log(mu) - mu - math.lgamma(first + 1))
    total = 0.0
    for j in range(first, ahead):
        total += term
        term *= mu / (j + 1)
    return min(1.0, total)


def queue_warns(ahead: int, pace: float | None, left: float) -> bool:
    """``queue_late(...) >= 0.5`` (QUEUE_WARNS), summing the Poisson terms only near the median:
    mu - ln 2 <= median(Poisson(mu)) < mu + 1/3, and P(X < k) >= 1/2 exactly when k - 1 >= median."""
    if ahead <= 0 or pace is None or math.isinf(pace):
        return False
    mu = pace * max(left, 0.0)
    if ahead - 1 < mu - math.log(2):
        return False
    if ahead - 1 >= mu + 1 / 3:
        return True
    return queue_late(ahead, pace, left) >= QUEUE_WARNS


def p_history_of(history: History, waited: float, left: float) -> float:
    """S(waited + left) / S(waited), S(x) the share of the visits longer than x smoothed (+1 / +2) so it
    is never 0 or 1: of the past visits that lasted ``waited``, the share that went on past the
    deadline (the common denominator cancelled)."""
    d = history.durations
    waited = waited if waited > 0 else 0.0
    end = waited + left if left > 0 else waited
    return min(1.0, (len(d) - bisect_right(d, end) + 1) / (len(d) - bisect_right(d, waited) + 1))


def probability(history: History, waited: float, left: float, ahead: int) -> tuple[float, float, float]:
    """(p_breach, p_history, p_queue) of a running task; see the module's formulas."""
    p_history = p_history_of(history, waited, left)
    p_queue = min(queue_late(ahead, history.pace, left), history.trust) if ahead > 0 else 0.0
    return (p_history if p_history >= p_queue else p_queue), p_history, p_queue


def reaches(history: History, waited: float, left: float, ahead: int, threshold: float) -> bool:
    """``probability(...)[0] >= threshold``, the queue's Poisson sum only when it can decide (the
    backtest asks this of every running task at every instant)."""
    if p_history_of(history, waited, left) >= threshold:
        return True
    return ahead > 0 and history.trust >= threshold and queue_late(ahead, history.pace, left) >= threshold


# --- the live forecast ---------------------------------------------------------------------------


def histories(session: Session, cfg: Config, nodes: Iterable[str], now: datetime) -> dict[str, History]:
    """Each node's history at ``now``: one query, the window's most recent ``sample`` visits per node."""
    nodes = [n for n in nodes if n in cfg.nodes]
    if not nodes:
        return {}
    settings = cfg.forecast
    since = now - timedelta(seconds=settings.window_seconds)
    # per node, its latest ``sample`` finished visits by key (ix_task_finished), in one statement
    raw = [sa.type_coerce(TASK.c[c], sa.String).label(c) for c in ("entered_at", "completed_at")]  # as in _queue
    latest = [
        sa.select(TASK.c.node, *raw, TASK.c.paused_seconds, TASK.c.sla_seconds)
        .where(sa.text(FINISHED_SQL), TASK.c.node == node, TASK.c.completed_at >= since, TASK.c.completed_at < now)
        .order_by(TASK.c.completed_at.desc())
        .limit(settings.sample)
        .subquery()
        for node in nodes
    ]
    rows = session.execute(sa.union_all(*(sa.select(q) for q in latest)))
    found: dict[str, list] = {n: [] for n in nodes}
    for node, entered, completed, paused, sla in rows:
        found[node].append((_aware(completed), _aware(entered), paused or 0, sla))
    out = {}
    for node, visits in found.items():
        offset = cfg.calendar(node).since(since)  # business seconds from the window's start
        track = Tracker(run_length(cfg))
        visits.sort(key=itemgetter(0))
        for completed, entered, paused, sla in visits:
            c_entered, c_done = offset(entered), offset(completed)
            track.add(completed, c_entered, c_done, max(c_done - c_entered - paused, 0.0), sla + paused)
        out[node] = track.history()
    return out


def _queue(nodes: list[str], now: datetime, task_ids: list[int] | None = None):
    """Running tasks of ``nodes`` (entered by ``now``) with their place in their queue (``ahead``),
    set-based; the places count every running task, then ``task_ids`` (if given) picks the rows.
    Times come as the driver gives them (``_open`` parses them: SQLite's DateTime type costs a
    regular expression per value, most of a 100k-task forecast)."""
    raw = {c: sa.type_coerce(TASK.c[c], sa.String).label(c) for c in ("deadline", "risk_at")}
    ranked = (
        sa.select(
            TASK.c.id,
            TASK.c.order_id,
            TASK.c.node,
            TASK.c.owner,
            *raw.values(),
            TASK.c.sla_state,
            (
                sa.func.row_number().over(
                    partition_by=(TASK.c.node, TASK.c.owner), order_by=(TASK.c.deadline, TASK.c.entered_at, TASK.c.id)
                )
                - 1
            ).label("ahead"),
        )
        .where(TASK.c.status == "open", TASK.c.held_at.is_(None), TASK.c.node.in_(nodes), TASK.c.entered_at <= now)
        .subquery()
    )
    stmt = sa.select(ranked)
    return stmt if task_ids is None else stmt.where(ranked.c.id.in_(task_ids))


@dataclass(slots=True)
class _Open:
    id: int
    order_id: str
    node: str
    owner: str | None
    deadline: datetime
    risk_at: object  # as the driver gave it: only the sweep's alerts read it (``_aware``)
    sla_state: str
    ahead: int


def _open(session: Session, stmt) -> Iterator[_Open]:
    parse = datetime.fromisoformat
    for id_, order_id, node, owner, deadline, risk_at, sla_state, ahead in session.execute(stmt).yield_per(5000):
        # _aware, inline: a 100k-task forecast parses 100k deadlines (SQLite: text; PostgreSQL: naive UTC)
        if deadline is not None:
            deadline = (parse(deadline) if isinstance(deadline, str) else deadline).replace(tzinfo=UTC)
        yield _Open(id_, order_id, node, owner, deadline, risk_at, sla_state, ahead)


def _reason(history: History, row, waited: float, left: float, p_history: float) -> str:
    """'14 ahead, 3.1 done per business hour, 42m of SLA left; 9% of 340 past visits ...'"""
    said = _(
        "{ahead} ahead, {pace} done per business hour, {left} of SLA left; {share} of the last {n:,} visits "
        "that had run {waited} ran past {limit}"
    ).format(
        ahead=row.ahead,
        pace=history.pace_text,
        left=_minutes(round(max(left, 0) / 60)),
        share=f"{p_history:.0%}",
        n=history.count,
        waited=_minutes(round(waited / 60)),
        limit=_minutes(round((waited + max(left, 0)) / 60)),
    )
    return said + history.track_text if row.ahead else said  # the queue held to its record (History.trust)


@lru_cache(maxsize=4096)
def _minutes(minutes: int) -> str:
    """A reason's durations, to the minute (a 100k-task forecast words the same few hundred)."""
    return approx_duration(minutes * 60)


@dataclass(slots=True)
class Estimate:
    """One running task's figure and what it was made of; ``reason`` words it."""

    p: float | None
    row: _Open
    history: History | None
    waited: float = 0.0
    left: float = 0.0  # business seconds to the deadline; negative: past it
    p_history: float = 0.0
    late: bool = False  # past its deadline (``workflow.is_breached``)

    def reason(self, cfg: Config) -> str:
        if self.late:
            return _("past its deadline by {late}").format(late=_minutes(round(-self.left / 60)))
        if self.p is None:
            least, n = cfg.forecast.min_history, 0 if self.history is None else self.history.count
            return ngettext(
                "fewer than {least} completed visit in the last {window} (has {n})",
                "fewer than {least} completed visits in the last {window} (has {n})",
                least,
            ).format(least=least, window=approx_duration(cfg.forecast.window_seconds), n=n)
        assert self.history is not None  # p is known: there was history enough
        return _reason(self.history, self.row, self.waited, self.left, self.p_history)

    def shown(self, cfg: Config) -> dict:
        """The row ``sla forecast`` shows (JSON keys)."""
        row, history = self.row, self.history
        return {
            "order_id": row.order_id,
            "task_id": row.id,
            "node": row.node,
            "owner": row.owner,
            "deadline": row.deadline,
            "ahead": row.ahead,
            "seconds_left": round(self.left),
            "waited_seconds": round(self.waited),
            "pace_per_hour": None if history is None else history.per_hour,
            "history": 0 if history is None else len(history.durations),
            "p_breach": None if self.p is None else round(self.p, 3),
            "reason": self.reason(cfg),
        }


class _Clock:
    """A node's business seconds near ``now`` as a running total over epoch seconds, for many tasks
    at once: one bisect per deadline instead of a walk through the calendar (``utc_days``, the
    calendar's own table of its days); a time outside the span it covers asks the calendar."""

    def __init__(self, cal, now: datetime, until: datetime) -> None:
        self.cal, self.now, self.x_now = cal, now, now.timestamp()
        self.starts = None
        if hasattr(cal, "utc_days"):  # a business calendar, not WALL_CLOCK
            first = int(self.x_now // 86400) - 7  # a week of past deadlines: "past its deadline by"
            last = int(until.timestamp() // 86400) + 1
            self.starts, self.ends, self.totals = [], [], []
            for _day, total, ranges in cal.utc_days(first, last):
                for a, b in ranges:
                    self.starts.append(a)
                    self.ends.append(b)
                    self.totals.append(total)
                    total += b - a
            self.lo, self.hi = first * 86400.0, (last + 1) * 86400.0
            self.total_now = self._total(self.x_now)

    def _total(self, x: float) -> float:
        i = bisect_right(self.starts, x) - 1
        return 0.0 if i < 0 else self.totals[i] + (x if x < self.ends[i] else self.ends[i]) - self.starts[i]

    def left(self, deadline: datetime) -> float:
        """Business seconds from ``now`` to ``deadline``; negative: past it by that much."""
        x = deadline.timestamp()
        if self.starts is None:
            return x - self.x_now
        if self.lo <= x < self.hi:
            return self._total(x) - self.total_now
        return self.cal.between(self.now, deadline) if x > self.x_now else -self.cal.between(deadline, self.now)


class View:
    """One node at one clock: its history and calendar, ready to assess its running tasks."""

    def __init__(self, cfg: Config, node: str, history: History | None, now: datetime) -> None:
        self.now, self.history = now, history
        self.sla = cfg.nodes[node].sla_seconds
        cal = cfg.calendar(node)
        self.clock = _Clock(cal, now, cal.add(now, self.sla))  # a running task is due within its SLA
        self.enough = history is not None and history.count >= cfg.forecast.min_history

    def assess(self, row: _Open) -> Estimate:
        """The p_breach of one running task (``_open``'s rows); the reason is worded on demand."""
        left = self.clock.left(row.deadline)
        if workflow.is_breached(row.deadline, None, self.now):
            return Estimate(1.0, row, self.history, left=left, late=True)
        # deadline = entered + sla + paused (workflow's clocks), so what it has run, holds left out, is sla - left
        waited = max(self.sla - left, 0.0)
        if not self.enough:
            return Estimate(None, row, self.history, waited, left)
        assert self.history is not None  # enough: there is history
        p, p_history, _p_queue = probability(self.history, waited, left, row.ahead)
        return Estimate(p, row, self.history, waited, left, p_history)


def views(cfg: Config, nodes: Iterable[str], hist: dict[str, History], now: datetime) -> dict[str, View]:
    return {n: View(cfg, n, hist.get(n), now) for n in nodes}


def forecast(
    session: Session,
    cfg: Config,
    now: datetime,
    *,
    node: str | None = None,
    role: str | None = None,
    threshold: float | None = None,
    late: bool = True,
) -> list[dict]:
    """Every running task (of ``node``, assigned to ``role``) with its p_breach and reason, most
    likely first; ``threshold``: only those at or above it (tasks without a figure are left out);
    ``late`` False: not those already past their deadline. Only the nodes of the tasks kept have
    their history read."""
    nodes = [node] if node is not None else list(cfg.nodes)
    stmt = _queue(nodes, now)
    if role is not None:
        ranked = stmt.subquery()
        assigned = sa.or_(
            ranked.c.owner == role,
            sa.exists().where(col(TaskAssignee.task_id) == ranked.c.id, col(TaskAssignee.role) == role),
        )
        stmt = sa.select(ranked).where(assigned)
    rows = [row for row in _open(session, stmt) if late or not workflow.is_breached(row.deadline, None, now)]
    present = {row.node for row in rows}
    nodes = [n for n in nodes if n in present]
    kept = []
    seen = views(cfg, nodes, histories(session, cfg, nodes, now), now)
    for row in rows:
        estimate = seen[row.node].assess(row)
        if threshold and (
            estimate.p is None or estimate.p < threshold
        ):  # 0 keeps every task, those without a figure too
            continue
        kept.append(estimate)
    kept.sort(key=lambda e: (-(e.p if e.p is not None else -1), e.row.deadline, e.row.id))
    return [e.shown(cfg) for e in kept]


def for_tasks(session: Session, cfg: Config, now: datetime, task_ids: list[int]) -> dict[int, tuple[float | None, str]]:
    """p_breach and reason of these open tasks (a page of ``task list``); held ones get None."""
    if not task_ids:
        return {}
    nodes = sorted(
        {
            n
            for (n,) in session.execute(sa.select(TASK.c.node).where(TASK.c.id.in_(task_ids)).distinct())
            if n in cfg.nodes
        }
    )
    hist = histories(session, cfg, nodes, now)
    out: dict[int, tuple[float | None, str]] = {}
    if nodes:
        seen = views(cfg, nodes, hist, now)
        for row in _open(session, _queue(nodes, now, task_ids)):
            estimate = seen[row.node].assess(row)
            out[row.id] = (None if estimate.p is None else round(estimate.p, 3), estimate.reason(cfg))
    for task_id in task_ids:
        out.setdefault(task_id, (None, _("on hold: its clock is stopped")))
    return out


def alerts_due(session: Session, cfg: Config, now: datetime) -> list:
    """Tasks of nodes with ``forecast_alert`` whose p_breach has reached it while still on track
    (before their warn_at point) and that were not alerted before: (row, p, reason) each."""
    nodes = [name for name, spec in cfg.nodes.items() if spec.forecast_alert is not None]
    if not nodes:
        return []
    ranked = _queue(nodes, now).subquery()
    told = sa.select(col(TaskStep.task_id)).where(
        col(TaskStep.task_id) == ranked.c.id, col(TaskStep.step) == ALERT_STEP
    )
    candidates = []
    for row in _open(session, sa.select(ranked).where(ranked.c.sla_state == "on_track", ~sa.exists(told))):
        risk_at = _aware(row.risk_at)
        if risk_at is not None and risk_at > now:  # at risk already: the at-risk notice tells them
            candidates.append(row)
    if not candidates:
        return []  # the histories only when some task may be told
    at_nodes = sorted({row.node for row in candidates})
    seen = views(cfg, at_nodes, histories(session, cfg, at_nodes, now), now)
    out = []
    for row in candidates:
        estimate = seen[row.node].assess(row)
        alert = cfg.nodes[row.node].forecast_alert
        if estimate.p is not None and alert is not None and estimate.p >= alert:
            out.append((row, estimate.p, estimate.reason(cfg)))
    return out


# --- the backtest ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Visit:
    id: int
    node: str
    part: tuple  # (node, owner): its queue
    key: tuple  # its place in the queue: (deadline, entered_at, id)
    entered_at: datetime
    deadline: datetime
    stop: datetime | None  # when its clock stopped (held or closed)
    done_at: datetime | None  # completed (or rejected): joins the history then
    c_entered: float  # business seconds since the anchor
    c_deadline: float
    c_done: float | None
    paused: float
    duration: float | None
    target: bool = False
    warned_at: datetime | None = None
    lead: float | None = None


def backtest(
    session: Session,
    cfg: Config,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    threshold: float = 0.5,
    node: str | None = None,
    detail: bool = False,
) -> dict:
    """Replay [start, end) at 15-minute instants; at each, predict every running task from the visits
    completed before that instant only, and compare the first warnings with the ``warn_at`` rule's.

    Scored tasks: entered on or after ``start`` with their deadline before ``end`` (so both could
    warn in time) and their outcome known at ``now``. Lead time: business time from the warning
    to the deadline, over the breached tasks warned. Held-and-released visits are replayed with
    their final paused time (holds are rare; their history is not replayed). The rule is scored at
    the same steps (a sweep every 15 minutes tells at the first step at or after its risk time);
    ``detail`` adds each scored task's first warning and the rule scored at its exact risk time
    (``warn_at_exact``, as if swept continuously)."""
    window = timedelta(seconds=cfg.forecast.window_seconds)
    least, sample = cfg.forecast.min_history, cfg.forecast.sample
    nodes = [node] if node is not None else list(cfg.nodes)
    anchor = start - window
    visits: list[_Visit] = []
    risk: dict[int, datetime] = {}
    # business seconds since ``anchor`` (negative before it), by bisect: a replay counts 500k times
    clocks = {n: _Clock(cfg.calendar(n), anchor, max(end, now) + timedelta(days=2)) for n in nodes}
    for r in _replayed(session, nodes, since=start - window, end=end):
        since_anchor = clocks[r.node].left
        entered, deadline, held, completed = r.entered_at, r.deadline, r.held_at, r.completed_at

        c_entered = since_anchor(entered)  # and the deadline's, entered + sla + paused (workflow's clocks)
        stop = held if held is not None else completed
        done_at = completed if r.status in FINISHED and completed is not None else None
        paused = r.paused_seconds or 0
        c_done = None if done_at is None else since_anchor(done_at)
        v = _Visit(
            r.id,
            r.node,
            (r.node, r.owner),
            (deadline, entered, r.id),
            entered,
            deadline,
            stop,
            done_at,
            c_entered,
            c_entered + r.sla_seconds + paused,
            c_done,
            paused,
            None if c_done is None else max(c_done - c_entered - paused, 0.0),
        )
        v.target = entered >= start and deadline < end and (stop is not None or deadline <= now)
        if v.target:
            risk[r.id] = _aware(r.risk_at)
        visits.append(v)

    events: list[tuple] = []  # (time, order, visit): enter 0, stop 1, joins history 2
    for v in visits:
        events.append((v.entered_at, 0, v.id))
        if v.stop is not None:
            events.append((v.stop, 1, v.id))
        if v.done_at is not None:
            events.append((v.done_at, 2, v.id))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    by_id = {v.id: v for v in visits}

    queues: dict[tuple, list] = {}  # part -> sorted keys of its running visits
    pending: dict[tuple, dict] = {}  # part -> {id: visit} running targets not yet warned
    run = run_length(cfg)
    tracks = {n: Tracker(run) for n in nodes}
    calendars = {n: cfg.calendar(n) for n in nodes}
    last_c: dict[str, float] = {}
    dirty: set = set(nodes)
    i = 0
    t = start
    while t < end:
        while i < len(events) and events[i][0] < t:
            at, kind, vid = events[i]
            v = by_id[vid]
            i += 1
            dirty.add(v.node)
            if kind == 0:
                if v.stop is None or v.stop > at:
                    insort(queues.setdefault(v.part, []), v.key)
                    if v.target:
                        pending.setdefault(v.part, {})[vid] = v
            elif kind == 1:
                q = queues.get(v.part)
                if q is not None:
                    j = bisect_left(q, v.key)
                    if j < len(q) and q[j] == v.key:
                        del q[j]
                pending.get(v.part, {}).pop(vid, None)
            else:
                assert v.c_done is not None and v.duration is not None  # done: its completion's event
                tracks[v.node].add(v.done_at, v.c_entered, v.c_done, v.duration, v.c_deadline - v.c_entered)
        for n in nodes:
            cal = calendars[n]
            c_t = cal.between(anchor, t) if t > anchor else 0.0
            if last_c.get(n) == c_t and n not in dirty:
                continue  # closed for the whole step and nothing moved: the same predictions
            last_c[n] = c_t
            dirty.discard(n)
            track = tracks[n]
            track.drop(t - window, sample)
            if len(track.durations) < least:
                continue
            history = track.history()
            for part, waiting in pending.items():
                if part[0] != n or not waiting:
                    continue
                q = queues[part]
                for vid, v in list(waiting.items()):
                    if t >= v.deadline:
                        del waiting[vid]
                        continue
                    left = v.c_deadline - c_t
                    if reaches(history, c_t - v.c_entered - v.paused, left, bisect_left(q, v.key), threshold):
                        v.warned_at, v.lead = t, left
                        del waiting[vid]
        t += STEP
    targets = [v for v in visits if v.target]
    result = _score(cfg, targets, risk, now, start=start, end=end, threshold=threshold, exact_too=detail)
    if detail:  # each scored task's first warning (tests; a period holds many)
        result["warnings"] = {v.id: v.warned_at for v in targets}
    return result


def _replayed(session: Session, nodes: list[str], *, since: datetime, end: datetime) -> Iterator:
    """Visits of ``nodes`` that entered before ``end`` and still ran at ``since``, earliest first.

    Read through the driver and parsed here: SQLite's DateTime type parses each text with a
    regular expression, a third of a 30-day replay's time."""
    from ffctl.core.bulk import stored_time, time_texts

    stop = workflow.stopped_sql("task")
    sql = sa.text(
        "SELECT id, node, owner, status, entered_at, deadline, risk_at, held_at, completed_at, paused_seconds, "
        f"sla_seconds FROM task WHERE node IN :nodes AND deadline IS NOT NULL AND entered_at < :end "
        f"AND ({stop} IS NULL OR {stop} >= :since) ORDER BY entered_at, id"
    ).bindparams(sa.bindparam("nodes", expanding=True))
    stamp = stored_time if is_postgresql(session) else time_texts()
    result = session.execute(sql, {"nodes": nodes, "end": stamp(end), "since": stamp(since)})
    for row in result.yield_per(20000):
        yield _Row(
            row.id,
            row.node,
            row.owner,
            row.status,
            _aware(row.entered_at),
            _aware(row.deadline),
            row.risk_at,
            _aware(row.held_at),
            _aware(row.completed_at),
            row.paused_seconds,
            row.sla_seconds,
        )


@dataclass(slots=True)
class _Row:
    id: int
    node: str
    owner: str | None
    status: str
    entered_at: datetime
    deadline: datetime
    risk_at: object  # as the driver gave it: parsed only for the scored visits
    held_at: datetime | None
    completed_at: datetime | None
    paused_seconds: float | None
    sla_seconds: int


@overload
def _aware(value: None) -> None: ...
@overload
def _aware(value: datetime | str) -> datetime: ...
@overload
def _aware(value: object) -> datetime | None: ...
def _aware(value) -> datetime | None:
    """A time as the driver returns it (SQLite: text; PostgreSQL: naive UTC) -> aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


def _score(
    cfg: Config, targets: list[_Visit], risk: dict, now: datetime, *, start, end, threshold, exact_too=False
) -> dict:
    """Precision, recall, F1 and median lead of the forecast and of the warn_at rule, overall and per node."""

    def blank():
        return {
            "tasks": 0,
            "breached": 0,
            "forecast": [0, 0, []],
            "rule": [0, 0, []],
            "exact": [0, 0, []],
        }  # tp, fp, leads

    per: dict[str, dict] = {}
    cals: dict = {}
    total = blank()
    for v in targets:
        truth = workflow.is_breached(v.deadline, v.stop, now)
        told = _rule_instant(risk[v.id], v, start)
        rule_warned = told is not None
        cal = cals.get(v.node) or cals.setdefault(v.node, cfg.calendar(v.node))
        rule_lead = cal.between(told, v.deadline) if rule_warned else None
        at = risk[v.id]  # the rule as if swept continuously: at its exact risk time (shown by bench/forecast.py)
        exact = at is not None and at > v.entered_at and at < v.deadline and (v.stop is None or v.stop > at)
        exact_lead = cal.between(at, v.deadline) if exact else None
        for acc in (per.setdefault(v.node, blank()), total):
            acc["tasks"] += 1
            acc["breached"] += truth
            for name, warned, lead in (
                ("forecast", v.warned_at is not None, v.lead),
                ("rule", rule_warned, rule_lead),
                ("exact", exact, exact_lead),
            ):
                if warned and truth:
                    acc[name][0] += 1
                    acc[name][2].append(lead)
                elif warned:
                    acc[name][1] += 1

    def figures(acc: dict) -> dict:
        out = {"tasks": acc["tasks"], "breached": acc["breached"]}
        for name, label in (("forecast", "forecast"), ("rule", "warn_at")) + (
            (("exact", "warn_at_exact"),) if exact_too else ()
        ):
            tp, fp, leads = acc[name]
            fn = acc["breached"] - tp
            precision = tp / (tp + fp) if tp + fp else None
            recall = tp / (tp + fn) if tp + fn else None
            f1 = (
                (2 * precision * recall / (precision + recall))
                if precision and recall
                else (0.0 if precision is not None or recall is not None else None)
            )
            out[label] = {
                "warned": tp + fp,
                "true_warnings": tp,
                "precision": _r(precision),
                "recall": _r(recall),
                "f1": _r(f1),
                "median_lead_seconds": round(statistics.median(leads)) if leads else None,
            }
        return out

    return {
        "from": start,
        "to": end,
        "threshold": threshold,
        "step_seconds": int(STEP.total_seconds()),
        **figures(total),
        "nodes": [{"node": n, **figures(acc)} for n, acc in per.items()],
    }


def _rule_instant(risk_at: datetime | None, v: _Visit, start: datetime) -> datetime | None:
    """The replay's first instant at which the warn_at rule tells ``v``: the first 15-minute step at
    or after its risk time while it still runs and is not yet due, as the forecast is scored (a sweep
    every 15 minutes); None if no step falls there."""
    if risk_at is None:
        return None
    steps = -((start - risk_at) // STEP)  # ceil((risk_at - start) / STEP)
    at = start + steps * STEP
    if at <= v.entered_at:  # the replay sees a task from the first step after it entered
        at += STEP
    return at if at < v.deadline and (v.stop is None or v.stop >= at) else None


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def likely(session: Session, cfg: Config, now: datetime, *, threshold: float = 0.5, limit: int = 15) -> list[dict]:
    """The dashboard's "likely to breach" panel: the open tasks not yet past their deadline at or
    above ``threshold``, most likely first (the breached ones have panels of their own)."""
    return forecast(session, cfg, now, threshold=threshold, late=False)[:limit]
