"""The SLA sweep: deadlines turned into action, each (task, step) exactly once.

A task's clocks (``workflow.clocks``) say when the sweep next has something to do for it:
``next_action_at`` is risk_at while on track, the deadline while at risk, then the time of each
escalation step. The sweep reads only ``status = 'open' AND next_action_at <= now`` through
``ix_task_due``, so its cost follows the due work, never the number of open tasks.

Exactly once. A step fires only if this transaction inserted its ``task_step(task_id, step)``
row (steps ``at_risk``, ``breached``, ``esc:<index>``); the row, the action, its audit events
and its outbox rows (``dedupe_key = task:<id>:<step>``) commit together or not at all. Due
tasks are claimed in batches, one transaction each: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
(concurrent sweeps take disjoint batches, and one waits at the end for due tasks another
transaction still holds; the order row is locked too, in the same statement, so an auto action
never deadlocks with a person advancing the order), ``BEGIN IMMEDIATE`` on
SQLite (sweeps queue for the write lock and each sees the previous one's work). A sweep killed
halfway loses only its open batch, which the next sweep redoes; a late sweep fires every step
due by ``now`` in ladder order.

One message per person. Each batch queues what it tells people as digest parts (one per person
and channel, in the batch's transaction); when the sweep ends, ``outbox.merge_parts`` merges all
parts into one message per person and channel (see core/outbox.py for why a killed sweep still
sends each item once). A task that becomes at risk and breached in one sweep gets only the
breach notice; its at_risk event is still recorded (it did pass through at risk), saying so.

Backfill. ``backfill`` runs these same batches over freshly imported orders at the import's
clock, inside the import's transaction, with notifications suppressed and events marked: the
history up to the import is recorded as applied on import, and the next sweep fires only what
falls due after it.

The sweep only queues notifications; delivering them is core/notify.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit, outbox, workflow
from ffctl.core.bulk import among, stored_time, time_texts
from ffctl.core.clock import shown, zone
from ffctl.core.durations import format_duration
from ffctl.core.errors import FfctlError
from ffctl.core.models import Order, Task, TaskAssignee, UTCDateTime
from ffctl.core.store import is_postgresql
from ffctl.i18n import N_, _

if TYPE_CHECKING:
    from ffctl.core.config import Config, EscalationStep
    from ffctl.core.store import Store

SWEEP_ACTOR = "sla-sweep"
BACKFILL_ACTOR = "sla-backfill"  # who applied the SLA history of orders imported with --backfill
BATCH = 1000  # due tasks per transaction: a catch-up sweep pays a claim and a commit per batch
BACKFILL_CHUNK = 500  # order ids per backfill claim: an IN list SQLite takes comfortably
BUSY_WAIT_SECONDS = 30  # how long a sweep waits for due tasks other transactions hold (PostgreSQL)
ACTIONS = ("remind", "escalate", "notify", "auto_approve", "auto_reject")
#: Audit event written for each kind of step (auto actions: workflow writes its own event).
EVENT_OF = {
    "at_risk": "at_risk",
    "breached": "breached",
    "remind": "reminded",
    "escalate": "escalated",
    "notify": "notified",
}

#: order fields a step may name as a recipient (``order.sales_rep``), read with the claimed task
ORDER_FIELDS = ("sales_rep",)

TASK = Task.__table__
ORDERS = Order.__table__
ASSIGNEE = TaskAssignee.__table__

_duration = lru_cache(maxsize=1024)(format_duration)  # a config's few durations, worded per step


# --- the report ----------------------------------------------------------------------------------


@dataclass
class SweepReport:
    """What one sweep did (or, in a dry run, would do)."""

    now: datetime
    dry_run: bool = False
    at_risk: int = 0
    breached: int = 0
    actions: dict = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    rule_hits: int = 0
    notifications_queued: int = 0
    items: list = field(default_factory=list)
    busy: int = 0  # due tasks still held by other transactions when the sweep gave up waiting
    forecast: int = 0  # tasks whose breach forecast reached their node's forecast_alert (SPEC 9.4)

    def as_dict(self) -> dict:
        """The JSON shape of SPEC section 5."""
        return {
            "now": self.now,
            "dry_run": self.dry_run,
            "at_risk": self.at_risk,
            "breached": self.breached,
            "actions": dict(self.actions),
            "forecast_alerts": self.forecast,
            "rule_hits": self.rule_hits,
            "notifications_queued": self.notifications_queued,
            "items": list(self.items),
        }


class _DryRun(Exception):
    """Raised at the end of a dry run so its transaction rolls back."""


# --- entry point -----------------------------------------------------------------------------------


def sweep(
    store: Store,
    cfg: Config,
    *,
    now: datetime,
    actor: str = SWEEP_ACTOR,
    dry_run: bool = False,
    batch: int = BATCH,
    rules: bool = True,
) -> SweepReport:
    """Apply every SLA transition and escalation step due by ``now``, then run the rules.

    A real run commits batch by batch; a dry run runs the very same code in one transaction
    and rolls it back, so it reports exactly what a real run at that moment would do.
    """
    report = SweepReport(now=now, dry_run=dry_run)
    if dry_run:
        try:
            with store.session(write=True) as session:
                _drain(
                    store,
                    lambda: _sweep_batch(session, cfg, now, actor, batch, report, expire=True),
                    lambda: _due_left(session, now),
                    report,
                )
                _finish(session, cfg, now, actor, report, rules=rules, dry_run=True)
                raise _DryRun
        except _DryRun:
            pass
        return report

    def one_batch() -> int:
        with store.session(write=True) as session:
            return _sweep_batch(session, cfg, now, actor, batch, report)

    def due_left() -> int:
        with store.session() as session:
            return _due_left(session, now)

    _drain(store, one_batch, due_left, report)
    with store.session(write=True) as session:
        _finish(session, cfg, now, actor, report, rules=rules, dry_run=False)
    return report


def _finish(
    session: Session, cfg: Config, now: datetime, actor: str, report: SweepReport, *, rules: bool, dry_run: bool
) -> None:
    """Run the rules (their alerts join the digests), then merge every digest part into one
    message per person and channel, in one transaction."""
    _forecast_alerts(session, cfg, now, actor, report)
    if rules:
        _run_rules(session, cfg, now, actor, report, dry_run=dry_run)
    # parts queued per batch, merged once at the end: a killed sweep's parts wait for the rerun's merge
    report.notifications_queued += outbox.merge_parts(session, cfg, now=now)


def backfill(
    session: Session,
    cfg: Config,
    order_ids: list[str],
    *,
    now: datetime,
    actor: str = BACKFILL_ACTOR,
    report: SweepReport | None = None,
) -> SweepReport:
    """Apply, in the caller's transaction, every SLA step of these orders due by ``now`` as the
    sweep would (same plan, same handlers, same exactly-once rows), telling nobody: events are
    marked as backfilled. For orders an import has just written (``import orders --backfill``)."""
    report = report or SweepReport(now=now)
    for start in range(0, len(order_ids), BACKFILL_CHUNK):
        chunk = order_ids[start : start + BACKFILL_CHUNK]
        while _sweep_batch(session, cfg, now, actor, BATCH, report, expire=True, order_ids=chunk, backfill=True):
            report.items.clear()  # only the counts are wanted: keep memory flat over a large import
    return report


def _drain(store: Store, one_batch: Callable[[], int], due_left: Callable[[], int], report: SweepReport) -> None:
    """Run batches until no task is due by the sweep's clock.

    On PostgreSQL a claim skips rows another transaction holds (a sweep with an earlier clock,
    a person advancing the order); they may still owe steps due by this clock once released,
    so the sweep waits for them (bounded) instead of leaving them to the next run.
    """
    give_up = time.monotonic() + BUSY_WAIT_SECONDS
    while True:
        if one_batch():
            continue
        if not is_postgresql(store):  # the write lock serialises sweeps: nothing due was skipped
            return
        left = due_left()
        if not left:
            return
        if time.monotonic() > give_up:
            report.busy = left
            return
        time.sleep(0.05)


def _due_left(session: Session, now: datetime) -> int:
    """How many open tasks are due by ``now`` (as committed; no locks taken)."""
    return (
        session.execute(
            sa.select(sa.func.count()).select_from(sa.select(TASK.c.id).where(*_due(now)).limit(BATCH).subquery())
        ).scalar()
        or 0
    )


def _due(now: datetime | sa.BindParameter) -> tuple:
    """Open tasks due by ``now``, of orders whose timeline ``now`` does not precede: a sweep at an
    earlier clock than an order's latest event finds nothing due on it (SPEC 9.1)."""
    return (TASK.c.status == "open", TASK.c.next_action_at <= now, ~audit.later_event(TASK.c.order_id, now))


