"""Scheduled jobs: one cron line (``* * * * * ffctl schedule tick``) runs whatever ``[schedule]`` says.

A job is due when its most recent cron time (croniter, in ``[defaults] timezone``) is later than
the cron time it last ran for; missed runs coalesce into one run at the latest cron time. A job
never run before runs on the first tick if its latest cron time is within the last period (the
gap between its last two cron times): a ``*/5`` sweep runs at once, a weekday report installed
on a Sunday waits for Monday.

Once, even when ticks overlap: a tick claims a job by moving ``schedule_run.last_due_at`` forward
with a conditional UPDATE (``... WHERE last_due_at IS NULL OR last_due_at < :due``) in its own
short transaction; only the tick whose UPDATE hit the row runs the job. The claim commits before
the job runs, so a tick killed mid-job does not run that cron time again: the jobs themselves
catch up (a sweep fires everything due by its clock, delivery sends everything pending).

The schedule follows the clock (SPEC 9.1). A tick run with a future ``--now`` (or before the
system clock was set back) leaves ``last_due_at`` later than the present; the next tick notes it
and claims the job again at the present cron time (the claim also moves ``last_due_at`` back when
it is later than the tick's clock), so nothing stays silently stopped. Each job is handled on its
own: a cron expression that never fires, or a job that raises, fails that job alone.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ffctl.core.clock import local, shown, start_of_day
from ffctl.core.models import ScheduleRun
from ffctl.core.store import insert_or_ignore
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config
    from ffctl.core.store import Store

RUNS = ScheduleRun.__table__
ACTOR = "schedule"


# --- cron arithmetic -------------------------------------------------------------------------------


def latest_due(expression: str, now: datetime, tz: str) -> datetime:
    """The most recent cron time at or before ``now`` (aware UTC), evaluated in zone ``tz``."""
    from croniter import croniter

    minute = local(now, tz).replace(second=0, microsecond=0)
    if croniter.match(expression, minute):
        return minute.astimezone(now.tzinfo)
    return croniter(expression, minute).get_prev(datetime).astimezone(now.tzinfo)


def first_run_due(expression: str, now: datetime, tz: str) -> bool:
    """For a job with no history: is its latest cron time within the last period?"""
    from croniter import croniter

    due = latest_due(expression, now, tz)
    before = croniter(expression, local(due, tz)).get_prev(datetime).astimezone(now.tzinfo)
    return now - due < due - before


def next_due(expression: str, now: datetime, tz: str) -> datetime:
    """The first cron time after ``now``."""
    from croniter import croniter

    return croniter(expression, local(now, tz)).get_next(datetime).astimezone(now.tzinfo)


# --- jobs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobContext:
    store: Store
    cfg: Config
    now: datetime
    actor: str


def _sla_sweep(job: JobContext) -> str:
    from ffctl.core import sla

    report = sla.sweep(job.store, job.cfg, now=job.now, actor=sla.SWEEP_ACTOR)
    text = (
        _("{at_risk} at risk, {breached} breached, ").format(at_risk=report.at_risk, breached=report.breached)
        + ", ".join(f"{n} {a}" for a, n in report.actions.items() if n)
        + f"{', ' if any(report.actions.values()) else ''}"
        + _hits_and_queued(report.rule_hits, report.notifications_queued)
    )
    if "notify_send" not in job.cfg.schedule:  # nothing else delivers them: send now
        text += "; " + _notify_send(job)
    return text


def _notify_send(job: JobContext) -> str:
    from ffctl.core import notify

    report = notify.send(job.store, job.cfg, now=job.now)
    return _("{sent} sent, {retrying} to retry, {failed} failed").format(
        sent=report.sent, retrying=report.retrying, failed=report.failed
    )


def _rules_run(job: JobContext) -> str:
    from ffctl.core.rules import run_rules

    with job.store.session(write=True) as session:
        result = run_rules(session, job.cfg, now=job.now, actor=job.actor)
    return _hits_and_queued(result["hits"], result["notifications"])


def _hits_and_queued(hits: int, queued: int) -> str:
    return (
        ngettext("{n} rule hit", "{n} rule hits", hits).format(n=hits)
        + ", "
        + ngettext("{n} notification queued", "{n} notifications queued", queued).format(n=queued)
    )


def _daily_report(job: JobContext) -> str:
    """The KPI report for the last 7 days, written as JSON next to the config (reports/kpi-DATE.json)."""
    import json

    from ffctl.core import kpi
    from ffctl.core.clock import jsonable
    from ffctl.core.files import private_folder, write_private

    tz = job.cfg.timezone
    today = local(job.now, tz).date()
    period = kpi.Period(start_of_day(today - timedelta(days=7), tz), start_of_day(today, tz))
    kpi.refresh_facts(job.store, job.cfg, now=job.now)
    with job.store.session() as session:
        rows = kpi.kpi_report(session, job.cfg, now=job.now, period=period)
    folder = job.cfg.directory / "reports"
    private_folder(folder)
    target = folder / f"kpi-{today.isoformat()}.json"
    document = {"generated_at": job.now, "from": period.start, "to": period.end, "kpis": rows}
    write_private(target, json.dumps(jsonable(document, tz), ensure_ascii=False, indent=2) + "\n", exclusive=False)
    missed = [r["kpi"] for r in rows if r.get("met") is False]
    return _("wrote {path}").format(path=target) + (
        _("; missed targets: {kpis}").format(kpis=", ".join(missed)) if missed else ""
    )


#: job name (a [schedule] key) -> handler returning a one-line result. Adding a job is adding a row.
JOBS: dict[str, Callable[[JobContext], str]] = {
    "sla_sweep": _sla_sweep,
    "notify_send": _notify_send,
    "rules_run": _rules_run,
    "daily_report": _daily_report,
}


# --- tick and show ---------------------------------------------------------------------------------


def _claim(store: Store, job: str, due: datetime, now: datetime) -> bool:
    """Move the job's last_due_at to ``due``: forward, or back from a cron time later than ``now``
    (claimed by a tick with a later clock); True only for the one tick that did."""
    with store.session(write=True) as session:
        insert_or_ignore(session, ScheduleRun, [{"job": job}], ["job"])
        hit = session.execute(  # type: ignore[attr-defined]  # an UPDATE/INSERT gives a CursorResult; Session.execute is typed Result
            sa.update(RUNS)
            .where(
                RUNS.c.job == job,
                sa.or_(RUNS.c.last_due_at.is_(None), RUNS.c.last_due_at < due, RUNS.c.last_due_at > now),
            )
            .values(last_due_at=due, last_ran_at=now, last_result="running")
        ).rowcount
    return hit == 1


def _record(store: Store, job: str, due: datetime, result: str) -> None:
    with store.session(write=True) as session:
        session.execute(
            sa.update(RUNS).where(RUNS.c.job == job, RUNS.c.last_due_at == due).values(last_result=result[:1000])
        )


def never_fires(expression: str) -> str:
    return _("its cron expression {cron!r} never fires (no date matches it); fix it in [schedule]").format(
        cron=expression
    )


def _ahead(last_due: datetime | None, now: datetime, tz: str) -> str | None:
    """The note for a job whose claimed cron time is later than the clock, else None."""
    if last_due is None or last_due <= now:
        return None
    return _(
        "it had claimed the cron time {claimed}, later than the clock {now} (a tick with a future --now, "
        "or a clock set back); the schedule follows the clock"
    ).format(claimed=shown(last_due, tz), now=shown(now, tz))


def _failure(exc: Exception, expression: str) -> str:
    from croniter import CroniterBadDateError

    if isinstance(exc, CroniterBadDateError):
        return _("error: {why}").format(why=never_fires(expression))
    message = getattr(exc, "message", None) or f"{exc.__class__.__name__}: {exc}"
    return _("error: {why}").format(why=str(message).splitlines()[0] if str(message) else exc.__class__.__name__)


def tick(store: Store, cfg: Config, *, now: datetime, actor: str = ACTOR, only: str | None = None) -> list[dict]:
    """Run every scheduled job whose cron time has come since its last run, once each.

    Returns one row per scheduled job: ``{job, cron, due_at, ran, ok, result, note}``; ``note``
    says when the job had claimed a cron time later than ``now`` (it is then run for ``now``).
    A job that fails (its handler raises, its cron expression never fires) is recorded with its
    error and does not stop the others.
    """
    out = []
    with store.session() as session:
        history = dict(session.execute(sa.select(RUNS.c.job, RUNS.c.last_due_at)).all())
    for job, expression in cfg.schedule.items():
        if only is not None and job != only:
            continue
        row: dict[str, Any] = {
            "job": job,
            "cron": expression,
            "due_at": None,
            "ran": False,
            "ok": True,
            "result": None,
            "note": _ahead(history.get(job), now, cfg.timezone),
        }
        out.append(row)
        try:
            _tick_one(store, cfg, job, expression, row, now=now, actor=actor, first=history.get(job) is None)
        except Exception as exc:  # noqa: BLE001 - a failing job is recorded, the others still run
            row["ok"] = False
            row["result"] = _failure(exc, expression)
            if os.environ.get("FFCTL_DEBUG") == "1":
                traceback.print_exc()
            if row["ran"]:
                _record(store, job, row["due_at"], row["result"])
    return out


def _tick_one(
    store: Store, cfg: Config, job: str, expression: str, row: dict, *, now: datetime, actor: str, first: bool
) -> None:
    due = row["due_at"] = latest_due(expression, now, cfg.timezone)
    if first and not first_run_due(expression, now, cfg.timezone):
        row["result"] = _("not due: its last cron time is more than a period ago; first run at the next one")
        return
    if not _claim(store, job, due, now):
        row["result"] = _("not due (already ran for this cron time)")
        return
    row["ran"] = True
    row["result"] = JOBS[job](JobContext(store, cfg, now, actor))
    _record(store, job, due, row["result"])


def show(session, cfg: Config, *, now: datetime) -> list[dict]:
    """Each scheduled job: its cron, last run (cron time and clock), result, and next run.

    ``next_run_at`` is when a tick next runs the job (``now`` when it is due now, None when its
    cron expression never fires); ``note`` says why, when that is not the plain cron arithmetic.
    """
    from croniter import CroniterBadDateError

    runs = {r.job: r for r in session.execute(sa.select(RUNS)).all()}
    out = []
    for job, expression in cfg.schedule.items():
        run = runs.get(job)
        last_due = run.last_due_at if run else None
        row = {
            "job": job,
            "cron": expression,
            "last_due_at": last_due,
            "last_ran_at": run.last_ran_at if run else None,
            "last_result": run.last_result if run else None,
            "next_run_at": None,
            "due_now": False,
            "note": _ahead(last_due, now, cfg.timezone),
        }
        out.append(row)
        try:
            due = latest_due(expression, now, cfg.timezone)
            if last_due is None:
                pending = first_run_due(expression, now, cfg.timezone)
            else:
                pending = last_due < due or last_due > now
            row["due_now"] = pending
            row["next_run_at"] = now if pending else next_due(expression, now, cfg.timezone)
        except CroniterBadDateError:
            row["note"] = never_fires(expression)
    return out
