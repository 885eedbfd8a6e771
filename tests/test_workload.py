"""`report workload`: per role or person, against a hand-built history with known answers, on
SQLite and PostgreSQL; and its panel on the dashboard.

The history (example config; local times in Asia/Shanghai; the week of Monday 2026-03-02; the
office calendar works Mon-Thu 09-18 and Fri 09-12, 13-17; credit_review's SLA is 30 min of it):

finance_reviewer (credit_review):
  A0  Fri 02-27 10:00 -> 10:10 alice                      (before the period)
  A7  Fri 02-27 16:00 -> Mon 09:30 bob,  1h30m, breached   (arrived before, completed in the period)
  A1  Mon 09:00 -> 09:20 alice, 20m
  A2  Mon 17:50 -> Tue 09:20 bob, 30m of office time over the night, done at its deadline: in time
  A3  Tue 10:00 -> 12:00 alice, held 1h, so 1h; deadline 11:30: breached
  A4  Wed 09:00 -> 09:40 bob, rejected, 40m, breached
  C1  Wed 10:00 -> 10:10 cancelled (arrived, never completed)
  A5  Thu 09:00, open, breached; at now (Fri 18:00) 16h of office time old
  A6  Fri 16:50, open, deadline next Monday 09:20: in time
  S1  tech_confirm skipped Mon 09:00 (never counts)
warehouse (wave_pick, pack_check: warehouse calendar; dispatch: wall clock):
  B1  wave_pick Tue 10:00 -> 11:00 frank; pack_check 11:00 -> 11:30 grace; dispatch Tue 11:30 -> Wed 11:30 frank
auto (allocation, no owner, wall clock): B1 Tue 09:50 -> 10:00 judy
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from ffctl.core.models import Customer, Order, Task

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 6, 18, 0, tzinfo=SH)
NOW_TEXT = NOW.isoformat()
WEEK = ("--from", "2026-03-02", "--to", "2026-03-06")
OWNER = {
    "credit_review": "finance_reviewer",
    "tech_confirm": "engineering",
    "allocation": None,
    "wave_pick": "warehouse",
    "pack_check": "warehouse",
    "dispatch": "warehouse",
}


def at(day: int, hhmm: str, month: int = 3) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, month, day, h, m, tzinfo=SH).astimezone(timezone.utc)


def visit(order, node, entered, deadline, completed=None, by=None, outcome="completed", paused=0.0):
    status = {
        None: "open",
        "completed": "done",
        "rejected": "rejected",
        "cancelled": "cancelled",
        "skipped": "skipped",
    }[outcome if completed is not None or outcome == "skipped" else None]
    return {
        "order_id": order,
        "workflow": "standard",
        "node": node,
        "seq": 0,
        "status": status,
        "owner": OWNER[node],
        "entered_at": entered,
        "sla_seconds": 1800,
        "deadline": deadline,
        "completed_at": completed,
        "completed_by": by,
        "paused_seconds": paused,
        "outcome": None if status == "open" else outcome,
    }


def insert_week(store) -> None:
    cr = "credit_review"
    tasks = [
        visit("A0", cr, at(27, "10:00", 2), at(27, "10:30", 2), at(27, "10:10", 2), "alice"),
        visit("A7", cr, at(27, "16:00", 2), at(27, "16:30", 2), at(2, "09:30"), "bob"),
        visit("A1", cr, at(2, "09:00"), at(2, "09:30"), at(2, "09:20"), "alice"),
        visit("A2", cr, at(2, "17:50"), at(3, "09:20"), at(3, "09:20"), "bob"),
        visit("A3", cr, at(3, "10:00"), at(3, "11:30"), at(3, "12:00"), "alice", paused=3600.0),
        visit("A4", cr, at(4, "09:00"), at(4, "09:30"), at(4, "09:40"), "bob", outcome="rejected"),
        visit("C1", cr, at(4, "10:00"), at(4, "10:30"), at(4, "10:10"), "alice", outcome="cancelled"),
        visit("A5", cr, at(5, "09:00"), at(5, "09:30")),
        visit("A6", cr, at(6, "16:50"), at(9, "09:20")),
        visit("A1", "tech_confirm", at(2, "09:00"), at(2, "13:00"), at(2, "09:00"), outcome="skipped"),
        visit("B1", "allocation", at(3, "09:50"), at(3, "10:00"), at(3, "10:00"), "judy"),
        visit("B1", "wave_pick", at(3, "10:00"), at(3, "12:00"), at(3, "11:00"), "frank"),
        visit("B1", "pack_check", at(3, "11:00"), at(3, "12:00"), at(3, "11:30"), "grace"),
        visit("B1", "dispatch", at(3, "11:30"), at(5, "11:30"), at(4, "11:30"), "frank"),
    ]
    orders = sorted({t["order_id"] for t in tasks})
    with store.session(write=True) as s:
        s.execute(sa.insert(Customer.__table__), [{"customer": "C", "name": "C"}])
        s.execute(
            sa.insert(Order.__table__),
            [
                {
                    "order_id": o,
                    "customer": "C",
                    "created_at": at(27, "09:00", 2),
                    "status": "open",
                    "workflow": "standard",
                }
                for o in orders
            ],
        )
        s.execute(sa.insert(Task.__table__), tasks)


def workload(ws, *args):
    r = ws.run("report", "workload", *args, "--format", "json", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    return {row["group"]: row for row in json.loads(r.stdout)}


@pytest.fixture
def week(workspace):
    insert_week(workspace.store())
    return workspace


def test_per_role_matches_the_hand_computed_week(week):
    rows = workload(week, *WEEK)
    assert list(rows) == ["finance_reviewer", "warehouse", None]  # by name, the auto nodes last
    fin = rows["finance_reviewer"]
    assert (fin["arrived"], fin["completed"], fin["business_days"]) == (7, 5, 5)
    assert (fin["arrived_per_day"], fin["completed_per_day"]) == (1.4, 1.0)
    # handling 20m, 30m, 40m, 1h (held 1h left out), 1h30m: p50 40m, p90 between 1h and 1h30m
    assert fin["handling_p50_seconds"] == pytest.approx(2400, abs=1)
    assert fin["handling_p90_seconds"] == pytest.approx(3600 + 0.6 * 1800, abs=1)
    assert (fin["breached"], fin["breach_share"]) == (3, pytest.approx(3 / 7, abs=1e-6))  # A3, A4, A5 of 7
    assert (fin["open_now"], fin["oldest_open_order"], fin["oldest_open_node"]) == (2, "A5", "credit_review")
    assert fin["oldest_open_since"] == "2026-03-05T09:00:00+08:00"
    assert fin["oldest_open_seconds"] == 16 * 3600  # Thu 9h + Fri 3h + 4h of office time
    wh = rows["warehouse"]
    assert (wh["arrived"], wh["completed"], wh["breached"], wh["breach_share"], wh["open_now"]) == (3, 3, 0, 0.0, 0)
    assert wh["business_days"] == 5  # dispatch counts wall-clock time: every day of the period
    assert wh["handling_p50_seconds"] == pytest.approx(3600, abs=1)
    assert wh["handling_p90_seconds"] == pytest.approx(3600 + 0.8 * (86400 - 3600), abs=1)
    assert wh["oldest_open_order"] is None and wh["oldest_open_seconds"] is None
    auto = rows[None]
    assert (auto["arrived"], auto["completed"], auto["arrived_per_day"], auto["breached"]) == (1, 1, 0.2, 0)


def test_per_person(week):
    rows = workload(week, *WEEK, "--by", "person")
    assert list(rows) == ["alice", "bob", "frank", "grace", "judy"]
    alice, bob = rows["alice"], rows["bob"]
    assert (alice["completed"], alice["breached"], alice["breach_share"]) == (2, 1, 0.5)  # the cancel is no decision
    assert alice["handling_p50_seconds"] == pytest.approx(2400, abs=1)
    assert (bob["completed"], bob["breached"]) == (3, 2)
    assert bob["handling_p90_seconds"] == pytest.approx(2400 + 0.8 * 3000, abs=1)
    assert (bob["completed_per_day"], bob["business_days"]) == (0.6, 5)
    assert rows["frank"]["completed"] == 2 and rows["grace"]["completed"] == 1
    for row in rows.values():  # work reaches roles, not people
        assert row["arrived"] is None and row["arrived_per_day"] is None and row["open_now"] is None


def test_the_period_moves_the_figures(week):
    monday = workload(week, "--from", "2026-03-02", "--to", "2026-03-02")["finance_reviewer"]
    assert (monday["arrived"], monday["completed"], monday["business_days"]) == (2, 2, 1)  # A1, A2; A7, A1
    assert monday["open_now"] == 2  # the backlog is now's, whatever the period
    everything = workload(week)["finance_reviewer"]
    assert (everything["arrived"], everything["completed"]) == (9, 6)
    # from the first visit (Fri 02-27) to now: Fri, Mon-Fri of the office calendar
    assert everything["business_days"] == 6
    before_now = workload(week, "--from", "2026-03-02", "--to", "2026-03-20")["finance_reviewer"]
    assert before_now["business_days"] == 5  # days after the command clock hold no work yet


def test_table(week):
    r = week.run("report", "workload", *WEEK, "--format", "table", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.stdout.splitlines() if "finance_reviewer" in ln)
    for cell in ("1.4", "1.0", "40m", "2", "16h (A5 at credit_review)", "42.9% (3)"):
        assert cell in line, (cell, line)
    assert "(auto nodes)" in r.stdout and "Workload per role — visits from 2026-03-02 00:00" in r.stdout
    narrow = week.run("report", "workload", *WEEK, "--format", "table", now=NOW_TEXT, columns=80)
    assert narrow.exit_code == 0 and max(len(ln) for ln in narrow.stdout.splitlines()) <= 80
    assert "finance_reviewer" in narrow.stdout
    person = week.run("report", "workload", *WEEK, "--by", "person", "--format", "table", now=NOW_TEXT)
    assert person.exit_code == 0 and "alice" in person.stdout and "arrived/day" not in person.stdout


def test_bad_periods_and_empty_ones(week):
    r = week.run("report", "workload", "--from", "2026-03-06", "--to", "2026-03-02", now=NOW_TEXT)
    assert r.exit_code == 2 and "--to '2026-03-02' is not after --from '2026-03-06'" in r.stderr
    r = week.run("report", "workload", "--from", "someday", now=NOW_TEXT)
    assert r.exit_code == 2 and "Error: --from 'someday'" in r.stderr
    r = week.run("report", "workload", "--by", "team", now=NOW_TEXT)
    assert r.exit_code == 2
    r = week.run("report", "workload", "--from", "2026-04-01", "--to", "2026-04-30", "--format", "json", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    assert (
        "No node visits arrived or were completed: visits from 2026-04-01 00:00 to 2026-05-01 00:00 (Asia/Shanghai)."
    ) in r.stderr
    rows = {row["group"]: row for row in json.loads(r.stdout)}
    assert list(rows) == ["finance_reviewer"]  # only its backlog
    assert (
        rows["finance_reviewer"]["arrived"],
        rows["finance_reviewer"]["completed"],
        rows["finance_reviewer"]["open_now"],
    ) == (0, 0, 2)
    assert rows["finance_reviewer"]["breach_share"] is None and rows["finance_reviewer"]["business_days"] == 0


def test_an_empty_store(workspace):
    r = workspace.run("report", "workload", "--format", "json", now=NOW_TEXT)
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    assert "No node visits arrived or were completed: all visits." in r.stderr
    r = workspace.run("report", "workload", "--format", "table", now=NOW_TEXT)
    assert r.exit_code == 0 and r.stdout == ""


def test_business_days_follow_each_calendar():
    from ffctl.core.calendar import WALL_CLOCK, BusinessCalendar
    from ffctl.core.workload import business_days

    office = BusinessCalendar("Asia/Shanghai", {0: [(540, 1080)], 1: [(540, 1080)]}, holidays=[date(2026, 3, 3)])
    saturday = BusinessCalendar("Europe/Berlin", {5: [(540, 1020)]})
    start, end = at(2, "00:00"), at(9, "00:00")
    assert business_days([office], start, end, "UTC") == 1  # Tuesday is a holiday
    assert business_days([office, saturday], start, end, "UTC") == 2
    assert business_days([WALL_CLOCK], start, end, "Asia/Shanghai") == 7
    assert business_days([office], at(2, "18:00"), end, "UTC") == 0  # Monday's hours are over
    assert business_days([office], end, start, "UTC") == 0


def test_dashboard_has_a_workload_panel(week):
    r = week.run("report", "dashboard", "--out", "-", "--from", "2026-03-02", "--to", "2026-03-06", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    panel = r.stdout.split("<h2>Workload per role</h2>", 1)[1].split("</section>", 1)[0]
    chart = panel.split('aria-label="workload per role"', 1)[1]
    roles = re.findall(r'text-anchor="end" font-weight="normal">([^<]+)</text>', chart)
    assert roles == ["finance_reviewer", "warehouse", "(auto nodes)"]
    # finance_reviewer falls behind (1.4 in, 1.0 done): its words and its done bar are red
    assert '#d64545" text-anchor="start" font-weight="600">1.4 in · 1.0 done per day</text>' in chart
    assert "open 2 · oldest 16h · 43% breached" in chart
    assert "0.6 in · 0.6 done per day" in chart and "open 0 · 0% breached" in chart
    assert "<title>finance_reviewer: arrived 1.4 / day</title>" in chart
    # the longest bar (finance_reviewer's arrivals) spans the plot; the others are to scale
    widths = [
        float(w)
        for w in re.findall(
            r'<rect x="170" y="[\d.]+" width="([\d.]+)" height="14" rx="3" fill="#(?:1693a5|1f9d61|d64545)"', chart
        )
    ]
    assert widths[0] == pytest.approx(660) and widths[1] == pytest.approx(660 * 1.0 / 1.4, abs=0.1)


def test_dashboard_workload_panel_when_nothing_happened(workspace):
    r = workspace.run("report", "dashboard", "--out", "-", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    assert "<h2>Workload per role</h2>" in r.stdout and "no node visits in the period" in r.stdout


def test_handling_time_in_sql_matches_the_calendar_for_random_visits(workspace, example_config):
    """Random credit reviews over two weeks with a weekend and three office holidays (Oct 1, 2 and
    5): the SQL business time, less holds, agrees with the calendar's own ``between``."""
    import random
    import statistics

    rng = random.Random(20)
    office = example_config.calendar("credit_review")
    start = datetime(2026, 9, 28, 0, 0, tzinfo=SH)
    tasks, expected = [], []
    for i in range(60):
        entered = start + timedelta(minutes=rng.randrange(0, 12 * 24 * 60))
        completed = entered + timedelta(minutes=rng.randrange(1, 3 * 24 * 60))
        business = office.between(entered, completed)
        held = float(rng.choice([0, 0, min(business, rng.randrange(60, 7200))]))
        expected.append(business - held)
        tasks.append(
            visit(
                f"R{i}",
                "credit_review",
                entered.astimezone(timezone.utc),
                entered.astimezone(timezone.utc),
                completed.astimezone(timezone.utc),
                rng.choice(["alice", "bob"]),
                paused=held,
            )
        )
    with workspace.store().session(write=True) as s:
        s.execute(sa.insert(Customer.__table__), [{"customer": "C", "name": "C"}])
        s.execute(
            sa.insert(Order.__table__),
            [
                {
                    "order_id": t["order_id"],
                    "customer": "C",
                    "created_at": t["entered_at"],
                    "status": "open",
                    "workflow": "standard",
                }
                for t in tasks
            ],
        )
        s.execute(sa.insert(Task.__table__), tasks)
    r = workspace.run("report", "workload", "--format", "json", now="2026-10-20T12:00+08:00")
    row = json.loads(r.stdout)[0]
    assert (row["group"], row["completed"], row["arrived"]) == ("finance_reviewer", 60, 60)
    assert row["handling_p50_seconds"] == pytest.approx(statistics.median(expected), abs=1)
    assert row["handling_p90_seconds"] == pytest.approx(
        statistics.quantiles(expected, n=10, method="inclusive")[8], abs=1
    )
    two_weeks = workspace.run(
        "report",
        "workload",
        "--from",
        "2026-09-28",
        "--to",
        "2026-10-09",
        "--format",
        "json",
        now="2026-10-20T12:00+08:00",
    )
    # Mon-Wed, then Thu 1 and Fri 2 are holidays, Mon 5 too, Tue 6-Fri 9
    assert json.loads(two_weeks.stdout)[0]["business_days"] == 7


def test_the_report_reads_its_facts_and_schema_0013_upgrades_and_downgrades(week):
    """`report workload` refreshes the facts and reads work_fact/work_day; down to 0012 they go,
    back up the next report rebuilds them and says the same."""
    from alembic import command

    before = workload(week, *WEEK)
    store = week.store()
    with store.session() as s:
        assert s.execute(sa.text("SELECT COUNT(*) FROM work_fact")).scalar_one() == 13  # every visit but the skip
        days = s.execute(sa.text("SELECT kind, SUM(n) FROM work_day GROUP BY kind ORDER BY kind")).all()
    assert [tuple(d) for d in days] == [("arrived", 13), ("person", 10), ("role", 10)]  # the cancel and open ones
    command.downgrade(store._alembic_config(), "0012")
    with store.session() as s:
        tables = set(sa.inspect(s.connection()).get_table_names())
    assert "work_fact" not in tables and "work_day" not in tables
    store.upgrade()
    with store.session() as s:
        assert s.execute(sa.text("SELECT event_id FROM fact_state")).scalar_one() is None  # rebuilt on the next report
    assert workload(week, *WEEK) == before