def _forecast_alerts(session: Session, cfg: Config, now: datetime, actor: str, report: SweepReport) -> None:
    """Tell the assignees of each on-track task whose breach forecast reached its node's
    ``forecast_alert`` (SPEC 9.4); once per task: its ``task_step`` row commits with the
    event and the digest part, as every step's does."""
    from ffctl.core import forecast

    found = forecast.alerts_due(session, cfg, now)
    if not found:
        return
    fired = _insert_steps(session, [(row.id, forecast.ALERT_STEP) for row, _p, _why in found], now)
    found = [f for f in found if (f[0].id, forecast.ALERT_STEP) in fired]
    roles = _assignee_roles(session, [row for row, _p, _why in found])
    parts = outbox.Parts(session, cfg)
    events = []
    for row, p, why in found:
        told = roles[row.id]
        detail = _("{p:.0%} likely to breach (alert at {alert:.0%}): {why}").format(
            p=p, alert=cfg.nodes[row.node].forecast_alert, why=why
        )
        short = _("{p} likely to breach").format(p=f"{p:.0%}")
        body = _("Order {order} at {node} is {p} likely to miss its deadline {deadline}: {why}.").format(
            order=row.order_id, node=row.node, p=f"{p:.0%}", deadline=shown(row.deadline, cfg.timezone), why=why
        )
        parts.add(
            told,
            outbox.digest_item(
                key=row.order_id,
                head=f"{row.order_id} {row.node}",
                short=short,
                body=body,
                rank="alert",
                order_id=row.order_id,
            ),
            key=f"task:{row.id}:{forecast.ALERT_STEP}",
        )
        if told:
            detail += _("; told {roles}").format(roles=", ".join(told))
        events.append(
            {
                "event": "forecast",
                "at": now,
                "actor": actor,
                "order_id": row.order_id,
                "task_id": row.id,
                "node": row.node,
                "detail": detail,
            }
        )
        report.items.append(
            {
                "order_id": row.order_id,
                "node": row.node,
                "task_id": row.id,
                "what": "forecast",
                "detail": detail,
                "due_at": None,
            }
        )
    report.forecast = len(found)
    audit.record_many(session, events)
    parts.write(now)


