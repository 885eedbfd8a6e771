"""Partial shipments and backorders (SPEC 9.2), through the CLI on both backends: ship in parts,
stock moves per shipment, the ship node completes on the last unit, cancel a remainder, imports
that group rows into shipments (pick errors, re-import), refusals that write nothing, two real
processes shipping one order, and schema 0006 up and down with shipped orders in it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from helpers import SHIP_CONFIG, SHIP_NOW, cli_json, cli_ok, query, shop_at_dispatch, spawn_ffctl, stock_row

ORDERS = (
    "order_id,line_no,customer,sku,qty,created_at,promised_ship_date\n"
    "SO-1,1,C-EAST,SKU-0001,10,2026-11-23 08:00,2026-11-25\n"
    "SO-1,2,C-EAST,SKU-0002,4,2026-11-23 08:00,2026-11-25\n"
    "SO-2,1,C-WEST,SKU-0001,3,2026-11-23 08:00,2026-11-25\n"
)


def at(hhmm: str, day: str = "2026-11-23") -> str:
    return f"{day}T{hhmm}:00+08:00"


@pytest.fixture
def ws(workspace_with_config):
    ws = workspace_with_config(SHIP_CONFIG)
    shop_at_dispatch(ws, ORDERS)
    return ws


def show(ws, order_id, now=None):
    return cli_json(ws, "order", "show", order_id, now=now or at("23:00", "2026-11-24"))


def lines_of(order):
    return [(ln["line_no"], ln["qty"], ln["allocated"], ln["shipped"], ln["backordered"]) for ln in order["lines"]]


def test_ship_in_two_parts_moves_stock_and_completes_dispatch_on_the_last_unit(ws):
    assert stock_row(ws, "SKU-0001") == (100, 13) and stock_row(ws, "SKU-0002") == (10, 4)
    r = cli_ok(
        ws,
        "ship",
        "SO-1",
        "--line",
        "1:6",
        "--line",
        "2:4",
        "--carrier",
        "SF",
        "--tracking",
        "SF1",
        now=at("10:00"),
        user="frank",
    )
    assert "SO-1: partially shipped (SF, tracking SF1): 10 units in shipment SO-1/1, 4 units still to ship." in r.stderr
    assert stock_row(ws, "SKU-0001") == (94, 7) and stock_row(ws, "SKU-0002") == (6, 0)
    o = show(ws, "SO-1", now=at("10:05"))
    assert (o["status"], o["node"]) == ("partially_shipped", "dispatch")
    assert lines_of(o) == [(1, 10, 4, 6, 0), (2, 4, 0, 4, 0)]
    assert o["shipments"] == [
        {
            "shipment_id": "SO-1/1",
            "at": "2026-11-23T10:00:00+08:00",
            "carrier": "SF",
            "tracking": "SF1",
            "lines": [{"line_no": 1, "sku": "SKU-0001", "qty": 6}, {"line_no": 2, "sku": "SKU-0002", "qty": 4}],
        }
    ]
    assert o["shipped_at"] is None and o["current_task"]["node"] == "dispatch"
    listed = cli_json(ws, "order", "list", "--status", "partially_shipped", now=at("10:05"))
    assert [x["order_id"] for x in listed] == ["SO-1"] and listed[0]["status"] == "partially_shipped"
    assert [x["order_id"] for x in cli_json(ws, "order", "list", "--status", "open", now=at("10:05"))] == ["SO-2"]
    table = cli_ok(ws, "order", "show", "SO-1", "-f", "table", now=at("10:05")).stdout
    assert "shipments" in table and "SO-1/1" in table and "L1 SKU-0001 × 6" in table

    r = cli_ok(ws, "ship", "SO-1", "--carrier", "EMS", now=at("15:00", "2026-11-24"), user="frank")
    assert "SO-1: shipped (EMS): 4 units in shipment SO-1/2." in r.stderr
    assert stock_row(ws, "SKU-0001") == (90, 3)
    o = show(ws, "SO-1")
    assert (o["status"], o["node"], o["shipped_at"]) == ("shipped", None, "2026-11-24T15:00:00+08:00")
    assert lines_of(o) == [(1, 10, 0, 10, 0), (2, 4, 0, 4, 0)]
    assert [s["shipment_id"] for s in o["shipments"]] == ["SO-1/1", "SO-1/2"]
    events = [e["event"] for e in o["timeline"]]
    assert events.count("shipped") == 2 and events[-2:] == ["completed", "shipped"]
    moves = query(ws, "SELECT sku, delta, ref FROM stock_move WHERE kind = 'ship' ORDER BY id")
    assert moves == [("SKU-0001", -6, "SO-1/1"), ("SKU-0002", -4, "SO-1/1"), ("SKU-0001", -4, "SO-1/2")]
    # the same command again changes nothing; another shipment of a shipped order is refused
    r = cli_ok(ws, "ship", "SO-1", "--carrier", "EMS", now=at("15:00", "2026-11-24"), user="frank")
    assert "already recorded" in r.stderr
    r = ws.run("ship", "SO-1", now=at("16:00", "2026-11-24"), user="frank")
    assert r.exit_code == 1 and "order SO-1 was already shipped (at 2026-11-24 15:00+08:00, EMS)" in r.stderr


@pytest.mark.parametrize(
    "args, code, text",
    [
        (
            ["--line", "1:11"],
            1,
            "order SO-1: cannot ship more than is allocated: line 1 (SKU-0001) has 10 allocated "
            "and unshipped, not 11; nothing was shipped",
        ),
        (["--line", "1:6", "--line", "1:5"], 1, "has 10 allocated and unshipped, not 11"),
        (["--line", "3:1"], 1, "order SO-1 has no line 3 (its lines: 1, 2)"),
        (["--line", "1:0"], 2, "--line '1:0': the quantity must be a positive whole number"),
        (["--line", "1:-2"], 2, "--line '1:-2': the quantity must be a positive whole number"),
        (["--line", "1"], 2, "say how many units, as LINE_NO:QTY"),
        (["--line", "x:1"], 2, "use LINE_NO:QTY with whole numbers"),
    ],
)
def test_bad_lines_are_refused_and_nothing_is_written(ws, args, code, text):
    r = ws.run("ship", "SO-1", *args, now=at("10:00"), user="frank")
    assert r.exit_code == code and text in r.stderr, r.stderr
    assert "Traceback" not in r.output
    assert query(ws, "SELECT count(*) FROM shipment") == [(0,)]
    assert stock_row(ws, "SKU-0001") == (100, 13)
    assert show(ws, "SO-1")["status"] == "open"


def test_ship_on_hold_and_another_orders_line_are_refused(ws):
    cli_ok(ws, "order", "hold", "SO-2", "--reason", "customer call", now=at("09:30"))
    r = ws.run("ship", "SO-2", "--line", "1:1", now=at("10:00"), user="frank")
    assert r.exit_code == 1 and "order SO-2 is on hold; release it before shipping" in r.stderr
    r = ws.run("ship", "SO-2", "--line", "2:1", now=at("10:00"), user="frank")  # line 2 is SO-1's
    assert r.exit_code == 1
    assert query(ws, "SELECT count(*) FROM shipment") == [(0,)] and stock_row(ws, "SKU-0001") == (100, 13)


def test_cancel_a_remainder_releases_it_and_the_last_unit_completes_the_order(ws):
    cli_ok(ws, "ship", "SO-1", "--line", "1:10", now=at("10:00"), user="frank")
    r = ws.run("order", "cancel", "SO-1", "--reason", "customer changed mind", now=at("11:00"))
    assert r.exit_code == 1 and "order SO-1 has shipped 10 units already; it cannot be cancelled as a whole" in r.stderr
    assert "ffctl order cancel SO-1 --line LINE_NO" in r.stderr
    r = ws.run("order", "cancel", "SO-1", "--line", "2:5", "--reason", "x", now=at("11:00"))
    assert r.exit_code == 1 and "line 2 has 4 left to ship, not 5" in r.stderr
    r = cli_ok(ws, "order", "cancel", "SO-1", "--line", "2:1", "--reason", "one too many", now=at("11:00"))
    assert "SO-1: cancelled line 2: 1; released 1 reserved unit; 3 units still to ship." in r.stderr
    assert stock_row(ws, "SKU-0002") == (10, 3)
    r = cli_ok(ws, "order", "cancel", "SO-1", "--line", "2", "--reason", "customer call", now=at("12:00"))
    assert "every unit is now shipped or cancelled: the order is shipped" in r.stderr
    assert stock_row(ws, "SKU-0002") == (10, 0)
    o = show(ws, "SO-1")
    assert (o["status"], o["node"], o["shipped_at"]) == ("shipped", None, "2026-11-23T10:00:00+08:00")
    assert [(ln["line_no"], ln["shipped"], ln["cancelled"]) for ln in o["lines"]] == [(1, 10, 0), (2, 0, 4)]
    assert "line_cancelled" in [e["event"] for e in o["timeline"]]
    # an order nothing shipped for is cancelled as a whole, not line by line down to nothing
    r = ws.run("order", "cancel", "SO-2", "--line", "1", "--reason", "x", now=at("12:00"))
    assert r.exit_code == 1 and "cancel the order instead" in r.stderr


def test_a_backorder_shows_its_atp_date_and_allocate_fills_it(workspace_with_config):
    ws = workspace_with_config(SHIP_CONFIG)
    shop_at_dispatch(ws, ORDERS, stock="sku,warehouse,on_hand\nSKU-0001,WH-SH,8\nSKU-0002,WH-SH,10\n")
    cli_ok(
        ws,
        "import",
        "receipts",
        ws.write("r.csv", "receipt_id,sku,warehouse,qty,expected_at\nPO-1,SKU-0001,WH-SH,20,2026-11-27\n"),
        now=SHIP_NOW,
    )
    o = show(ws, "SO-1", now=at("09:30"))
    assert o["node"] == "allocation"
    assert [(ln["line_no"], ln["allocated"], ln["backordered"], ln["atp_date"]) for ln in o["lines"]] == [
        (1, 8, 2, "2026-11-27"),
        (2, 4, 0, None),
    ]
    atp = cli_json(ws, "stock", "atp", "SKU-0001", "--qty", "15", now=at("09:30"))
    assert atp["schedule"][0]["available"] == -5 and atp["earliest_date"] == "2026-11-27"  # backorders are demand
    cli_ok(ws, "stock", "receive", "PO-1", now=at("09:00", "2026-11-27"))
    cli_ok(ws, "allocate", "--all", now=at("09:10", "2026-11-27"))
    o = show(ws, "SO-1", now=at("09:15", "2026-11-27"))
    assert o["node"] == "dispatch" and [ln["backordered"] for ln in o["lines"]] == [0, 0]


def test_import_shipments_in_parts_with_pick_errors_and_a_rerun_adds_nothing(ws):
    text = (
        "order_id,shipment_id,shipped_at,carrier,tracking,line_no,sku,qty\n"
        "SO-1,P-1,2026-11-23 10:00,SF,T1,1,SKU-0001,4\n"
        "SO-1,P-1,2026-11-23 10:00,SF,T1,2,SKU-0001,1\n"  # a wrong SKU for line 2
        "SO-2,,2026-11-23 11:00,EMS,E1,1,SKU-0001,5\n"  # two more units than the line had
        "SO-1,P-2,2026-11-24 09:00,SF,T2,1,SKU-0001,6\n"
        "SO-1,P-2,2026-11-24 09:00,SF,T2,2,,3\n"
    )
    path = ws.write("ship.csv", text)
    r = cli_ok(ws, "import", "shipments", path, now=at("12:00", "2026-11-24"))
    assert "shipments: 3 new" in r.stderr
    o = show(ws, "SO-1")
    assert o["status"] == "shipped" and [s["shipment_id"] for s in o["shipments"]] == ["P-1", "P-2"]
    assert [(ln["shipped"], ln["allocated"]) for ln in o["lines"]] == [(10, 0), (4, 0)]
    assert show(ws, "SO-2")["status"] == "shipped"
    # what left moved stock: SKU-0001 10 + 1 wrong + 5 = 16, SKU-0002 3 (one reserved unit released)
    assert stock_row(ws, "SKU-0001") == (84, 0) and stock_row(ws, "SKU-0002") == (7, 0)
    # the pick errors are pick lines; a right pick is its shipment line's flag
    assert query(ws, "SELECT shipment_id, line_no, sku, qty, error FROM pick_line ORDER BY shipment_id, line_no") == [
        ("P-1", 2, "SKU-0001", 1, "wrong_sku"),
        ("SO-2/1", 1, "SKU-0001", 5, "too_many"),
    ]
    assert query(ws, "SELECT shipment_id, line_no, picked_right FROM shipment_line ORDER BY shipment_id, line_no") == [
        ("P-1", 1, 1),
        ("P-1", 2, 0),
        ("P-2", 1, 1),
        ("P-2", 2, 1),
        ("SO-2/1", 1, 0),
    ]
    r = cli_ok(ws, "import", "shipments", path, now=at("12:30", "2026-11-24"))
    assert "shipments: 0 new, 0 updated, 3 unchanged" in r.stderr
    assert query(ws, "SELECT count(*) FROM shipment_line") == [(5,)] and stock_row(ws, "SKU-0001") == (84, 0)
    kpis = {k["kpi"]: k for k in cli_json(ws, "report", "kpi", now=at("12:30", "2026-11-24"))}
    assert (kpis["pick_accuracy"]["count"], kpis["pick_accuracy"]["actual"]) == (5, 0.6)


def test_two_processes_shipping_one_order_never_ship_more_than_allocated(ws):
    procs = [spawn_ffctl(ws, "ship", "SO-1", "--line", "1:7", "--tracking", f"T{i}", now=at("10:00")) for i in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _err in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert "has 3 allocated and unshipped, not 7; nothing was shipped" in refused, refused
    assert stock_row(ws, "SKU-0001") == (93, 6)
    assert query(ws, "SELECT shipped, allocated FROM order_line WHERE order_id = 'SO-1' AND line_no = 1") == [(7, 10)]
    assert query(ws, "SELECT count(*) FROM shipment") == [(1,)]


def test_an_import_batch_rejects_a_refused_shipment_alone_and_abort_mode_writes_nothing(ws):
    """One batch: SO-2 is on hold (refused), SO-1 ships in two parts, the second finishing it; a
    third SO-1 row after it is refused as already shipped. Abort mode writes nothing; skip mode
    writes the rest, batch-set-based as `ffctl ship` would one by one."""
    cli_ok(ws, "order", "hold", "SO-2", "--reason", "customer call", now=at("09:30"))
    text = (
        "order_id,shipment_id,shipped_at,carrier,tracking,line_no,sku,qty\n"
        "SO-1,A,2026-11-23 10:00,SF,T1,1,SKU-0001,6\n"
        "SO-2,B,2026-11-23 10:00,SF,T2,1,SKU-0001,3\n"
        "SO-1,C,2026-11-23 11:00,SF,T3,1,SKU-0001,4\n"
        "SO-1,C,2026-11-23 11:00,SF,T3,2,SKU-0002,4\n"
        "SO-1,D,2026-11-23 12:00,SF,T4,1,SKU-0001,1\n"
    )
    path = ws.write("ship.csv", text)
    r = ws.run("import", "shipments", path, now=at("13:00"))
    assert r.exit_code == 1 and "nothing imported" in r.stderr
    assert "order SO-2 is on hold; release it before shipping" in r.stderr
    assert "order SO-1 was already shipped (at 2026-11-23 11:00+08:00, SF)" in r.stderr
    assert query(ws, "SELECT count(*) FROM shipment") == [(0,)] and stock_row(ws, "SKU-0001") == (100, 13)
    r = ws.run("import", "shipments", path, "--on-error", "skip", now=at("13:00"))
    assert r.exit_code == 1 and "shipments: 2 new" in r.stderr
    o = show(ws, "SO-1")
    assert (o["status"], o["node"], o["shipped_at"]) == ("shipped", None, "2026-11-23T11:00:00+08:00")
    assert [s["shipment_id"] for s in o["shipments"]] == ["A", "C"]
    assert [e["event"] for e in o["timeline"]][-3:] == ["shipped", "completed", "shipped"]
    assert stock_row(ws, "SKU-0001") == (90, 3) and stock_row(ws, "SKU-0002") == (6, 0)
    assert show(ws, "SO-2")["status"] == "on_hold"
    assert query(ws, "SELECT completed_at FROM task WHERE order_id = 'SO-1' AND node = 'dispatch'")[0][0] is not None


def test_an_import_and_a_ship_of_one_order_at_once_never_ship_more_than_the_line(ws):
    """A real `import shipments` process and a real `ffctl ship` process on SO-1 at once: whichever
    goes second sees what the first took (the order rows are locked first, then stock)."""
    path = ws.write(
        "ship.csv",
        "order_id,shipped_at,carrier,tracking,line_no,sku,qty\n"
        "SO-1,2026-11-23 10:00,SF,T1,1,SKU-0001,7\n"
        "SO-2,2026-11-23 10:00,SF,T2,1,SKU-0001,3\n",
    )
    procs = [
        spawn_ffctl(ws, "import", "shipments", str(path), now=at("10:00")),
        spawn_ffctl(ws, "ship", "SO-1", "--line", "1:7", "--tracking", "P1", now=at("10:00")),
    ]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    assert all("Traceback" not in err for _code, err in results), results
    shipped, allocated = query(ws, "SELECT shipped, allocated FROM order_line WHERE order_id = 'SO-1' AND line_no = 1")[
        0
    ]
    assert shipped <= 10 and shipped <= allocated <= 10
    on_hand, held = stock_row(ws, "SKU-0001")
    assert held == query(ws, "SELECT coalesce(sum(qty), 0) FROM allocation WHERE sku = 'SKU-0001'")[0][0]
    assert 0 <= held <= on_hand
    if results[1][0] == 0:  # ship went first (7 of 10) or second (the import left 3 reserved: refused)
        assert shipped == 10 and results[0][0] == 0  # the import's 7 count 3 (a too_many pick) after it
    else:
        assert "has 3 allocated and unshipped, not 7; nothing was shipped" in results[1][1], results
        assert shipped == 7


def test_schema_0014_round_trip_keeps_pick_accuracy(ws):
    """Down to 0013 every pick an import reported is a pick line again, right or not; back up to
    0014 the right ones are flags on their shipment lines; pick accuracy (by order and by the
    lines' product, rebuilt from scratch) and the misses' wrong items read the same."""
    from alembic import command

    path = ws.write(
        "ship.csv",
        "order_id,shipment_id,shipped_at,carrier,tracking,line_no,sku,qty\n"
        "SO-1,P-1,2026-11-23 10:00,SF,T1,1,SKU-0001,4\n"
        "SO-1,P-1,2026-11-23 10:00,SF,T1,2,SKU-0001,1\n"  # a wrong SKU for line 2
        "SO-2,,2026-11-23 11:00,EMS,E1,1,SKU-0001,5\n"  # two more units than the line had
        "SO-1,P-2,2026-11-24 09:00,SF,T2,1,SKU-0001,2\n",
    )
    cli_ok(ws, "import", "shipments", path, now=at("12:00", "2026-11-24"))
    cli_ok(ws, "ship", "SO-1", "--line", "1:1", now=at("12:10", "2026-11-24"), user="frank")  # no picks reported
    now = at("12:30", "2026-11-24")

    def seen():
        kpis = {k["kpi"]: k for k in cli_json(ws, "report", "kpi", now=now)}
        by_product = [
            (k["group"], k["count"], k["actual"])
            for k in cli_json(ws, "report", "kpi", "--by", "product", now=now)
            if k["kpi"] == "pick_accuracy"
        ]
        misses = cli_json(ws, "report", "misses", "--by", "cause", now=now)
        return (kpis["pick_accuracy"]["count"], kpis["pick_accuracy"]["actual"]), by_product, misses

    before = seen()
    assert before[0] == (4, 0.5) and before[1] == [("SKU-0001", 3, 0.666667), ("SKU-0002", 1, 0.0)]
    picks = "SELECT order_id, shipment_id, line_no, sku, qty, error FROM pick_line ORDER BY shipment_id, line_no"
    store = ws.store()
    try:
        command.downgrade(store._alembic_config(), "0015")
        assert query(ws, picks) == [
            ("SO-1", "P-1", 1, "SKU-0001", 4, None),
            ("SO-1", "P-1", 2, "SKU-0001", 1, "wrong_sku"),
            ("SO-1", "P-2", 1, "SKU-0001", 2, None),
            ("SO-2", "SO-2/1", 1, "SKU-0001", 5, "too_many"),
        ]
        assert "picked_right" not in {c["name"] for c in sa.inspect(store.engine).get_columns("shipment_line")}
        store.upgrade()
        assert store.current_revision() == store.head_revision()
        with store.session(write=True) as s:  # the next report rebuilds every fact from the store
            s.execute(sa.text("UPDATE fact_state SET fingerprint = 'changed'"))
    finally:
        store.dispose()
    assert query(ws, picks) == [
        ("SO-1", "P-1", 2, "SKU-0001", 1, "wrong_sku"),
        ("SO-2", "SO-2/1", 1, "SKU-0001", 5, "too_many"),
    ]
    assert query(ws, "SELECT shipment_id, line_no, picked_right FROM shipment_line ORDER BY shipment_id, line_no") == [
        ("P-1", 1, 1),
        ("P-1", 2, 0),
        ("P-2", 1, 1),
        ("SO-1/3", 1, 0),
        ("SO-2/1", 1, 0),
    ]
    assert seen() == before


def test_schema_0006_round_trip_keeps_shipped_orders(ws):
    """A store with orders shipped whole and in part goes down to 0005 (one shipment per shipped
    order, the partial order open with what it still holds) and back up with nothing lost."""
    from alembic import command

    cli_ok(ws, "ship", "SO-2", "--carrier", "SF", "--tracking", "T9", now=at("10:00"), user="frank")
    cli_ok(ws, "ship", "SO-1", "--line", "1:4", now=at("10:30"), user="frank")
    store = ws.store()
    try:
        command.downgrade(store._alembic_config(), "0005")
        assert store.current_revision() == "0005"
        with store.session() as s:
            assert s.execute(sa.text("SELECT order_id, carrier, tracking FROM shipment")).all() == [
                ("SO-2", "SF", "T9")
            ]
            assert s.execute(
                sa.text("SELECT line_no, allocated FROM order_line WHERE order_id = 'SO-1' ORDER BY line_no")
            ).all() == [(1, 6), (2, 4)]
        store.upgrade()
        assert store.current_revision() == store.head_revision()
    finally:
        store.dispose()
    o = show(ws, "SO-2")
    assert o["status"] == "shipped" and o["shipments"] == [
        {
            "shipment_id": "SO-2/1",
            "at": "2026-11-23T10:00:00+08:00",
            "carrier": "SF",
            "tracking": "T9",
            "lines": [{"line_no": 1, "sku": "SKU-0001", "qty": 3}],
        }
    ]
    assert [(ln["shipped"], ln["allocated"]) for ln in o["lines"]] == [(3, 0)]
    # 0005 had no partial shipments: the order shipped in part is open with what it still holds
    o = show(ws, "SO-1")
    assert o["status"] == "open" and [(ln["allocated"], ln["shipped"]) for ln in o["lines"]] == [(6, 0), (4, 0)]
    assert stock_row(ws, "SKU-0001") == (93, 6)
    cli_ok(ws, "ship", "SO-1", now=at("11:00"), user="frank")
    assert show(ws, "SO-1")["status"] == "partially_shipped"
