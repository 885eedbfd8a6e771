"""ffctl order list / show / hold / release / cancel / unflag."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from helpers import order_events as events
from helpers import seed_workflow_orders as seed
from helpers import workflow_time as t

from ffctl.core import stock, workflow
from ffctl.core.config import load_config
from ffctl.core.models import Event, Order, OrderFlag, Receipt, Stock, Task

NOW = "2026-11-23T09:25:00+08:00"  # a Monday


@pytest.fixture
def ws(workspace):
    """Orders in every state at NOW (credit_review: 30 min of office time, at risk after 22.5)."""
    workspace.cfg = load_config(workspace.config_path)
    workspace.db = db = workspace.store()
    cfg = workspace.cfg
    seed(
        db,
        cfg,
        [
            {"id": "BREACHED", "created": "2026-11-20 16:00"},  # Friday: due 16:30
            {"id": "AT-RISK", "created": "2026-11-23 09:00"},  # due 09:30, at risk from 09:22:30
            {"id": "ON-TRACK", "created": "2026-11-23 09:20"},  # due 09:50
            {"id": "HELD", "created": "2026-11-23 09:01"},
            {"id": "ALLOC", "created": "2026-11-23 09:02", "customer": "C-EAST", "channel": "b2b"},
            {"id": "FLAGGED", "created": "2026-11-23 09:03"},
            {"id": "GONE", "created": "2026-11-23 09:04"},
        ],
    )
    with db.session(write=True) as s:
        workflow.hold(s, cfg, "HELD", at=t("2026-11-23 09:10"), actor="alice", reason="customer call")
        workflow.complete(s, cfg, "ALLOC", at=t("2026-11-23 09:20"), actor="alice", manual=True)
        s.add(
            OrderFlag(
                order_id="FLAGGED",
                flag="shipping_exception",
                priority="high",
                rule="stuck_in_dispatch",
                raised_at=t("2026-11-23 09:06"),
            )
        )
    assert (
        workspace.run("order", "cancel", "GONE", "--reason", "duplicate", now="2026-11-23T09:07:00+08:00").exit_code
        == 0
    )
    yield workspace
    db.dispose()


def listed(ws, *args, now=NOW):
    r = ws.run("order", "list", "--format", "json", *args, now=now)
    assert r.exit_code == 0, r.stderr
    return [row["order_id"] for row in json.loads(r.stdout)]


def test_list_every_order_oldest_first_with_its_state(ws):
    r = ws.run("order", "list", "-f", "json", now=NOW)
    rows = {row["order_id"]: row for row in json.loads(r.stdout)}
    assert list(rows) == ["BREACHED", "AT-RISK", "HELD", "ALLOC", "FLAGGED", "GONE", "ON-TRACK"]
    assert {
        k: rows["AT-RISK"][k] for k in ("customer", "status", "node", "state", "deadline", "seconds_left", "flags")
    } == {
        "customer": "C-WEST",
        "status": "open",
        "node": "credit_review",
        "state": "at_risk",
        "deadline": "2026-11-23T09:30:00+08:00",
        "seconds_left": 300,
        "flags": [],
    }
    assert rows["BREACHED"]["state"] == "breached"
    assert rows["BREACHED"]["seconds_left"] == -(30 * 60 + 25 * 60)  # Friday 16:30-17:00, Monday 09:00-09:25
    assert (rows["HELD"]["status"], rows["HELD"]["state"], rows["HELD"]["seconds_left"]) == (
        "on_hold",
        "on_hold",
        21 * 60,
    )
    assert (rows["GONE"]["status"], rows["GONE"]["node"], rows["GONE"]["state"]) == ("cancelled", None, None)
    assert rows["FLAGGED"]["flags"] == ["shipping_exception"]
    assert "promised_ship_date" in rows["ON-TRACK"]


def test_list_filters(ws):
    assert listed(ws, "--breached") == ["BREACHED"]
    assert listed(ws, "--at-risk") == ["AT-RISK"]
    assert listed(ws, "--at-risk", "--breached") == ["BREACHED", "AT-RISK"]
    assert listed(ws, "--node", "allocation") == ["ALLOC"]
    assert listed(ws, "--status", "on_hold") == ["HELD"]
    assert listed(ws, "--status", "cancelled") == ["GONE"]
    assert listed(ws, "--flag", "shipping_exception") == ["FLAGGED"]
    assert listed(ws, "--node", "credit_review", "--status", "open") == ["BREACHED", "AT-RISK", "FLAGGED", "ON-TRACK"]
    # an hour later everything open and not held is breached
    assert listed(ws, "--breached", now="2026-11-23T10:30:00+08:00") == [
        "BREACHED",
        "AT-RISK",
        "ALLOC",
        "FLAGGED",
        "ON-TRACK",
    ]


def test_list_pages_and_says_so(ws):
    r = ws.run("order", "list", "-f", "csv", "--limit", "2", now=NOW)
    assert r.exit_code == 0
    assert (
        r.stdout.splitlines()[0] == "order_id,customer,status,node,state,deadline,seconds_left,flags,promised_ship_date"
    )
    assert len(r.stdout.splitlines()) == 3
    assert r.stderr == "Showing 2 of 7 orders; --limit 0 for all.\n"
    for fmt in ("json", "table"):  # every format says so, on stderr
        r = ws.run("order", "list", "-f", fmt, "--limit", "2", now=NOW)
        assert r.exit_code == 0 and r.stderr == "Showing 2 of 7 orders; --limit 0 for all.\n"
    r = ws.run("order", "list", "-f", "json", "--limit", "3", "--status", "open", now=NOW)
    assert len(json.loads(r.stdout)) == 3 and r.stderr == "Showing 3 of 5 orders; --limit 0 for all.\n"
    r = ws.run("order", "list", "-f", "csv", "--limit", "7", now=NOW)  # exactly a page: nothing was left out
    assert len(r.stdout.splitlines()) == 8 and r.stderr == ""
    r = ws.run("order", "list", "-f", "csv", "--limit", "0", now=NOW)
    assert len(r.stdout.splitlines()) == 8 and r.stderr == ""


def test_list_by_customer_and_by_search(ws):
    assert listed(ws, "--customer", "C-EAST") == ["ALLOC"]
    assert listed(ws, "--customer", "C-WEST", "--status", "cancelled") == ["GONE"]
    assert listed(ws, "--search", "eastern") == ["ALLOC"]  # a piece of the customer's name, any case
    assert listed(ws, "--search", "c-eas") == ["ALLOC"]  # or of the customer id
    assert listed(ws, "--search", "at-r") == ["AT-RISK"]  # or of the order id
    assert listed(ws, "--search", "E", "--status", "on_hold") == ["HELD"]
    assert listed(ws, "--search", "%") == [] and listed(ws, "--search", "_") == []  # typed text, not a pattern
    r = ws.run("order", "list", "--customer", "C-NORTH", now=NOW)
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "Error: no customer 'C-NORTH'",
        "Hint: --customer takes a customer id; --search finds customers by name.",
    ]


def test_list_refuses_bad_filters(ws):
    r = ws.run("order", "list", "--status", "lost", now=NOW)
    assert r.exit_code == 2 and "--status" in r.stderr
    r = ws.run("order", "list", "--node", "nowhere", now=NOW)
    assert r.exit_code == 2 and "no such node" in r.stderr


def test_list_table(ws):
    r = ws.run("order", "list", "-f", "table", now=NOW)
    assert r.exit_code == 0
    assert "AT-RISK" in r.stdout and "5m left" in r.stdout and "paused" in r.stdout


def test_show_json_shape(ws):
    r = ws.run("order", "show", "AT-RISK", "-f", "json", now=NOW)
    assert r.exit_code == 0, r.stderr
    o = json.loads(r.stdout)
    assert {
        "order_id",
        "status",
        "workflow",
        "node",
        "customer",
        "promised_ship_date",
        "flags",
        "lines",
        "timeline",
    } <= set(o)
    assert (o["order_id"], o["status"], o["workflow"], o["node"], o["customer"]) == (
        "AT-RISK",
        "open",
        "standard",
        "credit_review",
        "C-WEST",
    )
    assert (o["state"], o["seconds_left"], o["deadline"]) == ("at_risk", 300, "2026-11-23T09:30:00+08:00")
    assert o["owner"] == "finance_reviewer" and o["assignees"] == ["finance_reviewer"]
    assert o["lines"] == [
        {
            "line_no": 1,
            "sku": "STD-1",
            "qty": 2,
            "allocated": 0,
            "shipped": 0,
            "cancelled": 0,
            "backordered": 0,
            "atp_date": None,
            "atp_note": None,
        }
    ]
    assert o["shipments"] == []
    assert [e["event"] for e in o["timeline"]] == ["created", "entered"]
    assert set(o["timeline"][0]) == {"at", "event", "node", "actor", "detail"}
    assert o["timeline"][1]["at"] == "2026-11-23T09:00:00+08:00"


def test_show_unknown_order_is_one_line(ws):
    r = ws.run("order", "show", "NOPE", now=NOW)
    assert r.exit_code == 1
    assert r.stderr == "Error: no order 'NOPE'\n"
    assert r.stdout == ""


def test_show_table_has_header_lines_and_timeline(ws):
    ws.run("advance", "AT-RISK", now="2026-11-23T09:40:00+08:00", user="alice")
    r = ws.run("order", "show", "AT-RISK", "-f", "table", now="2026-11-23T09:41:00+08:00")
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    for text in (
        "Western Goods",
        "now at",
        "allocation",
        "auto (allocate)",
        "lines",
        "timeline",
        "SLA breached by 10m",
        "alice",
        "2026-11-23 09:40",
    ):
        assert text in out, text


def test_show_backorder_with_its_atp_date(ws):
    cfg = ws.cfg
    with ws.db.session(write=True) as s:
        s.add(Stock(sku="STD-1", warehouse="WH1", on_hand=1))
        s.add(
            Receipt(receipt_id="R1", sku="STD-1", warehouse="WH1", qty=20, expected_at=t("2026-11-30 10:00"))
        )  # 10 go to earlier open orders
        s.flush()
        stock.allocate(s, cfg, ["ALLOC"], at=t("2026-11-23 09:20"), actor="allocate", tz=cfg.timezone)
    r = ws.run("order", "show", "ALLOC", "-f", "json", now=NOW)
    o = json.loads(r.stdout)
    assert o["node"] == "allocation"
    assert o["lines"][0] == {
        "line_no": 1,
        "sku": "STD-1",
        "qty": 2,
        "allocated": 1,
        "shipped": 0,
        "cancelled": 0,
        "backordered": 1,
        "atp_date": "2026-11-30",
        "atp_note": None,
    }
    r = ws.run("order", "show", "ALLOC", "-f", "table", now=NOW)
    assert "2026-11-30" in r.stdout


def test_hold_and_release_stretch_the_deadline_by_the_business_time_held(ws):
    # AT-RISK: due Monday 09:30; held at 09:25 with 5 min left, released Tuesday 10:00
    assert ws.run("order", "hold", "AT-RISK", "--reason", "waiting for PO", now=NOW, user="bob").exit_code == 0
    o = json.loads(ws.run("order", "show", "AT-RISK", "-f", "json", now="2026-11-23T17:00:00+08:00").stdout)
    assert (o["status"], o["state"], o["seconds_left"]) == ("on_hold", "on_hold", 300)
    r = ws.run("order", "release", "AT-RISK", now="2026-11-24T10:00:00+08:00", user="bob")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.strip() == "AT-RISK: released at credit_review, 5m left."
    o = json.loads(ws.run("order", "show", "AT-RISK", "-f", "json", now="2026-11-24T10:00:00+08:00").stdout)
    # the hold covered 09:25-18:00 Monday and 09:00-10:00 Tuesday: 9h35m of office time
    assert (o["status"], o["deadline"], o["seconds_left"]) == ("open", "2026-11-24T10:05:00+08:00", 300)
    assert [e["event"] for e in o["timeline"]][-2:] == ["held", "released"]
    assert o["timeline"][-2]["detail"] == "waiting for PO" and o["timeline"][-2]["actor"] == "bob"
    assert "9h35m" in o["timeline"][-1]["detail"]


def test_hold_and_release_refusals(ws):
    r = ws.run("order", "hold", "HELD", "--reason", "again", now=NOW)
    assert r.exit_code == 1 and "on hold" in r.stderr
    r = ws.run("order", "release", "AT-RISK", now=NOW)
    assert r.exit_code == 1 and "not on hold" in r.stderr
    assert ws.run("order", "hold", "AT-RISK", now=NOW).exit_code == 2  # --reason is required
    assert ws.run("order", "hold", "NOPE", "--reason", "x", now=NOW).exit_code == 1


def test_cancel_releases_reservations_and_closes_tasks(ws):
    cfg = ws.cfg
    with ws.db.session(write=True) as s:
        s.add(Stock(sku="STD-1", warehouse="WH1", on_hand=1))
        s.flush()
        stock.allocate(s, cfg, ["ALLOC"], at=t("2026-11-23 09:20"), actor="allocate", tz=cfg.timezone)
    r = ws.run("order", "cancel", "ALLOC", "--reason", "customer withdrew", now=NOW, user="oscar")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.strip() == "ALLOC: cancelled; released 1 reserved unit."
    with ws.db.session() as s:
        o = s.get(Order, "ALLOC")
        assert (o.status, o.node, o.cancelled_at) == ("cancelled", None, t("2026-11-23 09:25"))
        assert s.execute(sa.select(Stock.allocated)).scalar_one() == 0
        assert (
            s.execute(sa.select(Task.status).where(Task.order_id == "ALLOC", Task.node == "allocation")).scalar_one()
            == "cancelled"
        )
        e = s.execute(sa.select(Event).where(Event.order_id == "ALLOC", Event.event == "cancelled")).scalar_one()
    assert (e.actor, e.node, e.detail) == ("oscar", "allocation", "customer withdrew; released 1 reserved unit")
    r = ws.run("order", "cancel", "ALLOC", "--reason", "again", now=NOW)
    assert r.exit_code == 1 and "cancelled" in r.stderr
    assert ws.run("task", "list", "--all", "-f", "json", now=NOW, user="judy").stdout.count('"ALLOC"') == 0


def test_cancel_refused_for_shipped_orders(ws):
    with ws.db.session(write=True) as s:
        s.execute(sa.update(Order).where(Order.order_id == "ON-TRACK").values(status="shipped"))
    r = ws.run("order", "cancel", "ON-TRACK", "--reason", "too late", now=NOW)
    assert r.exit_code == 1
    assert "shipped" in r.stderr


def test_cancel_a_held_order(ws):
    r = ws.run("order", "cancel", "HELD", "--reason", "customer gone", now=NOW)
    assert r.exit_code == 0, r.stderr
    assert listed(ws, "--status", "cancelled") == ["HELD", "GONE"]


def test_unflag(ws):
    r = ws.run("order", "unflag", "FLAGGED", "shipping_exception", now=NOW, user="heidi")
    assert r.exit_code == 0, r.stderr
    with ws.db.session() as s:
        flag = s.execute(sa.select(OrderFlag).where(OrderFlag.order_id == "FLAGGED")).scalar_one()
    assert (flag.cleared_at, flag.cleared_by) == (t("2026-11-23 09:25"), "heidi")
    assert events(ws.db, "FLAGGED")[-1] == ("unflagged", None)
    assert listed(ws, "--flag", "shipping_exception") == []
    r = ws.run("order", "unflag", "FLAGGED", "shipping_exception", now=NOW)
    assert r.exit_code == 1
    assert "no standing flag 'shipping_exception'" in r.stderr
    assert ws.run("order", "unflag", "NOPE", "x", now=NOW).stderr.startswith("Error: no order 'NOPE'\n")


def test_a_reader_that_stops_early_gets_no_error(workspace):
    """`ffctl order list | head -1`: when the reader closes the pipe, ffctl ends quietly (exit 1,
    nothing on stderr), not with 'unexpected BrokenPipeError ... this is a bug'."""
    import os
    import subprocess
    import sys

    from helpers import seed_orders

    store = workspace.store()
    with store.session(write=True) as s:  # ~300 KB of CSV: more than a pipe holds
        seed_orders(s, *({"order_id": f"SO{i:06d}", "node": "credit_review"} for i in range(4000)))
    store.dispose()
    env = dict(os.environ, FFCTL_CONFIG=str(workspace.config_path), FFCTL_DB=workspace.db_url, FFCTL_NOW=NOW)
    env.pop("FFCTL_DEBUG", None)
    for fmt in ("csv", "json"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ffctl", "order", "list", "--limit", "0", "--format", fmt],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        first = proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 1 and stderr == "", stderr
        assert first.startswith(b"order_id," if fmt == "csv" else b"[")