def _run_rules(session: Session, cfg: Config, now: datetime, actor: str, report: SweepReport, *, dry_run: bool) -> None:
    from ffctl.core.rules import run_rules

    result = run_rules(session, cfg, now=now, actor=actor, dry_run=dry_run, digest=True)
    report.rule_hits += int(result.get("hits", 0))
    for item in result.get("items", []):
        subject = item.get("subject") or ""
        report.items.append(
            {
                "order_id": subject.split(":", 1)[1] if subject.startswith("order:") else None,
                "node": None,
                "task_id": None,
                "what": _("rule {rule}").format(rule=item.get("rule")),
                "detail": f"{subject}: {item.get('what')}; {item.get('detail')}",
                "due_at": None,
            }
        )


# --- one batch -------------------------------------------------------------------------------------


@dataclass
class _Due:
    step: str  # task_step key: at_risk | breached | esc:<index>
    kind: str  # at_risk | breached | an escalation action
    due_at: datetime
    escalation: EscalationStep | None = None  # for esc:<index>


@dataclass
class _TaskWork:
    row: Any  # the claimed task row (a driver row)
    plan: list  # _Due steps, in ladder order
    sla_state: str
    next_step: int
    escalation_level: int
    roles: list  # assignee roles (owner first), grows with escalations
    risk_at: datetime | None = None
    deadline: datetime | None = None
    next_action_at: datetime | None = None
    closed: bool = False
    fired: frozenset = frozenset()  # the steps this sweep fires (inserted its task_step row for)
    late: str | None = None  # business time past the deadline at the sweep's clock, once computed


#: the sweep's claim of the whole store, built once per backend (cron and the demo sweep hourly,
#: and building it cost more than running it when little is due)
_CLAIMS: dict[bool, sa.Select] = {}


def _claim(session: Session, now: datetime, limit: int, order_ids: list[str] | None = None) -> Sequence[sa.Row]:
    """Lock and return up to ``limit`` due open tasks (of ``order_ids`` only, if given), earliest first."""
    pg = is_postgresql(session)
    stmt = _CLAIMS.get(pg) if order_ids is None else None
    if stmt is None:
        cols = [
            TASK.c.id,
            TASK.c.order_id,
            TASK.c.workflow,
            TASK.c.node,
            TASK.c.seq,
            TASK.c.owner,
            TASK.c.entered_at,
            TASK.c.sla_seconds,
            TASK.c.sla_state,
            TASK.c.paused_seconds,
            TASK.c.next_step,
            TASK.c.escalation_level,
            TASK.c.next_action_at,
            *(ORDERS.c[f] for f in ORDER_FIELDS),
        ]
        stmt = (
            sa.select(*cols)
            .join(ORDERS, ORDERS.c.order_id == TASK.c.order_id)
            .where(*_due(sa.bindparam("now", type_=UTCDateTime())))
            .order_by(TASK.c.next_action_at, TASK.c.id)
            .limit(sa.bindparam("limit", type_=sa.Integer()))
        )
        if order_ids is not None:  # an import's orders, maybe not yet in the planner's statistics: a semi-join
            stmt = stmt.where(among(session, TASK.c.order_id, order_ids))
        if pg:
            # the order row too, in one statement that never waits: workflow writers lock order then task
            stmt = stmt.with_for_update(skip_locked=True, of=[TASK, ORDERS])
        if order_ids is None:
            _CLAIMS[pg] = stmt
    return session.execute(stmt, {"now": now, "limit": limit}).all()


