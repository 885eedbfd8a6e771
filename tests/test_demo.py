"""The newcomer's path: `ffctl demo` builds a store through the real code paths and reports."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def test_demo_runs_end_to_end_and_prints_the_kpi_report(tmp_path):
    from ffctl.cli import app

    folder = tmp_path / "demo"
    r = CliRunner().invoke(
        app,
        ["--now", "2026-11-20T12:00:00+08:00", "demo", "--dir", str(folder), "--orders", "120", "--days", "4"],
        env={"COLUMNS": "160"},
    )
    assert r.exit_code == 0, r.output
    assert (folder / "ffctl.toml").exists() and (folder / "ffctl.db").exists()
    assert "KPI report" in r.stderr and "Try next" in r.stderr
    assert "order_confirmation_minutes" in r.stdout or "order_co" in r.stdout
    env = {"FFCTL_CONFIG": str(folder / "ffctl.toml")}
    kpis = json.loads(CliRunner().invoke(app, ["report", "kpi", "--format", "json"], env=env).stdout)
    names = {row["kpi"] for row in kpis}
    assert {"order_confirmation_minutes", "on_time_shipping", "fill_rate", "perfect_order"} <= names
    assert "fill_rate" in r.stdout or "fill_ra" in r.stdout  # the demo's KPI table
    shipped = next(row for row in kpis if row["kpi"] == "on_time_shipping")
    assert shipped["count"] > 0
    assert next(row for row in kpis if row["kpi"] == "fill_rate")["count"] > 0
    store_path = folder / "ffctl.db"
    import sqlite3

    with sqlite3.connect(store_path) as db:  # some orders shipped in two parts
        assert (
            db.execute(
                "SELECT count(*) FROM (SELECT order_id FROM shipment GROUP BY order_id HAVING count(*) > 1)"
            ).fetchone()[0]
            > 0
        )
    orders = json.loads(CliRunner().invoke(app, ["order", "list", "--format", "json", "--limit", "0"], env=env).stdout)
    assert len(orders) == 120
    timeline = json.loads(
        CliRunner().invoke(app, ["order", "show", orders[0]["order_id"], "--format", "json"], env=env).stdout
    )["timeline"]
    assert timeline[0]["event"] == "created"

    # the demo refreshed the report facts once, at its end: a rebuild from scratch writes the same
    import sqlalchemy as sa
    from helpers import fact_rows

    from ffctl.core import kpi
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    cfg = load_config(folder / "ffctl.toml")
    store = Store(cfg.database_url)
    _summary_and_dashboard_count_the_late_visits(r.stderr, folder, store)
    kept = fact_rows(store)
    assert len(kept[0]) == 120
    with store.session() as s:
        s.execute(sa.text("UPDATE fact_state SET event_id = NULL"))
    assert kpi.refresh_facts(store, cfg)["mode"] == "full"
    assert fact_rows(store) == kept
    store.dispose()


def test_the_demos_daily_refreshes_keep_what_a_rebuild_writes(tmp_path, db_url):
    """Refreshed at each simulated day's start, as a daily report job would, the facts that those
    incremental refreshes kept (imports, advances, allocation, shipments, deliveries, returns,
    sweeps) are exactly what a rebuild from scratch writes, on both backends."""
    from datetime import datetime, timezone

    import sqlalchemy as sa
    from helpers import fact_rows

    from ffctl.core import kpi
    from ffctl.core.config import load_config
    from ffctl.core.demo import build_demo
    from ffctl.core.store import Store

    end = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    result = build_demo(tmp_path / "demo", orders=120, days=4, now=end, db_url=db_url, refresh_daily=True)
    cfg = load_config(result.config_path)
    store = Store(db_url)
    kept = fact_rows(store)
    assert len(kept[0]) == 120
    with store.session() as s:
        s.execute(sa.text("UPDATE fact_state SET event_id = NULL"))
    assert kpi.refresh_facts(store, cfg, now=end)["mode"] == "full"
    assert fact_rows(store) == kept
    store.dispose()


def _summary_and_dashboard_count_the_late_visits(summary: str, folder, store) -> None:
    """SPEC 9.1: the demo's summary, its dashboard and `report sla` count every late node visit
    (done after its deadline, held after it, or open past it at the clock), swept or not: the
    same number as a count straight from the task table."""
    import re

    import sqlalchemy as sa

    from ffctl.cli import app

    end = "2026-11-20 04:00:00"  # the demo's clock, 12:00 in Shanghai, as stored (naive UTC)
    with store.session() as s:
        late = s.execute(
            sa.text(
                "SELECT node, COUNT(*) FROM task WHERE status <> 'skipped' AND deadline IS NOT NULL AND ("
                "  (held_at IS NOT NULL AND held_at > deadline)"
                "  OR (held_at IS NULL AND completed_at IS NOT NULL AND completed_at > deadline)"
                "  OR (held_at IS NULL AND completed_at IS NULL AND deadline <= :end)) GROUP BY node"
            ),
            {"end": end},
        ).all()
        unswept = s.execute(
            sa.text(
                "SELECT COUNT(*) FROM task WHERE status = 'done' AND completed_at > deadline AND sla_state <> 'breached'"
            )
        ).scalar_one()
    late = dict(late)
    assert unswept > 0, "the demo should complete some visits late between sweeps"
    said = re.search(r"([\d,]+) SLA breaches", summary)
    assert said and int(said.group(1).replace(",", "")) == sum(late.values()), (summary, late)
    env = {"FFCTL_CONFIG": str(folder / "ffctl.toml"), "FFCTL_NOW": "2026-11-20T12:00:00+08:00"}
    r = CliRunner().invoke(app, ["report", "dashboard", "--out", "-"], env=env)
    assert r.exit_code == 0, r.output
    shown = {}
    for node, cells in re.findall(r"<tr class=\"[a-z]*\"><td>(\w+)(.*?)</tr>", r.stdout):
        done, in_sla, breaches, *_ = re.findall(r"<td>([\d,]+)</td>", cells)  # numbers only: not times, not %
        shown[node] = int(breaches.replace(",", ""))
    assert {n: c for n, c in shown.items() if c} == late
    rows = json.loads(CliRunner().invoke(app, ["report", "sla", "--format", "json"], env=env).stdout)
    assert {row["node"]: row["breaches"] for row in rows if row["breaches"]} == late
    kpis = json.loads(CliRunner().invoke(app, ["report", "kpi", "--format", "json"], env=env).stdout)
    bottleneck = next(row for row in kpis if row["kpi"] == "bottleneck")
    assert bottleneck["count"] == late[bottleneck["node"]]


def test_demo_refuses_a_folder_that_holds_a_store(tmp_path):
    from ffctl.cli import app

    (tmp_path / "ffctl.toml").write_text("")
    r = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path), "--orders", "10", "--days", "1"])
    assert r.exit_code == 1 and "is not a new or empty folder" in r.stderr
