"""schedule tick / show: cron times in the config's zone, once per cron time, missed runs coalesce."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from helpers import SWEEP_CONFIG as CONFIG
from helpers import add_sweep_orders as add_orders

SCHEDULE = """
[schedule]
sla_sweep = "*/5 * * * *"
notify_send = "* * * * *"
rules_run = "30 * * * *"
daily_report = "0 8 * * *"
"""
# Monday 2026-03-02 10:37 in Shanghai
NOW = datetime(2026, 3, 2, 2, 37, 20, tzinfo=timezone.utc)


@pytest.fixture
def ws(workspace_with_config):
    return workspace_with_config(CONFIG.replace('timezone = "UTC"', 'timezone = "Asia/Shanghai"') + SCHEDULE)


def tick(ws, at: datetime, *args) -> dict[str, dict]:
    r = ws.run("schedule", "tick", "-f", "json", *args, now=at.isoformat())
    assert r.exit_code == 0, r.output
    return {row["job"]: row for row in json.loads(r.stdout)}


def ran(rows: dict[str, dict]) -> set[str]:
    return {job for job, row in rows.items() if row["ran"]}


def test_first_tick_runs_every_job_once_at_its_latest_cron_time(ws):
    rows = tick(ws, NOW)
    assert ran(rows) == {"sla_sweep", "notify_send", "rules_run", "daily_report"}
    assert {job: row["due_at"] for job, row in rows.items()} == {
        "sla_sweep": "2026-03-02T10:35:00+08:00",
        "notify_send": "2026-03-02T10:37:00+08:00",
        "rules_run": "2026-03-02T10:30:00+08:00",
        "daily_report": "2026-03-02T08:00:00+08:00",
    }
    assert ran(tick(ws, NOW)) == set()  # the same minute again: nothing
    assert ran(tick(ws, NOW + timedelta(seconds=40))) == {"notify_send"}  # 10:38
    assert ran(tick(ws, NOW + timedelta(minutes=3))) == {"notify_send", "sla_sweep"}  # 10:40


def test_missed_runs_coalesce_into_one(ws):
    tick(ws, NOW)
    rows = tick(ws, NOW + timedelta(hours=26))  # cron was down for a day: one run each, at the latest time
    assert ran(rows) == {"sla_sweep", "notify_send", "rules_run", "daily_report"}
    assert rows["daily_report"]["due_at"] == "2026-03-03T08:00:00+08:00"
    assert rows["sla_sweep"]["due_at"] == "2026-03-03T12:35:00+08:00"


def test_the_sweep_job_does_the_sweep(ws):
    from ffctl.core.config import load_config

    store = ws.store()
    add_orders(store, load_config(ws.config_path), 2, at=NOW - timedelta(hours=3))
    store.dispose()
    rows = tick(ws, NOW, "--job", "sla_sweep")
    assert list(rows) == ["sla_sweep"]
    assert rows["sla_sweep"]["result"].startswith("2 at risk, 2 breached, 2 remind, 6 escalate, 0 rule hits")
    r = ws.run("order", "show", "SO-000000", "-f", "json", now=NOW.isoformat())
    if r.exit_code == 0:
        assert "escalated" in [e["event"] for e in json.loads(r.stdout)["timeline"]]


def test_daily_report_writes_the_kpi_file(ws):
    rows = tick(ws, NOW, "--job", "daily_report")
    assert rows["daily_report"]["ok"], rows
    written = ws.path / "reports" / "kpi-2026-03-02.json"
    assert rows["daily_report"]["result"].startswith(f"wrote {written}")
    doc = json.loads(written.read_text(encoding="utf-8"))
    assert doc["from"] == "2026-02-23T00:00:00+08:00" and doc["to"] == "2026-03-02T00:00:00+08:00"
    assert {row["kpi"] for row in doc["kpis"]} >= {"on_time_shipping", "perfect_order"}


def test_a_failing_job_is_recorded_and_the_others_still_run(ws, monkeypatch):
    from ffctl.core import schedule
    from ffctl.core.errors import FfctlError

    def broken(job):
        raise FfctlError("the rules are broken today")

    monkeypatch.setitem(schedule.JOBS, "rules_run", broken)
    r = ws.run("schedule", "tick", "-f", "json", now=NOW.isoformat())
    assert r.exit_code == 1 and "Failed: rules_run" in r.stderr
    rows = {row["job"]: row for row in json.loads(r.stdout)}
    assert rows["rules_run"]["result"] == "error: the rules are broken today"
    assert ran(rows) == {"sla_sweep", "notify_send", "rules_run", "daily_report"}
    shown = {
        row["job"]: row for row in json.loads(ws.run("schedule", "show", "-f", "json", now=NOW.isoformat()).stdout)
    }
    assert shown["rules_run"]["last_result"] == "error: the rules are broken today"


def test_show_lists_last_and_next_runs_in_local_time(ws):
    before = {
        row["job"]: row for row in json.loads(ws.run("schedule", "show", "-f", "json", now=NOW.isoformat()).stdout)
    }
    assert before["daily_report"]["last_ran_at"] is None and before["daily_report"]["due_now"] is True
    tick(ws, NOW)
    shown = {
        row["job"]: row for row in json.loads(ws.run("schedule", "show", "-f", "json", now=NOW.isoformat()).stdout)
    }
    assert shown["daily_report"]["last_due_at"] == "2026-03-02T08:00:00+08:00"
    assert shown["daily_report"]["last_ran_at"] == "2026-03-02T10:37:20+08:00"
    assert shown["daily_report"]["next_run_at"] == "2026-03-03T08:00:00+08:00"
    assert shown["sla_sweep"]["next_run_at"] == "2026-03-02T10:40:00+08:00"
    assert shown["sla_sweep"]["cron"] == "*/5 * * * *" and shown["sla_sweep"]["due_now"] is False
    r = ws.run("schedule", "show", "-f", "table", now=NOW.isoformat())
    assert r.exit_code == 0 and "2026-03-03 08:00" in r.stdout


def test_tick_refuses_an_unknown_job(ws):
    r = ws.run("schedule", "tick", "--job", "coffee", now=NOW.isoformat())
    assert r.exit_code == 2 and "not in [schedule]" in r.stderr


@pytest.mark.slow
def test_overlapping_ticks_run_each_job_once(ws):
    barrier = ws.path / "go"
    code = (
        "import os, sys, time\nfrom ffctl.cli import main\nimport ffctl.core.schedule, ffctl.core.sla, sqlalchemy\n"
        "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.002)\n"
        "sys.argv = ['ffctl'] + sys.argv[2:]\nmain()\n"
    )
    env = {**os.environ, "FFCTL_CONFIG": str(ws.config_path), "FFCTL_DB": ws.db_url, "FFCTL_NOW": NOW.isoformat()}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(barrier), "schedule", "tick", "-f", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    time.sleep(1.5)
    barrier.touch()
    runs: dict[str, int] = {}
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        for row in json.loads(out):
            runs[row["job"]] = runs.get(row["job"], 0) + int(row["ran"])
    assert runs == {"sla_sweep": 1, "notify_send": 1, "rules_run": 1, "daily_report": 1}


def test_a_first_tick_skips_a_job_whose_last_cron_time_is_stale(workspace_with_config):
    ws = workspace_with_config(
        CONFIG.replace('timezone = "UTC"', 'timezone = "Asia/Shanghai"')
        + '\n[schedule]\ndaily_report = "0 8 * * 1-5"\nnotify_send = "* * * * *"\n'
    )
    sunday = datetime(2026, 3, 8, 4, 0, tzinfo=timezone.utc)  # Sunday noon in Shanghai: Friday 08:00 is stale
    rows = tick(ws, sunday)
    assert ran(rows) == {"notify_send"}
    assert rows["daily_report"]["result"].startswith("not due")
    shown = {r["job"]: r for r in json.loads(ws.run("schedule", "show", "-f", "json", now=sunday.isoformat()).stdout)}
    assert shown["daily_report"]["due_now"] is False
    assert shown["daily_report"]["next_run_at"] == "2026-03-09T08:00:00+08:00"
    assert ran(tick(ws, datetime(2026, 3, 9, 0, 1, tzinfo=timezone.utc))) == {"daily_report", "notify_send"}


def test_a_future_tick_then_a_present_tick_runs_the_sweep(ws):
    """SPEC 9.1: a tick with a future --now must not stop the schedule for years."""
    from ffctl.core.config import load_config

    future = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert ran(tick(ws, future)) == {"sla_sweep", "notify_send", "rules_run", "daily_report"}
    store = ws.store()
    add_orders(store, load_config(ws.config_path), 2, at=NOW - timedelta(hours=3))
    store.dispose()
    shown = {r["job"]: r for r in json.loads(ws.run("schedule", "show", "-f", "json", now=NOW.isoformat()).stdout)}
    assert shown["sla_sweep"]["due_now"] is True and shown["sla_sweep"]["next_run_at"] == "2026-03-02T10:37:20+08:00"
    assert "later than the clock" in shown["sla_sweep"]["note"]
    r = ws.run("schedule", "tick", "-f", "json", now=NOW.isoformat())
    assert r.exit_code == 0, r.output
    assert (
        "sla_sweep: it had claimed the cron time 2030-01-01 08:00+08:00, later than the clock 2026-03-02 10:37+08:00"
    ) in r.stderr
    rows = {row["job"]: row for row in json.loads(r.stdout)}
    assert ran(rows) == {"sla_sweep", "notify_send", "rules_run", "daily_report"}
    assert rows["sla_sweep"]["due_at"] == "2026-03-02T10:35:00+08:00"
    assert rows["sla_sweep"]["result"].startswith("2 at risk, 2 breached")
    # back in step: the same minute again runs nothing, and says nothing more
    r = ws.run("schedule", "tick", "-f", "json", now=NOW.isoformat())
    assert ran({row["job"]: row for row in json.loads(r.stdout)}) == set() and "later than" not in r.stderr
    shown = {r["job"]: r for r in json.loads(ws.run("schedule", "show", "-f", "json", now=NOW.isoformat()).stdout)}
    assert shown["sla_sweep"]["note"] is None and shown["sla_sweep"]["next_run_at"] == "2026-03-02T10:40:00+08:00"


def test_a_cron_expression_that_never_fires_fails_its_job_alone(ws):
    """Issue 26: "0 0 30 2 *" (February 30th) must neither crash tick midway nor crash show."""
    import dataclasses

    from ffctl.core import schedule
    from ffctl.core.config import load_config

    cfg = load_config(ws.config_path)
    cfg = dataclasses.replace(cfg, schedule={**cfg.schedule, "rules_run": "0 0 30 2 *"})
    store = ws.store()
    try:
        rows = {r["job"]: r for r in schedule.tick(store, cfg, now=NOW)}
        assert ran(rows) == {"sla_sweep", "notify_send", "daily_report"}
        assert rows["rules_run"]["ok"] is False and "never fires" in rows["rules_run"]["result"]
        with store.session() as s:
            shown = {r["job"]: r for r in schedule.show(s, cfg, now=NOW)}
    finally:
        store.dispose()
    assert shown["rules_run"]["next_run_at"] is None and shown["rules_run"]["due_now"] is False
    assert "never fires" in shown["rules_run"]["note"]
    assert shown["sla_sweep"]["next_run_at"] is not None


def test_a_job_that_raises_anything_fails_alone_and_the_tick_exits_1(ws, monkeypatch):
    from ffctl.core import schedule

    def broken(job):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(schedule.JOBS, "sla_sweep", broken)
    r = ws.run("schedule", "tick", "-f", "json", now=NOW.isoformat())
    assert r.exit_code == 1 and "Failed: sla_sweep" in r.stderr
    rows = {row["job"]: row for row in json.loads(r.stdout)}
    assert (
        rows["sla_sweep"]["ok"] is False and rows["sla_sweep"]["result"] == "error: ZeroDivisionError: division by zero"
    )
    assert ran(rows) == {"sla_sweep", "notify_send", "rules_run", "daily_report"}
    assert all(rows[j]["ok"] for j in ("notify_send", "rules_run", "daily_report"))
