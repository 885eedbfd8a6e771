"""Returns (SPEC 9.5) through the CLI on both backends: return part of what shipped, refusals
beyond it that write nothing, restocking with a stock move, the `returned` timeline event, an
idempotent `import returns`, and schema 0009 down and up with returns in it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers import SHIP_CONFIG, cli_json, cli_ok, query, shop_at_dispatch, stock_row

from ffctl.migrations import HEAD

ORDERS = (
    "order_id,line_no,customer,sku,qty,created_at,promised_ship_date\n"
    "SO-1,1,C-EAST,SKU-0001,10,2026-11-23 08:00,2026-11-25\n"
    "SO-1,2,C-EAST,SKU-0002,4,2026-11-23 08:00,2026-11-25\n"
    "SO-2,1,C-WEST,SKU-0001,3,2026-11-23 08:00,2026-11-25\n"
)


def at(hhmm: str, day: str = "2026-11-24") -> str:
    return f"{day}T{hhmm}:00+08:00"


@pytest.fixture
def ws(workspace_with_config):
    ws = workspace_with_config(SHIP_CONFIG)
    shop_at_dispatch(ws, ORDERS)
    cli_ok(ws, "ship", "SO-1", "--line", "1:6", "--line", "2:4", now=at("10:00", "2026-11-23"), user="frank")
    return ws


def test_return_part_of_a_line_then_refuse_more_than_shipped(ws):
    r = cli_ok(ws, "return", "SO-1", "--line", "1:2", "--reason", "damaged", now=at("09:00"), user="frank")
    assert "SO-1: 2 units returned (damaged)." in r.stderr
    assert stock_row(ws, "SKU-0001") == (94, 7)  # not restocked: on hand unchanged
    r = ws.run(
        "return", "SO-1", "--line", "1:5", "--line", "2:1", "--reason", "wrong_size", now=at("10:00"), user="frank"
    )
    assert r.exit_code == 1
    assert (
        "order SO-1: cannot return more than was shipped: line 1 (SKU-0001) shipped 6 and 2 came back "
        "already: at most 4, not 5; nothing was recorded"
    ) in r.stderr
    assert query(ws, "SELECT line_no, qty, reason FROM return_line ORDER BY id") == [(1, 2, "damaged")]
    r = ws.run("return", "SO-2", "--line", "1:1", "--reason", "damaged", now=at("10:00"), user="frank")
    assert r.exit_code == 1 and "order SO-2 has not shipped anything: nothing can come back" in r.stderr
    r = ws.run("return", "SO-1", "--line", "3:1", "--reason", "damaged", now=at("10:00"), user="frank")
    assert r.exit_code == 1 and "order SO-1 has no line 3 (its lines: 1, 2)" in r.stderr
    r = ws.run("return", "SO-1", "--line", "1:1", "--reason", " ", now=at("10:00"), user="frank")
    assert r.exit_code == 2 and "--reason is required" in r.stderr
    o = cli_json(ws, "order", "show", "SO-1", now=at("11:00"))
    assert [e["event"] for e in o["timeline"]].count("returned") == 1
    assert o["returns"] == [
        {
            "line_no": 1,
            "sku": "SKU-0001",
            "qty": 2,
            "reason": "damaged",
            "returned_at": "2026-11-24T09:00:00+08:00",
            "warehouse": None,
        }
    ]


def test_restock_puts_units_back_on_hand_with_a_stock_move(ws):
    r = cli_ok(
        ws,
        "return",
        "SO-1",
        "--line",
        "2:3",
        "--reason",
        "wrong_size",
        "--restock",
        "WH-BJ",
        "--at",
        "2026-11-24 08:30",
        now=at("12:00"),
        user="frank",
    )
    assert "SO-1: 3 units returned (wrong_size), restocked in WH-BJ." in r.stderr
    assert stock_row(ws, "SKU-0002", "WH-BJ") == (3, 0)
    assert query(ws, "SELECT sku, warehouse, delta, kind, ref FROM stock_move WHERE kind = 'return'") == [
        ("SKU-0002", "WH-BJ", 3, "return", "SO-1")
    ]
    cli_ok(
        ws,
        "return",
        "SO-1",
        "--line",
        "2:1",
        "--reason",
        "damaged",
        "--restock",
        "WH-SH",
        now=at("12:30"),
        user="frank",
    )
    assert stock_row(ws, "SKU-0002") == (7, 0)
    r = ws.run("return", "SO-1", "--line", "2:1", "--reason", "damaged", now=at("13:00"), user="frank")
    assert r.exit_code == 1 and "at most 0, not 1" in r.stderr


def test_import_returns_is_idempotent_and_refuses_rows_beyond_what_shipped(ws):
    text = (
        "order_id,line_no,qty,reason,returned_at,warehouse\n"
        "SO-1,1,2,damaged,2026-11-24 09:00,WH-SH\n"
        "SO-1,2,1,wrong_size,2026-11-24 09:00,\n"
        "SO-1,2,9,damaged,2026-11-24 10:00,\n"
        "SO-9,1,1,damaged,2026-11-24 10:00,\n"
    )
    path = ws.write("returns.csv", text)
    r = ws.run("import", "returns", path, "--on-error", "skip", now=at("12:00"))
    assert r.exit_code == 1, r.stderr
    assert "at most 3, not 9" in r.stderr and "unknown order 'SO-9'" in r.stderr
    assert query(ws, "SELECT line_no, qty, reason, warehouse FROM return_line ORDER BY line_no") == [
        (1, 2, "damaged", "WH-SH"),
        (2, 1, "wrong_size", None),
    ]
    assert stock_row(ws, "SKU-0001") == (96, 7)
    again = ws.write("again.csv", "order_id,line_no,qty,reason,returned_at\nSO-1,1,2,damaged,2026-11-24 09:00\n")
    r = cli_ok(ws, "import", "returns", again, now=at("12:30"))
    assert "1 unchanged" in r.stderr + r.stdout, r.stderr
    assert query(ws, "SELECT count(*) FROM return_line") == [(2,)]
    assert query(ws, "SELECT count(*) FROM event WHERE event = 'returned'") == [(2,)]


def test_schema_0009_round_trip_keeps_returns(ws):
    from alembic import command

    cli_ok(ws, "return", "SO-1", "--line", "1:2", "--reason", "damaged", now=at("09:00"), user="frank")
    store = ws.store()
    try:
        command.downgrade(store._alembic_config(), "0008")
        assert store.current_revision() == "0008"
        with store.session() as s:
            names = set(sa.inspect(s.get_bind()).get_table_names())
            assert "return_line" not in names and "miss_fact" not in names
        store.upgrade()
        assert store.current_revision() == store.head_revision() == HEAD
    finally:
        store.dispose()
    assert query(ws, "SELECT count(*) FROM return_line") == [(0,)]
    cli_ok(ws, "return", "SO-1", "--line", "1:6", "--reason", "damaged", now=at("10:00"), user="frank")
    cli_ok(ws, "report", "kpi", now=at("11:00"))
