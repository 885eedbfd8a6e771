"""Why an order was not perfect (SPEC 9.5), on both backends: orders that miss for each cause —
a wait for stock ended by a supplier's receipt, a node over its SLA, a hold, a pick error, a
delivery issue, a return — and a perfect one; report misses' Pareto, its cuts, --orders, order
show's why_not_perfect, and the return rate with its reasons in report kpi."""

from __future__ import annotations

import pytest
from helpers import SHIP_CONFIG, cli_json, cli_ok, import_csv, shop_at_dispatch

ORDERS = (
    "order_id,line_no,customer,sku,qty,created_at,promised_ship_date\n"
    "SO-OUT,1,C-EAST,SKU-0002,30,2026-11-23 08:00,2026-11-24\n"
    "SO-NODE,1,C-EAST,SKU-0001,5,2026-11-23 08:00,2026-11-24\n"
    "SO-HOLD,1,C-WEST,SKU-0001,5,2026-11-23 08:00,2026-11-24\n"
    "SO-PICK,1,C-WEST,SKU-0001,5,2026-11-23 08:00,2026-11-27\n"
    "SO-DLV,1,C-EAST,SKU-0001,5,2026-11-23 08:00,2026-11-27\n"
    "SO-RET,1,C-WEST,SKU-0001,5,2026-11-23 08:00,2026-11-27\n"
    "SO-OK,1,C-EAST,SKU-0001,5,2026-11-23 08:00,2026-11-27\n"
)


def at(day: int, hhmm: str = "10:00") -> str:
    return f"2026-11-{day:02d}T{hhmm}:00+08:00"


@pytest.fixture
def ws(workspace_with_config):
    ws = workspace_with_config(SHIP_CONFIG)
    shop_at_dispatch(ws, ORDERS)  # SKU-0002 has 10 on hand: SO-OUT waits at allocation for stock
    import_csv(
        ws,
        "receipts",
        "receipt_id,sku,warehouse,qty,expected_at,supplier\nPO-9,SKU-0002,WH-SH,50,2026-11-25,SUP-1\n",
        now=at(23),
    )
    cli_ok(ws, "stock", "receive", "PO-9", now=at(25, "08:00"))
    cli_ok(ws, "allocate", "--all", now=at(25, "08:05"))
    cli_ok(ws, "ship", "SO-OUT", now=at(25, "09:00"), user="frank")
    cli_ok(ws, "ship", "SO-NODE", now=at(26, "09:00"), user="frank")  # dispatch's 48h ran out on the 25th
    cli_ok(ws, "order", "hold", "SO-HOLD", "--reason", "customer asked to wait", now=at(23, "09:30"), user="frank")
    cli_ok(ws, "order", "release", "SO-HOLD", now=at(25, "09:00"), user="frank")
    cli_ok(ws, "ship", "SO-HOLD", now=at(25, "12:00"), user="frank")  # late, but the hold paused its clock
    import_csv(
        ws,
        "shipments",
        "order_id,shipped_at,line_no,sku,qty\nSO-PICK,2026-11-24 10:00,1,SKU-0002,5\n",
        now=at(24, "11:00"),
    )
    for order in ("SO-DLV", "SO-RET", "SO-OK"):
        cli_ok(ws, "ship", order, now=at(24), user="frank")
    for order in ("SO-OUT", "SO-NODE", "SO-HOLD", "SO-PICK", "SO-RET", "SO-OK"):
        cli_ok(ws, "deliver", order, now=at(27), user="frank")
    cli_ok(ws, "deliver", "SO-DLV", "--issue", "damaged", now=at(27), user="frank")
    cli_ok(ws, "return", "SO-RET", "--line", "1:2", "--reason", "wrong_size", now=at(28), user="frank")
    return ws


CAUSES = {
    "SO-OUT": "stockout:SKU-0002",
    "SO-NODE": "node:dispatch",
    "SO-HOLD": "hold:customer asked to wait",
    "SO-PICK": "pick_error",
    "SO-DLV": "delivery:damaged",
    "SO-RET": "returned:wrong_size",
}