def _plan(cfg: Config, row, now: datetime) -> _TaskWork | None:
    """Every step due by ``now`` for a task, in ladder order, and the state it leaves the task in.

    An auto action closes the task, so nothing after it is planned. Pure: no store access.
    """
    if row.node not in cfg.nodes:
        return None
    spec = cfg.nodes[row.node]
    times = workflow.ladder(cfg, row.node, row.entered_at, row.paused_seconds or 0)
    state, nxt = row.sla_state, row.next_step
    position = workflow.ladder_position(state, nxt)
    plan: list[_Due] = []
    while position < len(times) and times[position] <= now:
        due_at = times[position]
        position += 1
        if state == "on_track":
            plan.append(_Due("at_risk", "at_risk", due_at))
            state = "at_risk"
        elif state == "at_risk":
            plan.append(_Due("breached", "breached", due_at))
            state = "breached"
        else:
            step = spec.escalation[nxt]
            plan.append(_Due(f"esc:{step.index}", step.action, due_at, step))
            nxt += 1
            if step.action in ("auto_approve", "auto_reject"):
                break
    return _TaskWork(
        row=row,
        plan=plan,
        sla_state=state,
        next_step=nxt,
        escalation_level=row.escalation_level,
        roles=[],
        risk_at=times[0],
        deadline=times[1],
        next_action_at=times[position] if position < len(times) else None,
    )


def _assignee_roles(session: Session, rows: Sequence[sa.Row]) -> dict[int, list[str]]:
    """Assignee roles of each task (owner first, then escalations in the order added), one query."""
    roles = {r.id: ([r.owner] if r.owner else []) for r in rows}
    extra = session.execute(
        sa.select(ASSIGNEE.c.task_id, ASSIGNEE.c.role)
        .where(among(session, ASSIGNEE.c.task_id, list(roles)))
        .order_by(ASSIGNEE.c.task_id, ASSIGNEE.c.added_at, ASSIGNEE.c.role)
    ).all()
    for task_id, role in extra:
        if role not in roles[task_id]:
            roles[task_id].append(role)
    return roles


def _insert_steps(session: Session, pairs: list[tuple[int, str]], at: datetime) -> set[tuple[int, str]]:
    """Insert-or-ignore the task_step rows ``(task_id, step)`` fired at ``at``; returns the pairs this
    call inserted. One statement through the driver (a catch-up sweep fires 100k steps)."""
    if not pairs:
        return set()
    conn = _driver(session)
    if is_postgresql(session):
        return {
            (t, s)
            for t, s in conn.exec_driver_sql(
                "INSERT INTO task_step (task_id, step, fired_at) SELECT v.t, v.s, %s FROM unnest(%s::int[], %s::text[]) "
                "AS v(t, s) ON CONFLICT DO NOTHING RETURNING task_id, step",
                (stored_time(at), [t for t, _ in pairs], [s for _, s in pairs]),
            )
        }
    stamp = time_texts()(at)
    inserted: set[tuple[int, str]] = set()
    for start in range(0, len(pairs), 500):
        chunk = pairs[start : start + 500]
        sql = (
            "INSERT INTO task_step (task_id, step, fired_at) VALUES "
            + ", ".join(["(?, ?, ?)"] * len(chunk))
            + " ON CONFLICT DO NOTHING RETURNING task_id, step"
        )
        inserted.update((t, s) for t, s in conn.exec_driver_sql(sql, tuple(v for t, s in chunk for v in (t, s, stamp))))
    return inserted


def _driver(session: Session):
    """The session's connection, for SQL written for the driver: no per-row SQLAlchemy processing,
    while driver errors still arrive wrapped (a read-only store is told as such)."""
    session.flush()
    return session.connection()


def _insert_assignees(session: Session, rows: list[tuple[int, str, str, datetime]]) -> None:
    """Insert-or-ignore task_assignee rows ``(task_id, role, reason, added_at)``, through the driver."""
    if not rows:
        return
    conn = _driver(session)
    if is_postgresql(session):
        conn.exec_driver_sql(
            "INSERT INTO task_assignee (task_id, role, reason, added_at) SELECT * FROM "
            "unnest(%s::int[], %s::text[], %s::text[], %s::timestamp[]) ON CONFLICT DO NOTHING",
            tuple(list(column) for column in zip(*((t, r, why, stored_time(at)) for t, r, why, at in rows))),
        )
        return
    stamp = time_texts()
    conn.exec_driver_sql(
        "INSERT OR IGNORE INTO task_assignee (task_id, role, reason, added_at) VALUES (?, ?, ?, ?)",
        [(t, r, why, stamp(at)) for t, r, why, at in rows],
    )


