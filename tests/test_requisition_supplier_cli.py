"""`rules run/list`, `requisition list/approve/reject` and `supplier list/show` as a user runs them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from helpers import QC_GOOD as GOOD
from helpers import RULES_NOW as NOW
from helpers import seed_batches, seed_orders, seed_products, seed_stock, seed_suppliers

NOW_ISO = "2026-03-10T12:00:00Z"


@pytest.fixture
def ws(workspace):
    """The example config (rules low_stock, stuck_in_dispatch, supplier_quality) and a store with a hit of each."""
    store = workspace.store()
    with store.session(write=True) as s:
        seed_suppliers(s, ("ACME", True), ("GOODCO", True))
        seed_products(s, {"sku": "A", "safety_stock": 20, "supplier": "ACME"}, {"sku": "B", "safety_stock": 5})
        seed_stock(s, ("A", "WH1", 3, 0), ("B", "WH1", 9, 0))
        seed_orders(
            s,
            {
                "order_id": "SO1",
                "node": "dispatch",
                "entered_at": NOW - timedelta(hours=49),
                "sales_rep": "oscar",
                "lines": [("A", 2, 0)],
            },
        )
        seed_batches(s, "ACME", [GOOD, (80, 100, 0.0), (85, 100, 1.0), (90, 100, 2.0)])
        seed_batches(s, "GOODCO", [GOOD, GOOD, GOOD])
    store.dispose()
    return workspace


def js(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_rules_run_json_then_nothing_twice(ws):
    out = js(ws.run("rules", "run", "--format", "json", now=NOW_ISO))
    assert out["now"] == "2026-03-10T20:00:00+08:00"  # shown in the config's zone
    assert out["per_rule"] == {"low_stock": 1, "stuck_in_dispatch": 1, "supplier_quality": 1}
    assert out["hits"] == 3 and not out["dry_run"]
    assert out["notifications"] == 1 + 3 + 1  # ivan; heidi (email, webhook) + oscar; ivan
    by_rule = {i["rule"]: i for i in out["items"]}
    assert by_rule["low_stock"]["subject"] == "sku:A"
    assert by_rule["low_stock"]["detail"].startswith("available 3 < safety stock 20; open demand 2; qty 19")
    assert by_rule["stuck_in_dispatch"]["detail"] == "shipping_exception: in dispatch for 2d1h > 2d"
    assert by_rule["supplier_quality"]["subject"] == "supplier:ACME"
    again = js(ws.run("rules", "run", "--format", "json", now="2026-03-10T12:05:00Z"))
    assert again["hits"] == 0 and again["notifications"] == 0


def test_rules_run_dry_run_and_its_own_now_option(ws):
    out = js(ws.run("rules", "run", "--dry-run", "--now", "2026-03-10T20:00:00", "--format", "json"))
    assert out["hits"] == 3 and out["dry_run"] and out["now"] == "2026-03-10T20:00:00+08:00"
    assert js(ws.run("requisition", "list", "--format", "json")) == []
    early = js(ws.run("rules", "run", "--dry-run", "--now", "2026-03-10T10:00:00Z", "--format", "json"))
    assert early["per_rule"]["stuck_in_dispatch"] == 0  # 47h in dispatch at that time
    bad = ws.run("rules", "run", "--now", "yesterday")
    assert bad.exit_code == 2 and "--now 'yesterday'" in bad.stderr


def test_rules_run_table_and_csv(ws):
    table = ws.run("rules", "run", "--format", "table", now=NOW_ISO)
    assert table.exit_code == 0, table.output
    assert "low_stock" in table.stdout and "sku:A" in table.stdout and "3 hits" in table.stderr
    csv = ws.run("rules", "run", "--format", "csv", "--dry-run", now=NOW_ISO)
    assert csv.stdout.splitlines() == ["rule,kind,subject,what,detail"]  # everything already happened


def test_rules_list(ws):
    before = js(ws.run("rules", "list", "--format", "json"))
    assert [(r["rule"], r["kind"], r["last_run_at"], r["total_hits"]) for r in before] == [
        ("low_stock", "stock_below", None, 0),
        ("stuck_in_dispatch", "dwell", None, 0),
        ("supplier_quality", "supplier", None, 0),
    ]
    ws.run("rules", "run", now=NOW_ISO)
    after = js(ws.run("rules", "list", "--format", "json"))
    assert [(r["last_run_at"], r["last_hits"], r["total_hits"]) for r in after] == [
        ("2026-03-10T20:00:00+08:00", 1, 1)
    ] * 3
    assert "flag shipping_exception" in after[1]["description"]
    table = ws.run("rules", "list", "--format", "table")
    assert "stuck_in_dispatch" in table.stdout and "total hits" in table.stdout


def test_requisition_list_approve_reject_and_refusals(ws):
    ws.run("rules", "run", now=NOW_ISO)
    rows = js(ws.run("requisition", "list", "--format", "json"))
    assert [(r["id"], r["sku"], r["qty"], r["status"], r["supplier"]) for r in rows] == [(1, "A", 19, "draft", "ACME")]
    assert set(rows[0]) >= {"id", "sku", "qty", "status", "created_at", "reason"}
    assert rows[0]["created_at"] == "2026-03-10T20:00:00+08:00"

    ok = ws.run("requisition", "approve", "1", now="2026-03-10T13:00:00Z", user="ivan")
    assert ok.exit_code == 0 and "Requisition #1 approved: 19 x A from ACME." in ok.stderr and ok.stdout == ""
    again = ws.run("requisition", "reject", "1", "--reason", "changed my mind", user="ivan")
    assert again.exit_code == 1 and "requisition #1 is already approved by ivan" in again.stderr
    missing = ws.run("requisition", "approve", "42")
    assert missing.exit_code == 1 and "no requisition #42" in missing.stderr
    approved = js(ws.run("requisition", "list", "--status", "approved", "--format", "json"))
    assert approved[0]["decided_by"] == "ivan" and approved[0]["decided_at"] == "2026-03-10T21:00:00+08:00"

    ws.run("rules", "run", now="2026-03-10T14:00:00Z")  # approved, goods not received: still open
    assert js(ws.run("requisition", "list", "--status", "draft", "--format", "json")) == []
    store = ws.store()
    with store.session(write=True) as s:  # one unit of A is received; A is still below safety stock
        s.execute(
            sa.text(
                "INSERT INTO receipt (receipt_id, sku, warehouse, qty, expected_at, status, received_at) "
                "VALUES ('R-A', 'A', 'W1', 1, '2026-03-10 14:10:00', 'received', '2026-03-10 14:10:00')"
            )
        )
    store.dispose()
    ws.run("rules", "run", now="2026-03-10T14:30:00Z")  # still low, nothing open: a new draft
    rejected = ws.run("requisition", "reject", "2", "--reason", "wait for the promo", user="ivan")
    assert rejected.exit_code == 0 and "Requisition #2 rejected" in rejected.stderr
    assert [r["id"] for r in js(ws.run("requisition", "list", "--status", "rejected", "--format", "json"))] == [2]
    assert js(ws.run("requisition", "list", "--status", "draft", "--format", "json")) == []
    bad = ws.run("requisition", "list", "--status", "open")
    assert bad.exit_code == 2
    csv = ws.run("requisition", "list", "--format", "csv")
    assert csv.stdout.splitlines()[0].startswith("id,sku,qty,supplier,status,created_at,reason")


def test_supplier_list_and_show_explain_a_freeze(ws):
    before = js(ws.run("supplier", "list", "--format", "json"))
    assert [(s["supplier"], s["inspection_exempt"], s["qc_pass_rate_last3"]) for s in before] == [
        ("ACME", True, 0.85),
        ("GOODCO", True, 1.0),
    ]
    assert set(before[0]) >= {"supplier", "name", "inspection_exempt", "qc_pass_rate_last3", "avg_delay_days"}
    assert before[0]["avg_delay_days"] == 0.75  # (0 + 0 + 1 + 2) / 4 batches so far

    ws.run("rules", "run", now=NOW_ISO)
    after = js(ws.run("supplier", "list", "--format", "json"))
    assert [(s["supplier"], s["inspection_exempt"]) for s in after] == [("ACME", False), ("GOODCO", True)]

    shown = js(ws.run("supplier", "show", "ACME", "--format", "json"))
    assert shown["inspection_exempt"] is False and shown["exempt_frozen_at"] == "2026-03-10T20:00:00+08:00"
    assert shown["exempt_frozen_reason"].startswith(
        "QC pass rate below 95% in the last 3 batches in a row: ACME-B2 80%, ACME-B3 85%, ACME-B4 90%"
    )
    assert [b["batch_id"] for b in shown["batches"]] == ["ACME-B4", "ACME-B3", "ACME-B2", "ACME-B1"]
    assert shown["batches"][0]["delay_days"] == 2.0 and shown["batches"][0]["pass_rate"] == 0.9
    assert [h["event"] for h in shown["history"]] == ["exemption_frozen"]

    table = ws.run("supplier", "show", "ACME", "--format", "table")
    assert table.exit_code == 0 and "exemption frozen" in table.stdout and "ACME-B2 80%" in table.stdout
    missing = ws.run("supplier", "show", "NOPE")
    assert missing.exit_code == 1 and "no supplier 'NOPE'" in missing.stderr
