"""order show answers the phone: what the order waits for, and for a shipped one when, how and by whom."""

from __future__ import annotations

from helpers import cli_json, cli_ok, import_csv, open_shop

NOW = "2026-11-23T09:00:00+08:00"  # a Monday


def at(hhmm: str, day: str = "2026-11-23") -> str:
    return f"{day}T{hhmm}:00+08:00"


def panel(ws, order_id: str, now: str) -> str:
    return cli_ok(ws, "order", "show", order_id, "-f", "table", now=now).stdout


def test_the_panel_says_what_the_order_waits_for_and_how_it_shipped(workspace):
    ws = workspace
    open_shop(ws, now=NOW)
    import_csv(ws, "receipts", "receipt_id,sku,warehouse,qty,expected_at\nPO-1,SKU-0002,WH-SH,30,2026-12-10\n", now=NOW)
    import_csv(
        ws,
        "orders",
        "order_id,line_no,customer,sku,qty,channel,region,priority\n"
        "SO-1,1,C-EAST,SKU-0001,5,b2b,east,high\n"
        "SO-1,2,C-EAST,SKU-0002,35,b2b,east,high\n",
        now=NOW,
    )  # the pilot workflow

    o = cli_json(ws, "order", "show", "SO-1", now=at("09:05"))
    assert o["waiting_for"] == "waiting for credit_review by finance_reviewer"
    assert (o["priority"], o["channel"], o["hold_reason"], o["delivery_issue"]) == (1, "b2b", None, None)
    out = panel(ws, "SO-1", at("09:05"))
    assert "waiting for credit_review by finance_reviewer" in out and "priority high" in out and "channel b2b" in out

    cli_ok(ws, "order", "hold", "SO-1", "--reason", "customer call", now=at("09:06"))
    o = cli_json(ws, "order", "show", "SO-1", now=at("09:07"))
    assert (o["waiting_for"], o["hold_reason"]) == ("on hold: customer call", "customer call")
    assert "`ffctl order release SO-1` resumes it" in panel(ws, "SO-1", at("09:07"))
    cli_ok(ws, "order", "release", "SO-1", now=at("09:08"))

    cli_ok(ws, "advance", "SO-1", now=at("09:10"), user="alice")
    cli_ok(ws, "allocate", "--all", "-f", "csv", now=at("09:12"))
    o = cli_json(ws, "order", "show", "SO-1", now=at("09:13"))
    assert o["waiting_for"] == "waiting for 25 × SKU-0002, ATP 2026-12-10"
    assert "waiting for 25 × SKU-0002, ATP 2026-12-10" in panel(ws, "SO-1", at("09:13"))

    cli_ok(ws, "stock", "receive", "PO-1", now=at("10:00", "2026-12-10"))
    cli_ok(ws, "allocate", "--all", "-f", "csv", now=at("10:01", "2026-12-10"))
    o = cli_json(ws, "order", "show", "SO-1", now=at("10:02", "2026-12-10"))
    assert o["waiting_for"] == "waiting for shipment by warehouse"
    cli_ok(ws, "ship", "SO-1", "--carrier", "顺丰", "--tracking", "SF123", now=at("11:00", "2026-12-10"), user="frank")

    o = cli_json(ws, "order", "show", "SO-1", now=at("12:00", "2026-12-10"))
    assert (o["status"], o["waiting_for"], o["carrier"], o["tracking"]) == (
        "shipped",
        "waiting for delivery",
        "顺丰",
        "SF123",
    )
    assert o["shipped_at"] == "2026-12-10T11:00:00+08:00"
    out = panel(ws, "SO-1", at("12:00", "2026-12-10"))
    assert "2026-12-10 11:00, by 顺丰, tracking SF123" in out and "waiting for delivery" in out
    assert "priority high" in out and "now at" not in out

    cli_ok(ws, "deliver", "SO-1", "--issue", "damaged", now=at("09:00", "2026-12-12"))
    o = cli_json(ws, "order", "show", "SO-1", now=at("10:00", "2026-12-12"))
    assert (o["status"], o["waiting_for"], o["delivery_issue"]) == ("delivered", None, "damaged")
    out = panel(ws, "SO-1", at("10:00", "2026-12-12"))
    assert "2026-12-12 09:00, issue: damaged" in out and "顺丰" in out


def test_a_cancelled_order_says_when_and_why(workspace):
    open_shop(workspace, now=NOW)
    import_csv(workspace, "orders", "order_id,line_no,customer,sku,qty\nSO-2,1,C-WEST,SKU-0001,1\n", now=NOW)
    cli_ok(workspace, "order", "cancel", "SO-2", "--reason", "duplicate", now=at("09:30"))
    o = cli_json(workspace, "order", "show", "SO-2", now=at("09:31"))
    assert (o["waiting_for"], o["cancel_reason"]) == (None, "duplicate")
    out = panel(workspace, "SO-2", at("09:31"))
    assert "2026-11-23 09:30: duplicate" in out and "now at" not in out