def _update_tasks(session: Session, works: list[_TaskWork]) -> None:
    """Write each task's new SLA state and clocks (still open ones only), through the driver."""
    if not works:
        return
    conn = _driver(session)
    if is_postgresql(session):

        def at(value):
            return None if value is None else stored_time(value)

        columns = zip(
            *(
                (
                    w.row.id,
                    w.sla_state,
                    w.next_step,
                    w.escalation_level,
                    at(w.next_action_at),
                    at(w.risk_at),
                    at(w.deadline),
                )
                for w in works
            )
        )
        conn.exec_driver_sql(
            "UPDATE task AS t SET sla_state = v.st, next_step = v.ns, escalation_level = v.lvl, "
            "next_action_at = v.nat, risk_at = v.risk, deadline = v.dl FROM unnest(%s::int[], %s::text[], "
            "%s::int[], %s::int[], %s::timestamp[], %s::timestamp[], %s::timestamp[]) AS v(id, st, ns, lvl, nat, "
            "risk, dl) WHERE t.id = v.id AND t.status = 'open'",
            tuple(list(c) for c in columns),
        )
        return
    stamp = time_texts()

    def text(value):
        return None if value is None else stamp(value)

    conn.exec_driver_sql(
        "UPDATE task SET sla_state = ?, next_step = ?, escalation_level = ?, next_action_at = ?, risk_at = ?, "
        "deadline = ? WHERE id = ? AND status = 'open'",
        [
            (
                w.sla_state,
                w.next_step,
                w.escalation_level,
                text(w.next_action_at),
                text(w.risk_at),
                text(w.deadline),
                w.row.id,
            )
            for w in works
        ],
    )


def _sweep_batch(
    session: Session,
    cfg: Config,
    now: datetime,
    actor: str,
    limit: int,
    report: SweepReport,
    *,
    expire: bool = False,
    order_ids: list[str] | None = None,
    backfill: bool = False,
) -> int:
    """Claim one batch of due tasks and fire their due steps; returns how many tasks were claimed.

    ``backfill``: the tasks of ``order_ids`` only, telling nobody (see ``backfill``)."""
    if expire:  # one long session (dry run): ORM rows loaded by auto actions must be read afresh
        session.expire_all()
    rows = _claim(session, now, limit, order_ids)
    if not rows:
        return 0
    roles = _assignee_roles(session, rows)
    works: list[_TaskWork] = []
    orphans: list[int] = []
    for row in rows:
        work = _plan(cfg, row, now)
        if work is None:
            orphans.append(row.id)  # its node left the config: nothing can be computed for it
            continue
        work.roles = roles[row.id]
        works.append(work)
    inserted = _insert_steps(session, [(w.row.id, d.step) for w in works for d in w.plan], now)
    ctx = _Context(session, cfg, now, actor, report, backfill=backfill)
    for work in works:
        work.fired = frozenset(d.step for d in work.plan if (work.row.id, d.step) in inserted)
        for due in work.plan:
            if due.step not in work.fired:
                continue  # fired before (by another sweep): never twice
            _HANDLERS[due.kind](ctx, work, due)
            if work.closed:
                break
    ctx.flush()
    _update_tasks(session, [w for w in works if not w.closed])
    if orphans:
        session.execute(sa.update(TASK).where(TASK.c.id.in_(orphans)).values(next_action_at=None))
    return len(rows)


# --- the steps -------------------------------------------------------------------------------------


