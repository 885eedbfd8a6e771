"""Going live with a backlog: `import orders --backfill` (SPEC 9.1), through the CLI on both backends."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import orders_named

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)  # the import's clock; every node counts wall-clock time

CONFIG = """
[defaults]
timezone = "UTC"
[roles.clerk]
members = ["ann"]
escalate_to = "lead"
[roles.lead]
members = ["ben"]
escalate_to = "boss"
[roles.boss]
members = ["cat"]
[users.ann]
email = "ann@example.com"
[users.ben]
email = "ben@example.com"
[users.cat]
email = "cat@example.com"
[workflows.fast]
match = { channel = ["fast"] }
nodes = ["approve", "pack"]
[workflows.main]
match = {}
nodes = ["review", "pack"]
[nodes.review]
owner = "clerk"
sla = "1h"
warn_at = 0.5
escalation = [ { after = "0m", action = "remind" }, { after = "1h", action = "escalate" },
               { after = "3h", action = "escalate" } ]
[nodes.approve]
owner = "clerk"
sla = "1h"
escalation = [ { after = "30m", action = "auto_approve" } ]
[nodes.pack]
owner = "clerk"
sla = "4h"
[notify]
log = "sent.jsonl"
"""


@pytest.fixture
def ws(workspace_with_config):
    ws = workspace_with_config(CONFIG)
    ws.write("products.csv", "sku,name\nSKU1,产品一\n")
    ws.write("customers.csv", "customer,name\nC1,客户一\n")
    for kind in ("products", "customers"):
        assert ws.run("import", kind, str(ws.path / f"{kind}.csv")).exit_code == 0
    return ws


def orders_file(ws, groups: list[tuple[str, int, datetime, str]]) -> str:
    """One line per order: (id prefix, how many, created_at, channel)."""
    lines = ["order_id,line_no,customer,sku,qty,created_at,channel"]
    for prefix, n, created, channel in groups:
        lines += [f"{prefix}-{i:06d},1,C1,SKU1,1,{created.isoformat()},{channel}" for i in range(n)]
    return str(ws.write("orders.csv", "\n".join(lines) + "\n"))


def notes(ws) -> list[dict]:
    return json.loads(ws.run("notify", "list", "--limit", "0", "-f", "json").stdout)


def sweep(ws, at: datetime) -> dict:
    r = ws.run("sla", "sweep", "--no-send", "-f", "json", now=at.isoformat())
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


BACKLOG = [
    ("OLD", 250, T0 - timedelta(hours=2), "web"),  # breached 1h ago: at risk, breached, reminded, escalated
    ("NEW", 250, T0 - timedelta(minutes=40), "web"),
]  # at risk 10m ago, breaches in 20m


def test_backfill_of_500_overdue_orders_queues_nothing_and_the_next_sweep_only_what_falls_due_later(ws):
    r = ws.run("import", "orders", orders_file(ws, BACKLOG), "--backfill", now=T0.isoformat())
    assert r.exit_code == 0, r.output
    assert (
        "--backfill: the SLA history up to 2026-03-02 12:00+00:00 is recorded as applied on import "
        "(500 at risk, 250 breached, 250 reminders, 250 escalations); nobody was notified"
    ) in r.stderr
    assert notes(ws) == []
    timeline = json.loads(ws.run("order", "show", "OLD-000000", "-f", "json").stdout)["timeline"]
    applied = [(e["event"], e["at"], e["actor"]) for e in timeline if e["actor"] == "sla-backfill"]
    assert applied == [
        (event, "2026-03-02T12:00:00+00:00", "sla-backfill")
        for event in ("at_risk", "breached", "reminded", "escalated")
    ]
    assert all(
        e["detail"].endswith("backfilled on import, nobody was notified")
        for e in timeline
        if e["actor"] == "sla-backfill"
    )
    listed = ws.run("task", "list", "--role", "lead", "--limit", "0", "-f", "json", now=T0.isoformat())
    tasks = {t["order_id"]: t for t in json.loads(listed.stdout)}  # the escalation put them in lead's inbox
    assert set(tasks) == {f"OLD-{i:06d}" for i in range(250)}
    assert tasks["OLD-000000"]["assignees"] == ["clerk", "lead"] and tasks["OLD-000000"]["state"] == "breached"
    # the first sweep at the import's clock has nothing to do
    first = sweep(ws, T0)
    assert (first["items"], first["notifications_queued"]) == ([], 0)
    # 20 minutes on, the recent orders breach (and are reminded): that is all anyone hears
    later = sweep(ws, T0 + timedelta(minutes=30))
    assert (later["at_risk"], later["breached"], later["actions"]["remind"], later["actions"]["escalate"]) == (
        0,
        250,
        250,
        0,
    )
    (note,) = notes(ws)
    assert note["recipient"] == "ann" and note["subject"] == "[ffctl] 250 orders need you: 250 breached"
    assert orders_named(note["body"]) == {f"NEW-{i:06d}" for i in range(250)}
    # the old orders' next step, escalation to the boss, comes when it is due: 3h past their deadline
    at = T0 + timedelta(hours=2)
    assert sweep(ws, at)["actions"]["escalate"] == 250 + 250  # OLD to boss, NEW to lead
    told = {n["recipient"]: orders_named(n["body"]) for n in notes(ws) if n["created_at"] == at.isoformat()}
    assert told == {"cat": {f"OLD-{i:06d}" for i in range(250)}, "ben": {f"NEW-{i:06d}" for i in range(250)}}


def test_without_backfill_the_first_sweep_tells_the_whole_backlog(ws):
    """The contrast: what --backfill spares the team (one digest each, not a message per step)."""
    assert ws.run("import", "orders", orders_file(ws, BACKLOG), now=T0.isoformat()).exit_code == 0
    doc = sweep(ws, T0)
    assert (doc["at_risk"], doc["breached"], doc["actions"]["escalate"], doc["notifications_queued"]) == (
        500,
        250,
        250,
        2,
    )
    told = {n["recipient"]: orders_named(n["body"]) for n in notes(ws)}
    assert told["ann"] == {f"{p}-{i:06d}" for p in ("OLD", "NEW") for i in range(250)}
    assert told["ben"] == {f"OLD-{i:06d}" for i in range(250)}


def test_backfill_applies_auto_actions_on_import(ws):
    r = ws.run(
        "import",
        "orders",
        orders_file(ws, [("FAST", 3, T0 - timedelta(hours=3), "fast")]),
        "--backfill",
        now=T0.isoformat(),
    )
    assert r.exit_code == 0, r.output
    assert "3 auto-approved" in r.stderr and notes(ws) == []
    order = json.loads(ws.run("order", "show", "FAST-000000", "-f", "json").stdout)
    assert order["node"] == "pack"
    events = [(e["event"], e["node"], e["actor"]) for e in order["timeline"]][-3:]
    assert events == [
        ("breached", "approve", "sla-backfill"),
        ("auto_approved", "approve", "sla-backfill"),
        ("entered", "pack", "sla-backfill"),
    ]
    assert order["timeline"][-1]["at"] == "2026-03-02T12:00:00+00:00"  # pack's clock starts at the import
    assert sweep(ws, T0 + timedelta(hours=1))["items"] == []


def test_backfill_changes_nothing_for_orders_created_at_the_clock_or_reimported(ws):
    path = orders_file(ws, [("NOW", 2, T0, "web")])
    r = ws.run("import", "orders", path, "--backfill", now=T0.isoformat())
    assert r.exit_code == 0 and "nothing had fallen due by 2026-03-02 12:00+00:00" in r.stderr
    r = ws.run("import", "orders", path, "--backfill", now=(T0 + timedelta(hours=5)).isoformat())
    assert r.exit_code == 0 and "0 new" in r.stderr  # an order already in the store keeps its history
    assert sweep(ws, T0 + timedelta(hours=5))["breached"] == 2


def test_backfill_goes_with_orders_only_and_a_dry_run_writes_nothing(ws):
    r = ws.run("import", "customers", str(ws.path / "customers.csv"), "--backfill")
    assert r.exit_code == 2 and "--backfill goes with `import orders`" in r.stderr
    r = ws.run("import", "orders", orders_file(ws, BACKLOG), "--backfill", "--dry-run", now=T0.isoformat())
    assert r.exit_code == 0, r.output
    assert json.loads(ws.run("order", "list", "-f", "json").stdout) == []


@pytest.mark.slow
def test_an_import_killed_halfway_then_rerun_backfills_each_order_once(ws):
    """kill -9 of a real `import orders --backfill` process: each committed batch holds its orders
    with their history; the rerun adds the rest, and no order's history is applied twice."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import sqlalchemy as sa

    n = 4000
    path = orders_file(ws, [("OLD", n, T0 - timedelta(hours=2), "web")])
    env = {
        **os.environ,
        "FFCTL_CONFIG": str(ws.config_path),
        "FFCTL_DB": ws.db_url,
        "FFCTL_NOW": T0.isoformat(),
        "FFCTL_USER": "importer",
    }
    command = [sys.executable, "-m", "ffctl", "import", "orders", path, "--backfill", "--batch-rows", "200"]
    store = ws.store()

    def histories() -> dict[str, int]:
        with store.session() as s:
            return dict(
                s.execute(
                    sa.text(
                        "SELECT o.order_id, (SELECT count(*) FROM event e WHERE e.order_id = o.order_id "
                        "AND e.actor = 'sla-backfill') FROM orders o"
                    )
                ).all()
            )

    try:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up and proc.poll() is None:
            with store.session() as s:
                if s.execute(sa.text("SELECT count(*) FROM orders")).scalar():
                    break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        done = histories()
        assert 0 < len(done) < n, f"the import was not killed halfway ({len(done)} orders committed)"
        assert set(done.values()) == {4}  # at risk, breached, reminded, escalated: with its order, or not at all
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert f"{n - len(done):,} new" in rerun.stderr and f"{len(done):,} unchanged" in rerun.stderr
        after = histories()
        assert len(after) == n and set(after.values()) == {4}
        assert notes(ws) == []
    finally:
        store.dispose()