def test_each_miss_gets_its_cause_and_the_pareto_adds_up(ws):
    listed = cli_json(ws, "report", "misses", "--orders", now=at(28, "12:00"))
    assert {r["order_id"]: r["cause"] for r in listed} == CAUSES
    by_id = {r["order_id"]: r for r in listed}
    assert by_id["SO-OUT"]["supplier"] == "SUP-1" and by_id["SO-OUT"]["node"] == "allocation"
    assert by_id["SO-OUT"]["components"] == ["late"]
    assert by_id["SO-NODE"]["role"] == "warehouse" and by_id["SO-NODE"]["components"] == ["late"]
    assert by_id["SO-PICK"]["components"] == ["wrong_item"] and by_id["SO-PICK"]["sku"] == "SKU-0002"
    assert by_id["SO-DLV"]["components"] == ["delivery_issue"]
    assert by_id["SO-RET"]["components"] == ["returned"] and by_id["SO-RET"]["region"] == "west"

    pareto = cli_json(ws, "report", "misses", now=at(28, "12:00"))
    assert [(r["group"], r["orders"]) for r in pareto] == sorted((c, 1) for c in CAUSES.values())
    assert pareto[-1]["cumulative_share"] == 1.0 and all(abs(r["share"] - 1 / 6) < 1e-6 for r in pareto)
    node_row = next(r for r in pareto if r["group"] == "node:dispatch")
    assert node_row["role"] == "warehouse"
    assert next(r for r in pareto if r["group"].startswith("stockout"))["supplier"] == "SUP-1"

    regions = cli_json(ws, "report", "misses", "--by", "region", now=at(28, "12:00"))
    assert {r["group"]: r["orders"] for r in regions} == {"east": 3, "west": 3}
    table = cli_ok(ws, "report", "misses", "-f", "table", now=at(28, "12:00")).stdout
    assert "stockout:SKU-0002" in table and "cumulative" in table
    only = cli_json(ws, "report", "misses", "--orders", "--group", "node", now=at(28, "12:00"))
    assert [r["order_id"] for r in only] == ["SO-NODE"]
    assert_fits_80_columns(ws)


def assert_fits_80_columns(ws):
    """Like the other reports: on an 80-column terminal nothing is cut or folded inside a cause or
    an order id, and what does not fit is left out and named."""
    from rich.cells import cell_len

    for args, words in (
        (("report", "misses"), ["hold:customer", "stockout:SKU-0002", "cumulative"]),
        (("report", "misses", "--orders"), ["SO-OUT", "SO-HOLD", "stockout:SKU-0002", "pick_error"]),
    ):
        r = ws.run(*args, "--format", "table", now=at(28, "12:00"), columns=80)
        assert r.exit_code == 0, r.output
        assert "…" not in r.stdout, r.stdout
        assert max(cell_len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
        assert all(w in r.stdout.split() for w in words), r.stdout


def test_order_show_says_why_not_perfect_and_refresh_equals_rebuild(ws):
    o = cli_json(ws, "order", "show", "SO-OUT", now=at(28, "12:00"))
    assert o["why_not_perfect"] == {
        "components": ["late"],
        "cause": "stockout:SKU-0002",
        "node": "allocation",
        "role": None,
        "sku": "SKU-0002",
        "supplier": "SUP-1",
    }
    assert cli_json(ws, "order", "show", "SO-OK", now=at(28, "12:00"))["why_not_perfect"] is None
    table = cli_ok(ws, "order", "show", "SO-NODE", "-f", "table", now=at(28, "12:00")).stdout
    assert "not perfect" in table and "node dispatch ran over its SLA the longest (owner warehouse)" in table

    # facts refreshed incrementally (a return after the first report) equal a rebuild
    cli_json(ws, "report", "misses", now=at(28, "12:00"))
    cli_ok(ws, "return", "SO-OK", "--line", "1:1", "--reason", "damaged", now=at(28, "13:00"), user="frank")
    incremental = cli_json(ws, "report", "misses", "--orders", now=at(28, "14:00"))
    kpi = cli_json(ws, "report", "kpi", "--by", "region", now=at(28, "14:00"))
    query_rebuild(ws)
    assert cli_json(ws, "report", "misses", "--orders", now=at(28, "14:00")) == incremental
    assert cli_json(ws, "report", "kpi", "--by", "region", now=at(28, "14:00")) == kpi
    assert {r["order_id"]: r["cause"] for r in incremental}["SO-OK"] == "returned:damaged"
    rate = {r["group"]: r for r in kpi if r["kpi"] == "return_rate"}
    assert rate["east"]["count"] == 30 + 5 + 5 + 5 and rate["east"]["actual"] == round(1 / 45, 6)
    assert rate["west"]["top_reasons"] == [{"reason": "wrong_size", "units": 2}]
    assert rate["east"]["top_reasons"] == [{"reason": "damaged", "units": 1}]
    perfect = {r["group"]: r for r in kpi if r["kpi"] == "perfect_order"}
    assert perfect["east"]["actual"] == 0.0 and perfect["west"]["actual"] == 0.0


def query_rebuild(ws):
    """Make the next report rebuild every fact from scratch."""
    store = ws.store()
    try:
        import sqlalchemy as sa

        with store.session(write=True) as s:
            s.execute(sa.text("UPDATE fact_state SET fingerprint = 'stale' WHERE id = 1"))
    finally:
        store.dispose()