class _Context:
    """What step handlers share within one batch: buffered events, assignee rows and digest items,
    and the texts worded so far."""

    def __init__(
        self, session: Session, cfg: Config, now: datetime, actor: str, report: SweepReport, *, backfill: bool = False
    ) -> None:
        self.session, self.cfg, self.now, self.actor, self.report = session, cfg, now, actor, report
        self.backfill = backfill
        self.events: list[dict] = []
        self.assignees: list[tuple] = []  # (task_id, role, reason, added_at)
        self.parts = outbox.Parts(session, cfg)
        self._zone = zone(cfg.timezone)
        self._times: dict[datetime, str] = {}  # a catch-up sweep words thousands of times: once each
        self._people: dict[tuple, str] = {}
        self._chains: dict[str | None, tuple[str, ...]] = {}

    def chain(self, role: str | None) -> tuple[str, ...]:
        found = self._chains.get(role)
        if found is None:
            found = self._chains[role] = self.cfg.escalation_chain(role)
        return found

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return "-"
        text = self._times.get(moment)
        if text is None:  # "2026-03-02 10:00" (isoformat: a third of strftime's cost)
            text = self._times[moment] = moment.astimezone(self._zone).isoformat(" ", "minutes")[:16]
        return text

    def late(self, work: _TaskWork) -> str:
        """Business time from the deadline to now, in the node's calendar."""
        if work.late is None:
            if work.deadline is None or self.now <= work.deadline:
                work.late = "0s"
            else:
                work.late = format_duration(self.cfg.calendar(work.row.node).between(work.deadline, self.now))
        return work.late

    def people(self, roles: list[str]) -> str:
        """'finance_reviewer (alice, bob)' for a list of roles."""
        key = tuple(roles)
        text = self._people.get(key)
        if text is None:
            parts = []
            for role in roles:
                members = self.cfg.members(role)
                parts.append(f"{role} ({', '.join(members)})" if members else role)
            text = self._people[key] = ", ".join(parts) or "nobody"
        return text

    def record(self, work: _TaskWork, due: _Due, what: str, detail: str) -> None:
        row = work.row
        if self.backfill:
            detail += "; " + _("backfilled on import, nobody was notified")
        event = EVENT_OF.get(what)
        if event is not None:
            self.events.append(
                {
                    "event": event,
                    "at": self.now,
                    "actor": self.actor,
                    "order_id": row.order_id,
                    "task_id": row.id,
                    "node": row.node,
                    "detail": detail,
                }
            )
        self.report.items.append(
            {
                "order_id": row.order_id,
                "node": row.node,
                "task_id": row.id,
                "what": what,
                "detail": detail,
                "due_at": due.due_at,
            }
        )
        if what in self.report.actions:
            self.report.actions[what] += 1
        elif what in ("at_risk", "breached"):
            setattr(self.report, what, getattr(self.report, what) + 1)

    def notify(self, work: _TaskWork, due: _Due, recipients, short: str, body: str, priority: str = "normal") -> None:
        """Queue (buffered until flush) a digest item for each person the recipients name, exactly
        once per step: it commits with the step's task_step row. A backfill tells nobody."""
        if self.backfill:
            return
        row = work.row
        # order.<field> recipients from the claimed row: no query per notification
        recipients = [getattr(row, r[6:]) if r[6:] in ORDER_FIELDS else r for r in recipients]
        item = outbox.digest_item(
            key=row.order_id,
            head=f"{row.order_id} {row.node}",
            short=short,
            body=body,
            rank="at_risk" if due.kind == "at_risk" else "breached",
            priority=priority,
            order_id=row.order_id,
        )
        self.parts.add([r for r in recipients if r], item, key=f"task:{row.id}:{due.step}")

    def flush(self) -> None:
        """Write buffered rows: before an auto action (so events stay in ladder order) and at batch end."""
        _insert_assignees(self.session, self.assignees)
        self.assignees = []
        audit.record_many(self.session, self.events)
        self.events = []
        self.parts.write(self.now)


def _step_words(ctx: _Context, work: _TaskWork, due: _Due) -> str:
    step = due.escalation
    assert step is not None  # called for escalation steps only
    after = _duration(step.after_seconds) if step.after_seconds else "0m"
    return _("step {n} (+{after} past the deadline, due {due})").format(
        n=step.index + 1, after=after, due=ctx.when(due.due_at)
    )


def _at_risk(ctx: _Context, work: _TaskWork, due: _Due) -> None:
    spec = ctx.cfg.nodes[work.row.node]
    detail = _("at risk since {since}: {warn_at:.0%} of the {sla} SLA used; due {deadline}").format(
        since=ctx.when(due.due_at),
        warn_at=spec.warn_at,
        sla=format_duration(spec.sla_seconds),
        deadline=ctx.when(work.deadline),
    )
    if "breached" in work.fired:  # breached in this same sweep: the breach notice says it all
        ctx.record(
            work,
            due,
            "at_risk",
            detail + ("" if ctx.backfill else "; " + _("not notified: breached in the same sweep")),
        )
        return
    ctx.notify(
        work,
        due,
        work.roles,
        _("at risk, due {deadline}").format(deadline=ctx.when(work.deadline)),
        _("Order {order} at {node} is at risk: {detail}.").format(
            order=work.row.order_id, node=work.row.node, detail=detail
        ),
    )
    told = _("; told {roles}").format(roles=", ".join(work.roles)) if work.roles and not ctx.backfill else ""
    ctx.record(work, due, "at_risk", detail + told)


