"""The rule engine on both backends: each kind's trigger, non-trigger and once-only behaviour."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from helpers import QC_BAD as BAD
from helpers import QC_GOOD as GOOD
from helpers import RULES_NOW as NOW
from helpers import add_rows, seed_batches, seed_orders, seed_products, seed_stock, seed_suppliers

BASE_CONFIG = """
[defaults]
timezone = "UTC"

[calendars.office]
timezone = "UTC"
hours = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }

[roles.purchasing]
members = ["ivan"]
[roles.warehouse_supervisor]
members = ["heidi"]
[users.ivan]
email = "ivan@example.com"
[users.heidi]
email = "heidi@example.com"
webhook = "http://127.0.0.1:9/hook"
[users.oscar]
email = "oscar@example.com"

[workflows.standard]
match = {}
nodes = ["review", "dispatch"]

[nodes.review]
owner = "purchasing"
sla = "1h"
calendar = "office"

[nodes.dispatch]
owner = "warehouse_supervisor"
sla = "48h"
auto = "ship"
"""

LOW_STOCK = """
[rules.low_stock]
kind = "stock_below"
action = "purchase_requisition"
include_inbound = {inbound}
notify = ["purchasing"]
"""

DWELL = """
[rules.stuck]
kind = "dwell"
node = "{node}"
longer_than = "{longer}"
clock = "{clock}"
flag = "shipping_exception"
priority = "high"
notify = ["warehouse_supervisor", "order.sales_rep"]
"""

SUPPLIER = """
[rules.supplier_quality]
kind = "supplier"
qc_pass_rate_below = 0.95
consecutive_batches = 3
avg_delay_days_above = 5
window_batches = {window}
action = "freeze_inspection_exempt"
notify = ["purchasing"]
priority = "high"
"""


def make_config(*sections: str):
    from ffctl.core.config import parse_config

    return parse_config(BASE_CONFIG + "".join(sections), "/tmp/ffctl-test.toml")


def low_stock(inbound: bool = False) -> str:
    return LOW_STOCK.format(inbound=str(inbound).lower())


def dwell(node: str = "dispatch", longer: str = "48h", clock: str = "wall") -> str:
    return DWELL.format(node=node, longer=longer, clock=clock)


def supplier_rule(window: int = 10) -> str:
    return SUPPLIER.format(window=window)


def run(store, cfg, *, now: datetime = NOW, dry_run: bool = False) -> dict:
    from ffctl.core.rules import run_rules

    with store.session(write=not dry_run) as s:
        return run_rules(s, cfg, now=now, actor="rules-test", dry_run=dry_run)


def fetch(store, sql: str, **params) -> list:
    with store.session() as s:
        return s.execute(sa.text(sql), params).all()


def count(store, sql: str, **params) -> int:
    return fetch(store, sql, **params)[0][0]


# --- stock_below -------------------------------------------------------------------------------


@pytest.fixture
def stocked(store):
    with store.session(write=True) as s:
        seed_suppliers(s, ("S1", True))
        seed_products(
            s,
            {"sku": "A", "safety_stock": 20, "supplier": "S1"},  # low, no reorder qty
            {"sku": "B", "safety_stock": 20, "reorder_qty": 50, "supplier": "S1"},  # low, reorder qty
            {"sku": "C", "safety_stock": 5},  # fine
            {"sku": "D"},  # no safety stock
            {"sku": "E", "safety_stock": 10},  # exactly at safety stock
        )
        seed_stock(s, ("A", "W1", 4, 2), ("A", "W2", 1, 0), ("C", "W1", 10, 0), ("E", "W1", 12, 2))
        seed_orders(
            s,
            {"order_id": "O1", "lines": [("A", 5, 2)]},  # 3 unallocated
            {"order_id": "O2", "status": "on_hold", "node": "review", "lines": [("A", 2, 0)]},
            {"order_id": "O3", "status": "shipped", "lines": [("A", 100, 0)]},  # not demand
        )
    return store


def test_stock_below_drafts_one_requisition_per_low_sku_with_its_numbers(stocked):
    store = stocked
    cfg = make_config(low_stock())
    result = run(store, cfg)
    assert result["per_rule"] == {"low_stock": 2} and result["hits"] == 2
    reqs = fetch(store, "SELECT sku, qty, supplier, status, reason, rule FROM requisition ORDER BY sku")
    assert [(r.sku, r.qty, r.supplier, r.status, r.rule) for r in reqs] == [
        ("A", 22, "S1", "draft", "low_stock"),  # safety 20 + open demand 5 - available 3
        ("B", 50, "S1", "draft", "low_stock"),  # the reorder qty
    ]
    assert (
        reqs[0].reason
        == "available 3 < safety stock 20; open demand 5; qty 22 = safety stock + open demand - available"
    )
    assert reqs[1].reason.startswith("available 0 < safety stock 20; open demand 0; qty 50 = the product's reorder qty")
    events = fetch(
        store, "SELECT subject, actor, detail FROM event WHERE event = 'requisition_drafted' ORDER BY subject"
    )
    assert [e.subject for e in events] == ["sku:A", "sku:B"] and events[0].actor == "rules-test"
    assert "qty 22" in events[0].detail or "for 22" in events[0].detail
    notes = fetch(store, "SELECT recipient, channel, subject FROM notification ORDER BY id")
    assert [(n.recipient, n.channel) for n in notes] == [("ivan", "email"), ("ivan", "email")]
    assert result["notifications"] == 2
    item = result["items"][0]
    assert item["rule"] == "low_stock" and item["kind"] == "stock_below" and item["subject"] == "sku:A"
    assert "22" in item["what"] and item["detail"] == reqs[0].reason


def test_stock_below_is_once_only_and_records_its_runs(stocked):
    store = stocked
    cfg = make_config(low_stock())
    run(store, cfg)
    again = run(store, cfg, now=NOW + timedelta(minutes=5))
    assert again["hits"] == 0 and again["notifications"] == 0
    assert count(store, "SELECT count(*) FROM requisition") == 2
    assert count(store, "SELECT count(*) FROM notification") == 2
    assert count(store, "SELECT count(*) FROM event WHERE event = 'requisition_drafted'") == 2
    rec = fetch(store, "SELECT last_hits, total_hits FROM rule_run WHERE rule = 'low_stock'")[0]
    assert (rec.last_hits, rec.total_hits) == (0, 2)


def test_stock_below_can_draft_again_once_the_draft_is_decided(stocked):
    from ffctl.core.requisitions import decide_requisition

    store = stocked
    cfg = make_config(low_stock())
    run(store, cfg)
    with store.session(write=True) as s:
        decide_requisition(s, 1, approve=False, at=NOW, actor="ivan", reason="wrong qty")
    again = run(store, cfg, now=NOW + timedelta(minutes=5))
    assert [i["subject"] for i in again["items"]] == ["sku:A"]
    assert count(store, "SELECT count(*) FROM requisition WHERE status = 'draft'") == 2


def test_each_run_drafts_at_its_own_time_in_the_language_it_runs_in(stocked):
    """The rule's statement is built once per process: a later run still stamps its own time,
    and once the language changes its reasons are worded in the new one."""
    from ffctl import i18n
    from ffctl.core.models import Requisition
    from ffctl.core.requisitions import decide_requisition

    store = stocked
    cfg = make_config(low_stock())
    run(store, cfg)
    with store.session(write=True) as s:
        decide_requisition(s, 1, approve=False, at=NOW, actor="ivan", reason="wrong qty")
    later = NOW + timedelta(hours=3)
    spoken = i18n.current()
    i18n.use("zh-CN")
    try:
        run(store, cfg, now=later)
    finally:
        i18n.use(spoken)
    r = Requisition.__table__.c
    with store.session() as s:
        rows = s.execute(sa.select(r.sku, r.created_at, r.reason).order_by(r.id)).all()
    assert [(row.sku, row.created_at) for row in rows] == [("A", NOW), ("B", NOW), ("A", later)]
    assert "safety stock 20" in rows[0].reason and "安全库存 20" in rows[2].reason


def approve_drafts(store, cfg, skus):
    """Run the low-stock rule once and approve its drafts for ``skus``."""
    from ffctl.core.requisitions import decide_requisition

    ids = {i["subject"]: n for n, i in enumerate(run(store, cfg)["items"], 1)}
    with store.session(write=True) as s:
        for sku in skus:
            decide_requisition(s, ids[f"sku:{sku}"], approve=True, at=NOW, actor="ivan")


def goods_received(store, sku):
    from ffctl.core.models import Receipt

    with store.session(write=True) as s:
        add_rows(
            s,
            Receipt,
            [{"receipt_id": "R9", "sku": sku, "warehouse": "W1", "qty": 1, "status": "received"}],
            {"expected_at": NOW, "supplier": None, "received_at": NOW + timedelta(hours=1)},
        )


def test_an_approved_requisition_stays_open_until_its_goods_are_received(stocked):
    store = stocked
    cfg = make_config(low_stock())
    approve_drafts(store, cfg, ["A"])
    # approved and not yet received: still open, so no second requisition for A
    assert run(store, cfg, now=NOW + timedelta(minutes=5))["items"] == []
    goods_received(store, "A")  # goods for A arrive, but A is still below safety stock
    again = run(store, cfg, now=NOW + timedelta(hours=2))
    assert [i["subject"] for i in again["items"]] == ["sku:A"]


def test_goods_of_another_sku_do_not_close_an_approved_requisition(stocked):
    store = stocked
    cfg = make_config(low_stock())
    approve_drafts(store, cfg, ["A", "B"])
    goods_received(store, "B")  # B's goods arrive; A's are still on the way
    again = run(store, cfg, now=NOW + timedelta(hours=2))
    assert [i["subject"] for i in again["items"]] == ["sku:B"]
    assert count(store, "SELECT count(*) FROM requisition WHERE sku = 'A'") == 1


def test_include_inbound_counts_open_receipts_like_a_forecast(stocked):
    from ffctl.core.models import Receipt

    store = stocked
    with store.session(write=True) as s:
        add_rows(
            s,
            Receipt,
            [
                {
                    "receipt_id": "R1",
                    "sku": "A",
                    "warehouse": "W1",
                    "qty": 17,
                    "status": "open",
                },  # 3 + 17 = 20: not low
                {"receipt_id": "R2", "sku": "B", "warehouse": "W1", "qty": 5, "status": "open"},  # 0 + 5 < 20: low
                {"receipt_id": "R3", "sku": "B", "warehouse": "W1", "qty": 99, "status": "received"},  # already on hand
            ],
            {"expected_at": NOW + timedelta(days=3), "supplier": None, "received_at": None},
        )
    result = run(store, make_config(low_stock(inbound=True)))
    assert [i["subject"] for i in result["items"]] == ["sku:B"]
    reason = fetch(store, "SELECT reason FROM requisition")[0].reason
    assert reason.startswith("available 0 + inbound 5 = 5 < safety stock 20")
    # without include_inbound the open receipts do not count
    result = run(store, make_config(low_stock(inbound=False)), now=NOW + timedelta(minutes=1))
    assert [i["subject"] for i in result["items"]] == ["sku:A"]


def test_stock_below_without_reorder_qty_and_with_inbound_orders_the_gap(stocked):
    from ffctl.core.models import Receipt

    store = stocked
    with store.session(write=True) as s:
        add_rows(
            s,
            Receipt,
            [{"receipt_id": "R1", "sku": "A", "warehouse": "W1", "qty": 7, "status": "open"}],
            {"expected_at": NOW, "supplier": None, "received_at": None},
        )
    run(store, make_config(low_stock(inbound=True)))
    row = fetch(store, "SELECT qty, reason FROM requisition WHERE sku = 'A'")[0]
    assert row.qty == 20 + 5 - 3 - 7
    assert row.reason.endswith("qty 15 = safety stock + open demand - available - inbound")


def test_dry_run_writes_nothing(stocked):
    store = stocked
    result = run(store, make_config(low_stock()), dry_run=True)
    assert result["hits"] == 2 and result["dry_run"] and result["notifications"] == 2
    assert "would draft" in result["items"][0]["what"]
    for table in ("requisition", "event", "notification", "rule_run"):
        assert count(store, f"SELECT count(*) FROM {table}") == 0, table


# --- dwell -------------------------------------------------------------------------------------


@pytest.fixture
def dwelling(store):
    with store.session(write=True) as s:
        seed_products(s, {"sku": "A"})
        seed_orders(
            s,
            {"order_id": "LATE", "node": "dispatch", "entered_at": NOW - timedelta(hours=50), "sales_rep": "oscar"},
            {"order_id": "NORep", "node": "dispatch", "entered_at": NOW - timedelta(hours=49)},
            {"order_id": "FRESH", "node": "dispatch", "entered_at": NOW - timedelta(hours=47)},
            {"order_id": "ELSEWHERE", "node": "review", "entered_at": NOW - timedelta(hours=90)},
            {"order_id": "HELD", "node": "dispatch", "status": "on_hold", "entered_at": NOW - timedelta(hours=90)},
        )
    return store


def test_dwell_flags_orders_in_the_node_too_long_once(dwelling):
    store = dwelling
    cfg = make_config(dwell())
    result = run(store, cfg)
    assert [i["subject"] for i in result["items"]] == ["order:LATE", "order:NORep"]
    assert result["items"][0]["detail"] == "shipping_exception: in dispatch for 2d2h > 2d"
    flags = fetch(store, "SELECT order_id, flag, priority, rule, cleared_at FROM order_flag ORDER BY order_id")
    assert [(f.order_id, f.flag, f.priority, f.rule, f.cleared_at) for f in flags] == [
        ("LATE", "shipping_exception", "high", "stuck", None),
        ("NORep", "shipping_exception", "high", "stuck", None),
    ]
    events = fetch(store, "SELECT order_id, node, detail FROM event WHERE event = 'flagged' ORDER BY order_id")
    assert [(e.order_id, e.node) for e in events] == [("LATE", "dispatch"), ("NORep", "dispatch")]
    assert events[0].detail.startswith("shipping_exception: in dispatch for 2d2h > 2d")
    notes = fetch(
        store, "SELECT recipient, channel, priority, order_id FROM notification ORDER BY order_id, recipient, channel"
    )
    assert [(n.order_id, n.recipient, n.channel) for n in notes] == [
        ("LATE", "heidi", "email"),
        ("LATE", "heidi", "webhook"),
        ("LATE", "oscar", "email"),
        ("NORep", "heidi", "email"),
        ("NORep", "heidi", "webhook"),  # no sales rep on this order
    ]
    assert {n.priority for n in notes} == {"high"} and result["notifications"] == 5
    again = run(store, cfg, now=NOW + timedelta(hours=1))
    assert again["hits"] == 0 and again["notifications"] == 0  # FRESH is at 48h exactly: not longer
    assert count(store, "SELECT count(*) FROM order_flag") == 2
    assert count(store, "SELECT count(*) FROM notification") == 5
    third = run(store, cfg, now=NOW + timedelta(hours=1, seconds=1))
    assert [i["subject"] for i in third["items"]] == ["order:FRESH"]


def test_unflag_then_a_later_dwell_flags_again(dwelling):
    from ffctl.core.orders import unflag

    store = dwelling
    cfg = make_config(dwell())
    run(store, cfg)
    with store.session(write=True) as s:
        unflag(s, "LATE", "shipping_exception", at=NOW + timedelta(minutes=10), actor="heidi")
    again = run(store, cfg, now=NOW + timedelta(minutes=20))
    assert [i["subject"] for i in again["items"]] == ["order:LATE"]
    rows = fetch(store, "SELECT cleared_at FROM order_flag WHERE order_id = 'LATE' ORDER BY id")
    assert len(rows) == 2 and rows[0].cleared_at is not None and rows[1].cleared_at is None
    assert count(store, "SELECT count(*) FROM notification WHERE order_id = 'LATE'") == 6  # a new episode: told again


def test_dwell_on_the_calendar_clock_counts_business_hours(store):
    # office hours Mon-Fri 09:00-17:00 UTC; NOW is Tuesday 12:00
    with store.session(write=True) as s:
        seed_orders(
            s,
            {
                "order_id": "MON9",
                "node": "review",
                "entered_at": datetime(2026, 3, 9, 9, 0, tzinfo=timezone.utc),
            },  # 11h business
            {
                "order_id": "MON14",
                "node": "review",
                "entered_at": datetime(2026, 3, 9, 14, 0, tzinfo=timezone.utc),
            },  # 6h
            {
                "order_id": "FRI",
                "node": "review",
                "entered_at": datetime(2026, 3, 6, 16, 0, tzinfo=timezone.utc),
            },  # 1+8+3 = 12h
        )
    cfg = make_config(dwell(node="review", longer="10h", clock="calendar"))
    result = run(store, cfg)
    assert [i["subject"] for i in result["items"]] == ["order:FRI", "order:MON9"]
    assert result["items"][1]["detail"] == "shipping_exception: in review for 11h of office hours > 10h"
    # the same 10h on the wall clock flags MON14 too (22h of wall time)
    wall = run(store, make_config(dwell(node="review", longer="10h", clock="wall")), now=NOW + timedelta(seconds=1))
    assert [i["subject"] for i in wall["items"]] == ["order:MON14"]


# --- supplier ----------------------------------------------------------------------------------


def test_supplier_frozen_by_pass_rate_in_a_row_once(store):
    with store.session(write=True) as s:
        seed_suppliers(s, ("WEAK", True), ("MIXED", True), ("FEW", True), ("NOTEXEMPT", False))
        seed_batches(s, "WEAK", [GOOD, GOOD, BAD, (80, 100, 0.0), (94, 100, 0.0)])
        seed_batches(s, "MIXED", [BAD, BAD, BAD, GOOD, BAD, BAD])  # the streak was broken
        seed_batches(s, "FEW", [BAD, BAD])  # too few batches
        seed_batches(s, "NOTEXEMPT", [BAD, BAD, BAD])  # nothing to freeze
    cfg = make_config(supplier_rule())
    result = run(store, cfg)
    assert [i["subject"] for i in result["items"]] == ["supplier:WEAK"]
    row = fetch(
        store, "SELECT inspection_exempt, exempt_frozen_at, exempt_frozen_reason FROM supplier WHERE supplier = 'WEAK'"
    )[0]
    assert not row.inspection_exempt and row.exempt_frozen_at is not None
    assert row.exempt_frozen_reason == (
        "QC pass rate below 95% in the last 3 batches in a row: WEAK-B3 90%, WEAK-B4 80%, WEAK-B5 94% (rule supplier_quality)"
    )
    assert fetch(store, "SELECT subject FROM event WHERE event = 'exemption_frozen'")[0].subject == "supplier:WEAK"
    assert count(store, "SELECT count(*) FROM supplier WHERE inspection_exempt") == 2  # MIXED, FEW
    assert result["notifications"] == 1
    again = run(store, cfg, now=NOW + timedelta(hours=1))
    assert again["hits"] == 0 and count(store, "SELECT count(*) FROM notification") == 1
    assert count(store, "SELECT count(*) FROM event WHERE event = 'exemption_frozen'") == 1


def test_supplier_frozen_by_average_delay_over_a_full_window(store):
    late, ontime = (100, 100, 8.0), (100, 100, 1.0)
    with store.session(write=True) as s:
        seed_suppliers(s, ("SLOW", True), ("OK", True), ("NEW", True), ("OLDSLOW", True))
        seed_batches(s, "SLOW", [late, late, ontime, late])  # avg (8+8+1+8)/4 = 6.25 > 5
        seed_batches(s, "OK", [late, ontime, ontime, ontime])  # avg 2.75
        seed_batches(s, "NEW", [late, late, late])  # fewer than window_batches
        seed_batches(s, "OLDSLOW", [late, late, late, late, ontime, ontime, ontime, ontime])  # last 4: 1.0
    result = run(store, make_config(supplier_rule(window=4)))
    assert [i["subject"] for i in result["items"]] == ["supplier:SLOW"]
    reason = fetch(store, "SELECT exempt_frozen_reason FROM supplier WHERE supplier = 'SLOW'")[0].exempt_frozen_reason
    assert reason.startswith("average delay 6.2 days > 5 days over the last 4 batches: SLOW-B1 +8.0d")
    assert count(store, "SELECT count(*) FROM supplier WHERE inspection_exempt") == 3


def test_rules_list_shows_each_rule_with_its_record(stocked):
    from ffctl.core.rules import list_rules

    store = stocked
    cfg = make_config(low_stock(), dwell(), supplier_rule())
    with store.session() as s:
        before = list_rules(s, cfg)
    assert [(r["rule"], r["kind"], r["last_run_at"], r["total_hits"]) for r in before] == [
        ("low_stock", "stock_below", None, 0),
        ("stuck", "dwell", None, 0),
        ("supplier_quality", "supplier", None, 0),
    ]
    run(store, cfg)
    with store.session() as s:
        after = {r["rule"]: r for r in list_rules(s, cfg)}
    assert after["low_stock"]["last_run_at"] == NOW and after["low_stock"]["last_hits"] == 2
    assert "safety stock" in after["low_stock"]["description"]
    assert "longer than 2d (wall clock)" in after["stuck"]["description"]
    assert "95%" in after["supplier_quality"]["description"]


# --- requisitions and suppliers (core) ---------------------------------------------------------


def test_requisition_decisions_only_on_drafts(stocked):
    from ffctl.core.errors import Conflict, NotFound
    from ffctl.core.requisitions import decide_requisition, list_requisitions

    store = stocked
    run(store, make_config(low_stock()))
    with store.session(write=True) as s:
        row = decide_requisition(s, 1, approve=True, at=NOW, actor="ivan")
    assert row["status"] == "approved" and row["decided_by"] == "ivan" and row["decided_at"] == NOW
    with store.session(write=True) as s:
        with pytest.raises(Conflict, match="already approved by ivan"):
            decide_requisition(s, 1, approve=False, at=NOW, actor="ivan")
    with store.session(write=True) as s:
        with pytest.raises(NotFound):
            decide_requisition(s, 99, approve=True, at=NOW, actor="ivan")
    with store.session(write=True) as s:
        decide_requisition(s, 2, approve=False, at=NOW, actor="ivan", reason="discontinued")
    with store.session() as s:
        assert [r["status"] for r in list_requisitions(s)] == ["approved", "rejected"]
        assert [r["id"] for r in list_requisitions(s, status="rejected")] == [2]
    details = fetch(
        store,
        "SELECT event, detail FROM event WHERE event LIKE 'requisition_%' AND event != 'requisition_drafted' ORDER BY id",
    )
    assert [e.event for e in details] == ["requisition_approved", "requisition_rejected"]
    assert details[1].detail.endswith("reason: discontinued")


def test_supplier_numbers(store):
    from ffctl.core.suppliers import list_suppliers, show_supplier

    with store.session(write=True) as s:
        seed_suppliers(s, ("S1", True), ("S2", False))
        seed_batches(s, "S1", [(50, 100, 10.0), (90, 100, 2.0), (95, 100, 4.0), (100, 100, 0.0)])
    cfg = make_config(supplier_rule(window=3))
    with store.session() as s:
        rows = list_suppliers(s, cfg)
        shown = show_supplier(s, cfg, "S1")
    assert [(r["supplier"], r["inspection_exempt"], r["qc_pass_rate_last3"], r["avg_delay_days"]) for r in rows] == [
        ("S1", True, 0.95, 2.0),
        ("S2", False, None, None),
    ]
    assert shown["window_batches"] == 3 and [b["batch_id"] for b in shown["batches"]] == ["S1-B4", "S1-B3", "S1-B2"]
    assert shown["batches"][1]["pass_rate"] == 0.95 and shown["batches"][1]["delay_days"] == 4.0


def test_run_rules_leaves_the_callers_session_settings_alone(stocked):
    from ffctl.core.rules import run_rules

    store = stocked
    if store.is_sqlite:
        pytest.skip("JIT is a PostgreSQL setting")
    with store.session(write=True) as s:
        s.execute(sa.text("SELECT set_config('jit', 'on', true)"))
        run_rules(s, make_config(low_stock(), dwell(), supplier_rule()), now=NOW, actor="t")
        assert s.execute(sa.text("SELECT current_setting('jit')")).scalar() == "on"
