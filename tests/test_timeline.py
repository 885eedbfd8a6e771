"""SPEC 9.1: an order's timeline never runs backwards, on SQLite and PostgreSQL.

A command that changes an order at a clock earlier than the order's latest event is refused
(exit 1, both times named in the configured zone) and writes nothing; set-based commands leave
such orders as they are (allocate --all says so, a sweep or the rules find nothing due on them).
Everything is driven as a user would, through the CLI and CSV imports (Asia/Shanghai).
"""

from __future__ import annotations

import json

import pytest

DAY = "2026-12-02T"


def at(hhmm: str) -> str:
    return f"{DAY}{hhmm}:00+08:00"


@pytest.fixture
def ws(workspace):
    """CH1 (standard workflow) and P1, P2 (pilot: b2b from the east), created 09:00-09:02 on Dec 2."""
    workspace.write("products.csv", "sku,name\nA,Widget\nB,Bolt\n")
    workspace.write("customers.csv", "customer,name,region\nC1,客户一,east\n")
    workspace.write("stock.csv", "sku,warehouse,on_hand\nA,WH1,100\nB,WH1,1\n")
    workspace.write(
        "orders.csv",
        "order_id,line_no,customer,sku,qty,channel,created_at\n"
        "CH1,1,C1,A,1,web,2026-12-02 09:00\n"
        "P1,1,C1,A,2,b2b,2026-12-02 09:01\n"
        "P2,1,C1,B,5,b2b,2026-12-02 09:02\n",
    )
    for kind in ("products", "customers", "stock", "orders"):
        r = workspace.run("import", kind, workspace.path / f"{kind}.csv", now=at("09:05"))
        assert r.exit_code == 0, r.output
    return workspace


def timeline(ws, order_id: str) -> list[dict]:
    r = ws.run("order", "show", order_id, "-f", "json", now=at("23:00"))
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["timeline"]


def ok(ws, *args, now: str, user: str = "judy"):
    r = ws.run(*args, now=now, user=user)
    assert r.exit_code == 0, r.output
    return r


def refused(ws, order_id: str, *args, now: str, latest: str, user: str = "judy"):
    """The command is refused naming both times, and the order's timeline is as it was."""
    before = timeline(ws, order_id)
    r = ws.run(*args, now=now, user=user)
    assert r.exit_code == 1, r.output
    clock = now[:16].replace("T", " ")
    assert f"order {order_id}: the clock {clock}+08:00 is earlier than its latest event" in r.stderr, r.stderr
    assert f"at 2026-12-02 {latest}+08:00)" in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr
    assert timeline(ws, order_id) == before
    return r


def test_the_issue_reproduction_is_refused_and_no_kpi_goes_negative(ws):
    r = refused(ws, "CH1", "advance", "CH1", now="2026-12-01T10:00+08:00", latest="09:00", user="alice")
    assert (
        "the clock 2026-12-01 10:00+08:00 is earlier than its latest event (entered at 2026-12-02 09:00+08:00)"
        in r.stderr
    )
    kpis = json.loads(ok(ws, "report", "kpi", "-f", "json", now=at("09:30")).stdout)
    conf = next(row for row in kpis if row["kpi"] == "order_confirmation_minutes")
    assert conf["count"] == 0 and conf["actual"] is None
    ok(ws, "advance", "CH1", now=at("09:20"), user="alice")
    kpis = json.loads(ok(ws, "report", "kpi", "-f", "json", now=at("09:30")).stdout)
    conf = next(row for row in kpis if row["kpi"] == "order_confirmation_minutes")
    assert conf["count"] == 1 and conf["actual"] == 20.0


def test_every_order_command_refuses_a_clock_before_the_orders_latest_event(ws):
    ok(ws, "advance", "P1", now=at("09:10"))  # credit review done: P1 waits at allocation
    refused(ws, "P1", "advance", "P1", "--reject", "--reason", "no", now=at("09:09"), latest="09:10")
    refused(ws, "P1", "order", "hold", "P1", "--reason", "call", now=at("09:09"), latest="09:10")
    refused(ws, "P1", "order", "cancel", "P1", "--reason", "dup", now=at("09:09"), latest="09:10")
    refused(ws, "P1", "allocate", "P1", now=at("09:09"), latest="09:10")
    ok(ws, "allocate", "P1", now=at("09:15"))  # at dispatch now
    refused(ws, "P1", "ship", "P1", now=at("09:12"), latest="09:15")
    ok(ws, "ship", "P1", now=at("09:20"))
    refused(ws, "P1", "deliver", "P1", now=at("09:18"), latest="09:20")
    ok(ws, "order", "hold", "CH1", "--reason", "customer call", now=at("09:30"))
    refused(ws, "CH1", "order", "release", "CH1", now=at("09:25"), latest="09:30")
    ok(ws, "order", "release", "CH1", now=at("09:30"))  # the same minute is not earlier