def _breached(ctx: _Context, work: _TaskWork, due: _Due) -> None:
    spec = ctx.cfg.nodes[work.row.node]
    detail = _("deadline {deadline} passed (SLA {sla})").format(
        deadline=ctx.when(due.due_at), sla=format_duration(spec.sla_seconds)
    )
    if ctx.now > due.due_at:
        detail += (_("; {late} late by the import") if ctx.backfill else _("; {late} late by this sweep")).format(
            late=ctx.late(work)
        )
    if _breach_notice_due(work):
        ctx.notify(
            work,
            due,
            work.roles,
            _("past its deadline, {late} late").format(late=ctx.late(work)),
            _("Order {order} at {node} is past its deadline {deadline} (SLA {sla}) by {late} of business time.").format(
                order=work.row.order_id,
                node=work.row.node,
                deadline=ctx.when(due.due_at),
                sla=format_duration(spec.sla_seconds),
                late=ctx.late(work),
            ),
        )
        if work.roles and not ctx.backfill:
            detail += _("; told {roles}").format(roles=", ".join(work.roles))
    ctx.record(work, due, "breached", detail)


def _breach_notice_due(work: _TaskWork) -> bool:
    """Whether a breach is told to the assignees: only when this sweep also made the task at risk
    (whose notice it replaces), and no reminder of this sweep tells them anyway."""
    return "at_risk" in work.fired and not any(d.kind == "remind" and d.step in work.fired for d in work.plan)


def _remind(ctx: _Context, work: _TaskWork, due: _Due) -> None:
    told = ", ".join(work.roles) or _("nobody (the node has no owner)")
    detail = _("{step}: reminded {told}; {late} late").format(
        step=_step_words(ctx, work, due), told=told, late=ctx.late(work)
    )
    ctx.notify(
        work,
        due,
        work.roles,
        _("reminder, {late} late").format(late=ctx.late(work)),
        _("Reminder: order {order} at {node} is past its deadline {deadline} by {late} of business time.").format(
            order=work.row.order_id, node=work.row.node, deadline=ctx.when(work.deadline), late=ctx.late(work)
        ),
    )
    ctx.record(work, due, "remind", detail)


def _escalate(ctx: _Context, work: _TaskWork, due: _Due) -> None:
    row = work.row
    chain = ctx.chain(row.owner)
    had = ctx.people(work.roles)
    late = ctx.late(work)
    if work.escalation_level < len(chain):
        role = chain[work.escalation_level]
        work.escalation_level += 1
        work.roles.append(role)
        # a sweep that catches up fires several escalations of a task at once: a microsecond per
        # level keeps them in the chain's order wherever assignees are listed by added_at
        ctx.assignees.append((row.id, role, "escalation", ctx.now + timedelta(microseconds=work.escalation_level)))
        detail = _("{step}: escalated to {role}; {late} late in business time; had by {had}").format(
            step=_step_words(ctx, work, due), role=role, late=late, had=had
        )
        body = _(
            "Order {order} at {node} is escalated to you ({role}): it is {late} past its deadline {deadline} "
            "in business time, and was with {had}."
        ).format(order=row.order_id, node=row.node, role=role, late=late, deadline=ctx.when(work.deadline), had=had)
    else:
        role = chain[-1] if chain else row.owner
        if role is None:
            detail = _("{step}: nobody to escalate to (the node has no owner); {late} late").format(
                step=_step_words(ctx, work, due), late=late
            )
            ctx.record(work, due, "escalate", detail)
            return
        detail = _(
            "{step}: no role above {role}, told {role} again; {late} late in business time; had by {had}"
        ).format(step=_step_words(ctx, work, due), role=role, late=late, had=had)
        body = _(
            "Order {order} at {node} is {late} past its deadline {deadline} in business time and there is no "
            "role above {role} to escalate to; it is with {had}."
        ).format(order=row.order_id, node=row.node, late=late, deadline=ctx.when(work.deadline), role=role, had=had)
    ctx.notify(work, due, [role], _("escalated, {late} late").format(late=late), body, priority="high")
    ctx.record(work, due, "escalate", detail)


def _notify(ctx: _Context, work: _TaskWork, due: _Due) -> None:
    step = due.escalation
    assert step is not None  # an escalation step's action
    reason = f": {step.reason}" if step.reason else ""
    detail = _("{step}: notified {to}{reason}; {late} late").format(
        step=_step_words(ctx, work, due), to=", ".join(step.to), reason=reason, late=ctx.late(work)
    )
    late = ctx.late(work)
    short = (
        _("{late} late, {reason}").format(late=late, reason=step.reason)
        if step.reason
        else _("{late} late").format(late=late)
    )
    ctx.notify(
        work,
        due,
        list(step.to),
        short,
        _("Order {order} at {node} is {late} past its deadline {deadline}{reason}.").format(
            order=work.row.order_id, node=work.row.node, late=late, deadline=ctx.when(work.deadline), reason=reason
        ),
    )
    ctx.record(work, due, "notify", detail)


_DONE = {"auto_approve": N_("auto-approved"), "auto_reject": N_("auto-rejected")}


