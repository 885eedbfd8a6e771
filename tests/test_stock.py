"""Stock: rows, available-to-promise, promise dates, counts, adjustments, receipts (both backends).

The store builders (products, customers, stock, receipts, orders entering their workflow) live in
tests/helpers.py, shared with the allocation and ship tests.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from helpers import STOCK_NOW as NOW
from helpers import STOCK_TZ as TZ
from helpers import add_orders, check_invariants, events, seed, stock_of

from ffctl.core.errors import Conflict, NotFound, UsageError

# --- stock rows --------------------------------------------------------------------------------


def test_stock_rows_combine_stock_receipts_and_safety(store):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(
            s,
            products=["A", "B"],
            stock=[("A", "WH1", 10), ("A", "WH2", 3)],
            receipts=[("R1", "A", "WH1", 5, NOW + timedelta(days=2)), ("R2", "B", "WH3", 7, NOW)],
        )
    with store.session() as s:
        rows = stock.stock_rows(s)
        assert rows == [
            {
                "sku": "A",
                "warehouse": "WH1",
                "on_hand": 10,
                "allocated": 0,
                "available": 10,
                "inbound": 5,
                "safety_stock": 2,
            },
            {
                "sku": "A",
                "warehouse": "WH2",
                "on_hand": 3,
                "allocated": 0,
                "available": 3,
                "inbound": 0,
                "safety_stock": 2,
            },
            {
                "sku": "B",
                "warehouse": "WH3",
                "on_hand": 0,
                "allocated": 0,
                "available": 0,
                "inbound": 7,
                "safety_stock": 2,
            },
        ]
        assert [r["warehouse"] for r in stock.stock_rows(s, "A", "WH2")] == ["WH2"]
        with pytest.raises(NotFound):
            stock.stock_rows(s, "NOPE")


# --- ATP ---------------------------------------------------------------------------------------


def test_atp_with_several_receipts(store, example_config):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(
            s,
            products=["A"],
            stock=[("A", "WH1", 4), ("A", "WH2", 1)],
            receipts=[
                ("R1", "A", "WH1", 10, NOW + timedelta(days=3)),
                ("R2", "A", "WH2", 5, NOW + timedelta(days=3, hours=1)),  # same local day
                ("R3", "A", "WH1", 20, datetime(2026, 11, 10, 17, 0, tzinfo=timezone.utc)),  # 11-11 01:00 local
                ("R0", "A", "WH1", 2, NOW - timedelta(days=5)),  # overdue: counts today
            ],
        )
    with store.session() as s:
        got = stock.atp(s, "A", 15, now=NOW, tz=TZ)
        assert got == {
            "sku": "A",
            "qty": 15,
            "earliest_date": date(2026, 11, 5),
            "schedule": [
                {"date": date(2026, 11, 2), "available": 7},
                {"date": date(2026, 11, 5), "available": 22},
                {"date": date(2026, 11, 11), "available": 42},
            ],
        }
        assert stock.atp(s, "A", 42, now=NOW, tz=TZ)["earliest_date"] == date(2026, 11, 11)
        assert stock.atp(s, "A", 43, now=NOW, tz=TZ)["earliest_date"] is None
        assert stock.atp(s, "A", now=NOW, tz=TZ)["qty"] == 1
        wh2 = stock.atp(s, "A", 5, now=NOW, tz=TZ, warehouse="WH2")
        assert wh2["schedule"] == [
            {"date": date(2026, 11, 2), "available": 1},
            {"date": date(2026, 11, 5), "available": 6},
        ]
        with pytest.raises(NotFound):
            stock.atp(s, "NOPE", now=NOW, tz=TZ)


def test_atp_subtracts_open_unallocated_demand(store, example_config):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(
            s,
            products=["A"],
            stock=[("A", "WH1", 10), ("A", "WH2", 4)],
            receipts=[("R1", "A", "WH1", 10, NOW + timedelta(days=2))],
        )
        add_orders(s, example_config, [("O1", 0, [("A", 6)]), ("O2", 0, [("A", 5)])], to_allocation=False)
    with store.session() as s:
        got = stock.atp(s, "A", 5, now=NOW, tz=TZ)
        assert [e["available"] for e in got["schedule"]] == [3, 13]
        assert got["earliest_date"] == date(2026, 11, 4)
        # leaving an order out (its own backorder), its demand does not count against it
        assert stock.atp(s, "A", 5, now=NOW, tz=TZ, exclude_orders=["O2"])["earliest_date"] == date(2026, 11, 2)
        # per warehouse: demand is charged to WH2 only beyond what WH1 has now (11 - 10 = 1)
        assert stock.atp(s, "A", 3, now=NOW, tz=TZ, warehouse="WH2")["schedule"][0]["available"] == 3


def test_promise_dates_batch_consumes_as_it_promises(store):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(
            s,
            products=["A", ("B", 3), "C"],
            stock=[("A", "WH1", 10), ("C", "WH1", 100)],
            receipts=[("R1", "A", "WH1", 10, NOW + timedelta(days=4))],
        )
    with store.session() as s:
        got = stock.promise_dates(
            s,
            [
                ("O1", [("A", 8)]),  # today
                ("O2", [("A", 3), ("C", 1)]),  # only 2 left today: the receipt day
                ("O3", [("A", 2), ("A", 3)]),  # two lines of one SKU add up: 5 of the 9 left then
                ("O4", [("B", 1)]),  # no supply: B's lead time 3 days
                ("O5", [("A", 5), ("C", 1)]),  # only 4 left: lead time (default 7 days)
                ("O6", [("A", 1)]),  # O5 is first in line for anything after: lead time too
            ],
            now=NOW,
            tz=TZ,
        )
    assert got == {
        "O1": (date(2026, 11, 2), "atp"),
        "O2": (date(2026, 11, 6), "atp"),
        "O3": (date(2026, 11, 6), "atp"),
        "O4": (date(2026, 11, 5), "lead_time"),
        "O5": (date(2026, 11, 9), "lead_time"),
        "O6": (date(2026, 11, 9), "lead_time"),
    }


def test_promise_dates_ignore_the_batch_own_rows(store, example_config):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 5)])
        add_orders(s, example_config, [("O1", 0, [("A", 5)])], to_allocation=False)
        assert stock.promise_dates(s, [("O1", [("A", 5)])], now=NOW, tz=TZ) == {"O1": (date(2026, 11, 2), "atp")}
        assert stock.promise_dates(s, [("O2", [("A", 1)])], now=NOW, tz=TZ)["O2"][1] == "lead_time"


# --- counts, adjustments, receipts ---------------------------------------------------------------


def test_apply_counts_sets_on_hand_and_audits_changes(store):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(s, products=["A", "B"], stock=[("A", "WH1", 10)])
        changed = stock.apply_counts(
            s, [("A", "WH1", 12), ("B", "WH2", 5), ("A", "WH1", 7), ("B", "WH3", 0)], at=NOW, actor="ivan"
        )
        assert changed == 2  # A/WH1 10 -> 7 (the last count wins), B/WH2 new 5; B/WH3 0 is no change
        assert tuple(stock_of(s, "A", "WH1")) == (7, 0)
        assert tuple(stock_of(s, "B", "WH2")) == (5, 0)
        moves = s.execute(sa.text("SELECT sku, warehouse, delta, kind FROM stock_move ORDER BY id")).all()
        assert [tuple(m) for m in moves] == [("A", "WH1", -3, "count"), ("B", "WH2", 5, "count")]
        assert len(events(s, "stock_counted")) == 2
        assert stock.apply_counts(s, [("A", "WH1", 7)], at=NOW, actor="ivan") == 0
        with pytest.raises(NotFound, match="ZZ"):
            stock.apply_counts(s, [("ZZ", "WH1", 1)], at=NOW, actor="ivan")


def test_apply_counts_refuses_below_allocated(store, example_config):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 10)])
        add_orders(s, example_config, [("O1", 0, [("A", 6)])])
        stock.allocate(s, example_config, ["O1"], at=NOW, actor="cron", tz=TZ)
    with pytest.raises(Conflict, match="below what is allocated"):
        with store.session(write=True) as s:
            stock.apply_counts(s, [("A", "WH1", 5)], at=NOW, actor="ivan")
    with store.session() as s:
        assert tuple(stock_of(s, "A", "WH1")) == (10, 6)


def test_adjust_and_its_refusals(store, example_config):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 10)])
        add_orders(s, example_config, [("O1", 0, [("A", 6)])])
        stock.allocate(s, example_config, ["O1"], at=NOW, actor="cron", tz=TZ)
        got = stock.adjust(s, "A", "WH1", -3, reason="damaged", at=NOW, actor="frank")
        assert got["on_hand"] == 7 and got["available"] == 1
        assert stock.adjust(s, "A", "WH9", 4, reason="found", at=NOW, actor="frank")["on_hand"] == 4
        assert [e.detail for e in events(s, "stock_adjusted")] == [
            "WH1: on hand 10 -> 7 (-3); damaged",
            "WH9: on hand 0 -> 4 (+4); found",
        ]
    for args, error, text in [
        (("A", "WH1", -2), Conflict, "below what is allocated"),
        (("A", "WH9", -5), Conflict, "would leave -1"),
        (("A", "WH7", -1), Conflict, "no stock of A in WH7"),
        (("NOPE", "WH1", 1), NotFound, "no product"),
        (("A", "WH1", 0), UsageError, "must not be 0"),
    ]:
        with pytest.raises(error, match=text):
            with store.session(write=True) as s:
                stock.adjust(s, *args, reason="count", at=NOW, actor="frank")
    with pytest.raises(UsageError, match="reason"):
        with store.session(write=True) as s:
            stock.adjust(s, "A", "WH1", 1, reason=" ", at=NOW, actor="frank")
    with store.session() as s:
        assert tuple(stock_of(s, "A", "WH1")) == (7, 6)
        check_invariants(s)


def test_receive_moves_inbound_to_on_hand_once(store):
    from ffctl.core import stock

    with store.session(write=True) as s:
        seed(
            s,
            products=["A", "B"],
            stock=[("A", "WH1", 1)],
            receipts=[("R1", "A", "WH1", 5, NOW), ("R1", "B", "WH2", 3, NOW), ("R2", "A", "WH1", 9, NOW)],
        )
        got = stock.receive(s, "R1", at=NOW, actor="frank")
        assert got["units"] == 8 and len(got["lines"]) == 2
        assert tuple(stock_of(s, "A", "WH1")) == (6, 0)
        assert tuple(stock_of(s, "B", "WH2")) == (3, 0)
        assert [r["inbound"] for r in stock.stock_rows(s, "A")] == [9]
        assert events(s, "received")[0].subject == "receipt:R1"
        kinds = s.execute(sa.text("SELECT kind, ref, delta FROM stock_move ORDER BY id")).all()
        assert [tuple(k) for k in kinds] == [("receipt", "R1", 5), ("receipt", "R1", 3)]
    with pytest.raises(Conflict, match="already received"):
        with store.session(write=True) as s:
            stock.receive(s, "R1", at=NOW, actor="frank")
    with pytest.raises(NotFound, match="no receipt"):
        with store.session(write=True) as s:
            stock.receive(s, "R9", at=NOW, actor="frank")


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def stocked(workspace):
    from ffctl.core.store import Store

    store = Store(workspace.db_url)
    with store.session(write=True) as s:
        seed(
            s,
            products=["A", "B"],
            stock=[("A", "WH1", 10), ("A", "WH2", 3), ("B", "WH1", 1)],
            receipts=[("R1", "A", "WH1", 5, NOW + timedelta(days=2))],
        )
    store.dispose()
    return workspace


def test_cli_stock_show(stocked):
    import json

    r = stocked.run("stock", "show", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows[0] == {
        "sku": "A",
        "warehouse": "WH1",
        "on_hand": 10,
        "allocated": 0,
        "available": 10,
        "inbound": 5,
        "safety_stock": 2,
    }
    assert len(rows) == 3
    r = stocked.run("stock", "show", "B", "--format", "csv")
    assert r.stdout.splitlines() == [
        "sku,warehouse,on_hand,allocated,available,inbound,safety_stock",
        "B,WH1,1,0,1,0,2",
    ]
    r = stocked.run("stock", "show", "A", "--format", "table")
    assert r.exit_code == 0 and "WH2" in r.stdout and "safety stock" in r.stdout
    r = stocked.run("stock", "show", "NOPE")
    assert r.exit_code == 1 and "Error: no product 'NOPE'" in r.stderr


def test_cli_stock_atp(stocked):
    import json

    r = stocked.run("stock", "atp", "A", "--qty", "15", "--format", "json", now="2026-11-02T10:00:00+08:00")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {
        "sku": "A",
        "qty": 15,
        "earliest_date": "2026-11-04",
        "schedule": [{"date": "2026-11-02", "available": 13}, {"date": "2026-11-04", "available": 18}],
    }
    r = stocked.run("stock", "atp", "A", "--qty", "99", "--format", "json", now="2026-11-02T10:00:00+08:00")
    assert json.loads(r.stdout)["earliest_date"] is None
    r = stocked.run("stock", "atp", "A", "--qty", "15", "--format", "table", now="2026-11-02T10:00:00+08:00")
    assert "15 can ship on 2026-11-04" in r.stdout
    r = stocked.run("stock", "atp", "A", "--qty", "0")
    assert r.exit_code == 2
    r = stocked.run("stock", "atp", "NOPE")
    assert r.exit_code == 1 and "no product" in r.stderr


def test_cli_stock_receive_and_adjust(stocked):
    r = stocked.run("stock", "receive", "R1", user="frank")
    assert r.exit_code == 0, r.output
    assert "Received R1: 5 units (A 5 into WH1)." in r.stderr
    r = stocked.run("stock", "receive", "R1", user="frank")
    assert r.exit_code == 1 and "already received" in r.stderr
    r = stocked.run("stock", "receive", "R9", user="frank")
    assert r.exit_code == 1 and "no receipt 'R9'" in r.stderr
    r = stocked.run("stock", "adjust", "A", "WH2", "-2", "--reason", "damaged in transit", user="frank")
    assert r.exit_code == 0, r.output
    assert "A in WH2: on hand 3 -> 1 (-2); 0 allocated, 1 available." in r.stderr
    r = stocked.run("stock", "adjust", "A", "WH2", "-2", "--reason", "again", user="frank")
    assert r.exit_code == 1 and "would leave -1" in r.stderr
    r = stocked.run("stock", "adjust", "A", "WH2", "5")
    assert r.exit_code == 2 and "--reason" in r.stderr
    r = stocked.run("stock", "show", "A", "--format", "csv")
    assert "A,WH1,15,0,15,0,2" in r.stdout and "A,WH2,1,0,1,0,2" in r.stdout