def test_unflag_refuses_an_earlier_clock(ws):
    from datetime import datetime, timezone

    from ffctl.core.models import OrderFlag

    store = ws.store()
    with store.session(write=True) as s:  # raised by hand, without an event: the order's latest is 09:00
        s.add(
            OrderFlag(
                order_id="CH1",
                flag="shipping_exception",
                rule="stuck_in_dispatch",
                raised_at=datetime(2026, 12, 2, 0, 30, tzinfo=timezone.utc),
            )
        )
    store.dispose()
    refused(ws, "CH1", "order", "unflag", "CH1", "shipping_exception", now=at("08:59"), latest="09:00")
    ok(ws, "order", "unflag", "CH1", "shipping_exception", now=at("09:01"))


def test_allocate_all_leaves_orders_with_later_events_and_says_so(ws):
    ok(ws, "advance", "P1", now=at("09:10"))
    ok(ws, "advance", "P2", now=at("09:20"))
    before = timeline(ws, "P2")
    r = ok(ws, "allocate", "--all", "-f", "json", now=at("09:15"))
    result = json.loads(r.stdout)
    assert [o["order_id"] for o in result["orders"]] == ["P1"]
    assert result["after_clock"] == [
        {"order_id": "P2", "latest_at": "2026-12-02T09:20:00+08:00", "latest_event": "entered"}
    ]
    assert "1 order has events later than the clock 2026-12-02 09:15" in r.stderr and "P2 (entered at" in r.stderr
    assert timeline(ws, "P2") == before
    result = json.loads(ok(ws, "allocate", "--all", "-f", "json", now=at("09:25")).stdout)
    assert [o["order_id"] for o in result["orders"]] == ["P2"] and result["after_clock"] == []


def test_a_sweep_at_an_earlier_clock_finds_nothing_due_on_the_order(ws):
    ok(ws, "advance", "P2", now=at("09:10"))  # allocation due 09:20, at risk from 09:17:30
    ok(ws, "allocate", "P2", now=at("09:40"))  # 1 of 5 units: an event at 09:40, the task stays open
    before = timeline(ws, "P2")
    swept = json.loads(ok(ws, "sla", "sweep", "-f", "json", now=at("09:30")).stdout)
    assert swept["breached"] == 1 and [i for i in swept["items"] if i["order_id"] == "P2"] == []  # CH1 is swept
    assert timeline(ws, "P2") == before
    swept = json.loads(ok(ws, "sla", "sweep", "-f", "json", now=at("09:45")).stdout)
    assert [i["what"] for i in swept["items"] if i["order_id"] == "P2"][:2] == ["at_risk", "breached"]


def test_imports_reject_rows_that_would_rewrite_the_past(ws):
    ok(ws, "advance", "P1", now=at("09:10"))
    ok(ws, "allocate", "P1", now=at("09:15"))
    ws.write("shipments.csv", "order_id,shipped_at\nP1,2026-12-02 09:12\n")
    r = ws.run("import", "shipments", ws.path / "shipments.csv", now=at("10:00"))
    assert r.exit_code == 1 and "the clock 2026-12-02 09:12+08:00 is earlier than its latest event" in r.output
    ws.write("orders2.csv", "order_id,line_no,customer,sku,qty,channel,created_at\nCH1,1,C1,A,3,web,2026-12-02 09:00\n")
    ok(ws, "advance", "CH1", now=at("09:30"), user="alice")
    r = ws.run("import", "orders", ws.path / "orders2.csv", "--update", now=at("09:20"))
    assert (
        r.exit_code == 1 and "order CH1: the clock 2026-12-02 09:20+08:00 is earlier than its latest event" in r.output
    )


def test_a_now_more_than_a_day_ahead_of_the_machine_warns(ws):
    from datetime import datetime, timedelta, timezone

    ahead = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    r = ws.run("order", "list", now=ahead)
    assert r.exit_code == 0 and "more than a day ahead of this machine's clock" in r.stderr
    soon = (datetime.now(timezone.utc) + timedelta(hours=20)).isoformat()
    assert "ahead of this machine's clock" not in ws.run("order", "list", now=soon).stderr