def _auto(ctx: _Context, work: _TaskWork, due: _Due, what: str, act: Callable[[], object]) -> None:
    """Run an auto action under the task's lock, if the task is still the order's open task."""
    row = work.row
    # keep the SLA facts on the task it closes, and write the steps before it in order
    ctx.session.execute(
        sa.update(TASK)
        .where(TASK.c.id == row.id, TASK.c.status == "open")
        .values(sla_state=work.sla_state, next_step=work.next_step, escalation_level=work.escalation_level)
    )
    ctx.flush()
    current = sa.select(TASK.c.id).where(TASK.c.order_id == row.order_id, TASK.c.status == "open")
    if is_postgresql(ctx.session):
        current = current.with_for_update()
    if ctx.session.execute(current).scalar() != row.id:
        return  # completed, rejected or cancelled by someone first: the step is spent, quietly
    try:
        with ctx.session.begin_nested():
            moved_to = act()
    except FfctlError:
        return  # the order is not in a state the action applies to (e.g. on hold): skip quietly
    work.closed = True
    status = ctx.session.execute(sa.select(ORDERS.c.status).where(ORDERS.c.order_id == row.order_id)).scalar()
    if status == "on_hold":
        where = _("order on hold at {node}").format(node=moved_to)
    else:
        where = _("order now at {node}").format(node=moved_to) if moved_to else _("workflow finished")
    detail = _("{step}: {done} after {late} late; {where}").format(
        step=_step_words(ctx, work, due), done=_(_DONE[what]), late=ctx.late(work), where=where
    )
    ctx.record(work, due, what, detail)


def _auto_approve(ctx: _Context, work: _TaskWork, due: _Due) -> None:
    note = (
        _("auto-approved by the SLA backfill on import, {step}")
        if ctx.backfill
        else _("auto-approved by the SLA sweep, {step}")
    ).format(step=_step_words(ctx, work, due))
    _auto(
        ctx,
        work,
        due,
        "auto_approve",
        lambda: workflow.complete(
            ctx.session,
            ctx.cfg,
            work.row.order_id,
            at=ctx.now,
            actor=ctx.actor,
            outcome="auto_approved",
            node=work.row.node,
            note=note,
        ),
    )


def _auto_reject(ctx: _Context, work: _TaskWork, due: _Due) -> None:
    assert due.escalation is not None  # an escalation step's action
    reason = due.escalation.reason or _("SLA timeout")
    _auto(
        ctx,
        work,
        due,
        "auto_reject",
        lambda: workflow.reject(
            ctx.session,
            ctx.cfg,
            work.row.order_id,
            at=ctx.now,
            actor=ctx.actor,
            reason=reason,
            outcome="auto_rejected",
            node=work.row.node,
        ),
    )


#: step kind -> handler; adding an escalation action is adding a row.
_HANDLERS: dict[str, Callable[[_Context, _TaskWork, _Due], None]] = {
    "at_risk": _at_risk,
    "breached": _breached,
    "remind": _remind,
    "escalate": _escalate,
    "notify": _notify,
    "auto_approve": _auto_approve,
    "auto_reject": _auto_reject,
}


# --- the status board ------------------------------------------------------------------------------


def status(session: Session, cfg: Config, *, now: datetime) -> list[dict]:
    """Per node, in workflow order: open, on hold, at risk, breached, escalated (open tasks).

    Computed from the clocks against ``now`` (breached: ``workflow.breached``, which counts a task
    held after its deadline too), so it is right whether or not a sweep has run.
    """
    open_ = TASK.c.status == "open"
    held = TASK.c.held_at.isnot(None)
    breached = workflow.visit_breached(TASK.c, now)
    at_risk = workflow.at_risk_clause(TASK.c, now)

    def count(cond):
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    rows = session.execute(
        sa.select(
            TASK.c.node,
            sa.func.count().label("open"),
            count(held).label("on_hold"),
            count(at_risk).label("at_risk"),
            count(breached).label("breached"),
            count(TASK.c.escalation_level > 0).label("escalated"),
        )
        .where(open_)
        .group_by(TASK.c.node)
    ).all()
    found = {r.node: r for r in rows}
    longest_first = sorted(cfg.workflows, key=lambda wf: -len(wf.nodes))  # the main path sets the order
    order = list(dict.fromkeys([n for wf in longest_first for n in wf.nodes] + sorted(found)))
    out = []
    for node in order:
        r = found.get(node)
        out.append(
            {
                "node": node,
                "owner": cfg.nodes[node].owner if node in cfg.nodes else None,
                "open": int(r.open) if r else 0,
                "on_hold": int(r.on_hold) if r else 0,
                "at_risk": int(r.at_risk) if r else 0,
                "breached": int(r.breached) if r else 0,
                "escalated": int(r.escalated) if r else 0,
            }
        )
    return out
