"""Allocation: priority, partial and top-up, warehouses, dry run, release, and the invariant under
random operation sequences (hypothesis), on both backends."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from helpers import STOCK_NOW as NOW
from helpers import STOCK_TZ as TZ
from helpers import add_orders, check_invariants, events, seed, stock_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffctl.core.errors import Conflict, NotFound, UsageError


def lines_of(session, order_id):
    return [
        tuple(r)
        for r in session.execute(
            sa.text("SELECT line_no, qty, allocated FROM order_line WHERE order_id = :o ORDER BY line_no"),
            {"o": order_id},
        )
    ]


def node_of(session, order_id):
    return session.execute(sa.text("SELECT node FROM orders WHERE order_id = :o"), {"o": order_id}).scalar()


def allocations(session, order_id):
    return sorted(
        tuple(r)
        for r in session.execute(
            sa.text(
                "SELECT l.line_no, a.warehouse, a.qty FROM allocation a JOIN order_line l ON l.id = a.line_id "
                "WHERE a.order_id = :o"
            ),
            {"o": order_id},
        )
    )


def test_priority_then_promised_then_created_and_partial(store, example_config):
    from ffctl.core import stock

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 10)])
        add_orders(
            s,
            cfg,
            [
                ("O1", 0, [("A", 6)]),
                ("O2", 5, [("A", 6)]),
                ("O3", 5, [("A", 3)], date(2026, 11, 20)),
            ],
        )
        got = stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
    assert [(o["order_id"], o["result"], o["allocated_now"], o["backordered"]) for o in got["orders"]] == [
        ("O3", "allocated", 3, 0),
        ("O2", "allocated", 6, 0),
        ("O1", "partial", 1, 5),
    ]
    assert got["summary"] == {
        "orders": 3,
        "completed": 2,
        "partial": 1,
        "backordered": 0,
        "units_allocated": 10,
        "units_backordered": 5,
    }
    assert got["orders"][0]["next_node"] == "wave_pick"
    assert got["orders"][2]["lines"][0] == {
        "line_no": 1,
        "sku": "A",
        "qty": 6,
        "allocated": 1,
        "reserved": [{"warehouse": "WH1", "qty": 1}],
        "backordered": 5,
        "atp_date": None,
    }
    with store.session() as s:
        assert node_of(s, "O3") == "wave_pick" and node_of(s, "O2") == "wave_pick"
        assert node_of(s, "O1") == "allocation"
        assert lines_of(s, "O1") == [(1, 6, 1)]
        assert tuple(stock_of(s, "A", "WH1")) == (10, 10)
        from ffctl.core.models import Allocation

        assert set(s.execute(sa.select(Allocation.created_at)).scalars()) == {NOW}
        assert [e.order_id for e in events(s, "allocated")] == ["O3", "O2", "O1"]
        assert events(s, "allocated")[2].detail == "L1 A 1 @ WH1; L1 A 5 backordered (no known supply)"
        check_invariants(s)


def test_top_up_after_a_receipt_and_backorder_atp_dates(store, example_config):
    from ffctl.core import stock

    cfg = example_config
    with store.session(write=True) as s:
        seed(
            s,
            products=["A", "B"],
            stock=[("A", "WH1", 4), ("B", "WH1", 10)],
            receipts=[("R1", "A", "WH2", 3, NOW + timedelta(days=1)), ("R2", "A", "WH1", 10, NOW + timedelta(days=5))],
        )
        add_orders(s, cfg, [("O1", 1, [("A", 6), ("B", 2)]), ("O2", 0, [("A", 3)])])
        got = stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
    # O1 line 1 waits for 2: R1 (11-03) covers it; O2 waits for 3: 1 left of R1, so R2 (11-07)
    assert [(o["order_id"], o["result"], [ln["atp_date"] for ln in o["lines"]]) for o in got["orders"]] == [
        ("O1", "partial", [date(2026, 11, 3), None]),
        ("O2", "backordered", [date(2026, 11, 7)]),
    ]
    with store.session(write=True) as s:
        stock.receive(s, "R1", at=NOW, actor="frank")
        again = stock.allocate(s, cfg, all_orders=True, at=NOW + timedelta(hours=1), actor="cron", tz=TZ)
    assert [(o["order_id"], o["result"], o["allocated_now"]) for o in again["orders"]] == [
        ("O1", "allocated", 2),
        ("O2", "partial", 1),
    ]
    with store.session() as s:
        assert allocations(s, "O1") == [(1, "WH1", 4), (1, "WH2", 2), (2, "WH1", 2)]
        assert node_of(s, "O1") == "wave_pick"
        assert lines_of(s, "O2") == [(1, 3, 1)]
        check_invariants(s)


def test_warehouse_choice(store, example_config):
    from ffctl.core import stock

    cfg = example_config
    with store.session(write=True) as s:
        seed(
            s,
            products=["A", "B", "C"],
            stock=[
                ("A", "WH1", 5),
                ("A", "WH2", 8),
                ("A", "WH3", 3),
                ("B", "WH1", 5),
                ("B", "WH2", 4),
                ("B", "WH3", 3),
                ("C", "WH1", 9),
                ("C", "WH2", 7),
            ],
        )
        add_orders(
            s,
            cfg,
            [
                ("O1", 9, [("A", 6)]),  # only WH2 fills it whole
                ("O2", 8, [("B", 10)]),  # nobody can: most available first, WH1 5, WH2 4, WH3 1
                ("O3", 7, [("C", 6)]),  # both can: the most available, WH1
            ],
        )
        stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
        assert allocations(s, "O1") == [(1, "WH2", 6)]
        assert allocations(s, "O2") == [(1, "WH1", 5), (1, "WH2", 4), (1, "WH3", 1)]
        assert allocations(s, "O3") == [(1, "WH1", 6)]
        check_invariants(s)


def test_top_up_prefers_the_warehouse_the_line_already_uses(store, example_config):
    from ffctl.core import stock

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 2)])
        add_orders(s, cfg, [("O1", 0, [("A", 5)])])
        stock.allocate(s, cfg, ["O1"], at=NOW, actor="cron", tz=TZ)
        stock.adjust(s, "A", "WH1", 3, reason="found", at=NOW, actor="frank")
        stock.adjust(s, "A", "WH2", 9, reason="found", at=NOW, actor="frank")
        stock.allocate(s, cfg, ["O1"], at=NOW, actor="cron", tz=TZ)
        assert allocations(s, "O1") == [(1, "WH1", 5)]
        check_invariants(s)


def test_dry_run_shows_the_plan_and_writes_nothing(store, example_config):
    from ffctl.core import stock

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 5)])
        add_orders(s, cfg, [("O1", 0, [("A", 3)]), ("O2", 0, [("A", 3)])])

    def snapshot(s):
        return [
            s.execute(sa.text(q)).all()
            for q in (
                "SELECT * FROM stock ORDER BY id",
                "SELECT * FROM allocation ORDER BY id",
                "SELECT id, allocated FROM order_line ORDER BY id",
                "SELECT order_id, node FROM orders ORDER BY order_id",
                "SELECT count(*) FROM event",
                "SELECT count(*) FROM task",
            )
        ]

    with store.session() as s:
        before = snapshot(s)
        plan = stock.allocate(s, cfg, all_orders=True, dry_run=True, at=NOW, actor="cron", tz=TZ)
    with store.session() as s:
        assert snapshot(s) == before
    assert plan["dry_run"] is True
    with store.session(write=True) as s:
        real = stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
    for row in plan["orders"]:
        row["next_node"] = None
    for row in real["orders"]:
        row["next_node"] = None
    assert plan["orders"] == real["orders"] and plan["summary"] == real["summary"]


def test_release_order_frees_stock(store, example_config):
    from ffctl.core import stock, workflow

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A", "B"], stock=[("A", "WH1", 5), ("A", "WH2", 5), ("B", "WH1", 1)])
        add_orders(s, cfg, [("O1", 1, [("A", 7), ("B", 2)]), ("O2", 0, [("A", 4)])])
        stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
        assert lines_of(s, "O2") == [(1, 4, 3)]
    with store.session(write=True) as s:
        workflow.cancel_tasks(s, "O1", at=NOW, actor="oscar", reason="customer changed mind")
        s.execute(sa.text("UPDATE orders SET status = 'cancelled', node = NULL WHERE order_id = 'O1'"))
        assert stock.release_order(s, "O1", at=NOW, actor="oscar") == 8
        assert stock.release_order(s, "O1", at=NOW, actor="oscar") == 0
    with store.session(write=True) as s:
        assert lines_of(s, "O1") == [(1, 7, 0), (2, 2, 0)]
        assert stock_of(s, "A", "WH1")[1] + stock_of(s, "A", "WH2")[1] == 3
        assert tuple(stock_of(s, "B", "WH1")) == (1, 0)
        check_invariants(s)
        got = stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
        assert [(o["order_id"], o["result"]) for o in got["orders"]] == [("O2", "allocated")]
        with pytest.raises(NotFound):
            stock.release_order(s, "NOPE", at=NOW, actor="oscar")


def test_explicit_orders_are_checked_first(store, example_config):
    from ffctl.core import stock

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 5)])
        add_orders(s, cfg, [("O1", 0, [("A", 1)])])
        add_orders(s, cfg, [("O2", 0, [("A", 1)])], to_allocation=False)
    with store.session(write=True) as s:
        with pytest.raises(NotFound, match="no order NOPE"):
            stock.allocate(s, cfg, ["O1", "NOPE"], at=NOW, actor="cron", tz=TZ)
        with pytest.raises(Conflict, match="O2 is at node credit_review"):
            stock.allocate(s, cfg, ["O1", "O2"], at=NOW, actor="cron", tz=TZ)
        with pytest.raises(UsageError):
            stock.allocate(s, cfg, at=NOW, actor="cron", tz=TZ)
        got = stock.allocate(s, cfg, ["O1"], at=NOW, actor="cron", tz=TZ)
        assert got["summary"]["completed"] == 1
        assert stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)["orders"] == []


def test_an_order_sent_back_to_allocation_fully_allocated_moves_on(store, example_config):
    from ffctl.core import stock, workflow

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 5)])
        add_orders(s, cfg, [("O1", 0, [("A", 2)])])
        stock.allocate(s, cfg, ["O1"], at=NOW, actor="cron", tz=TZ)
        assert node_of(s, "O1") == "wave_pick"
        workflow.reject(s, cfg, "O1", at=NOW, actor="frank", reason="recount")
        assert node_of(s, "O1") == "allocation"
        got = stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
        assert [(o["order_id"], o["result"], o["allocated_now"]) for o in got["orders"]] == [("O1", "allocated", 0)]
        assert node_of(s, "O1") == "wave_pick"
        assert len(events(s, "allocated")) == 1
        check_invariants(s)


def test_held_orders_wait(store, example_config):
    from ffctl.core import stock, workflow

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 5)])
        add_orders(s, cfg, [("O1", 0, [("A", 2)])])
        workflow.hold(s, cfg, "O1", at=NOW, actor="judy", reason="credit")
        assert stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)["orders"] == []
        with pytest.raises(Conflict, match="O1 is on_hold"):
            stock.allocate(s, cfg, ["O1"], at=NOW, actor="cron", tz=TZ)


def _many_orders(store, cfg):
    """40 orders over three SKUs, stock for most of them (several steps with CHUNK patched to 8)."""
    with store.session(write=True) as s:
        seed(
            s, products=["A", "B", "C"], stock=[("A", "WH1", 40), ("A", "WH2", 15), ("B", "WH1", 30), ("C", "WH2", 12)]
        )
        add_orders(
            s,
            cfg,
            [
                (f"O{i:02d}", i % 3, [("A", 1 + i % 4), ("B", 1 + i % 3)] + ([("C", 2)] if i % 5 == 0 else []))
                for i in range(40)
            ],
        )


def test_steps_written_beside_the_planning_give_the_dry_run_plan(store, example_config, monkeypatch):
    """Orders planned in steps (1, 2, 4, 8, 8, ...), each written (on PostgreSQL by a second thread)
    while the next is planned: the same plan as one dry run, every completed order moved on."""
    from ffctl.core import stock
    from ffctl.core.stock import allocation

    cfg = example_config
    _many_orders(store, cfg)
    monkeypatch.setattr(allocation, "CHUNK", 8)
    with store.session() as s:
        plan = stock.allocate(s, cfg, all_orders=True, dry_run=True, at=NOW, actor="cron", tz=TZ)
    with store.session(write=True) as s:
        got = stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
    assert [{**o, "next_node": None} for o in got["orders"]] == plan["orders"]
    assert got["summary"] == plan["summary"] and 0 < got["summary"]["completed"] < 40
    with store.session() as s:
        for o in got["orders"]:
            expected = "wave_pick" if o["result"] == "allocated" else "allocation"
            assert o["next_node"] == (expected if o["result"] == "allocated" else None)
            assert node_of(s, o["order_id"]) == expected
        assert [e.order_id for e in events(s, "allocated")] == [
            o["order_id"] for o in got["orders"] if o["allocated_now"]
        ]
        check_invariants(s)


def test_a_failed_step_leaves_nothing_written(store, example_config, monkeypatch):
    from ffctl.core import stock
    from ffctl.core.stock import allocation

    cfg = example_config
    _many_orders(store, cfg)
    monkeypatch.setattr(allocation, "CHUNK", 8)
    write, calls = allocation._ChunkWrites.write, []

    def fail_third(self, session):
        calls.append(1)
        if len(calls) == 3:
            raise Conflict("order line changed while it was being updated")
        return write(self, session)

    monkeypatch.setattr(allocation._ChunkWrites, "write", fail_third)
    with pytest.raises(Conflict, match="order line changed"):
        with store.session(write=True) as s:
            stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
    with store.session() as s:
        assert s.execute(sa.text("SELECT count(*) FROM allocation")).scalar() == 0
        assert s.execute(sa.text("SELECT sum(allocated) FROM stock")).scalar() == 0
        assert s.execute(sa.text("SELECT count(*) FROM orders WHERE node <> 'allocation'")).scalar() == 0
        assert events(s, "allocated") == []
        check_invariants(s)


# --- the invariant under random operation sequences ---------------------------------------------

SKUS = ["A", "B", "C"]
WAREHOUSES = ["W1", "W2"]

operation = st.one_of(
    st.tuples(st.just("allocate_all")),
    st.tuples(st.just("allocate_some"), st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("adjust"), st.sampled_from(SKUS), st.sampled_from(WAREHOUSES), st.integers(-6, 6)),
    st.tuples(st.just("count"), st.sampled_from(SKUS), st.sampled_from(WAREHOUSES), st.integers(0, 8)),
    st.tuples(st.just("receive"), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 7)),
    st.tuples(st.just("ship"), st.integers(0, 7)),
)
scenario = st.fixed_dictionaries(
    {
        "stock": st.lists(
            st.tuples(st.sampled_from(SKUS), st.sampled_from(WAREHOUSES), st.integers(0, 8)),
            max_size=5,
            unique_by=lambda t: (t[0], t[1]),
        ),
        "orders": st.lists(
            st.tuples(
                st.integers(0, 2), st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 5)), min_size=1, max_size=3)
            ),
            min_size=1,
            max_size=8,
        ),
        "receipts": st.lists(
            st.tuples(st.sampled_from(SKUS), st.sampled_from(WAREHOUSES), st.integers(1, 6)), max_size=3
        ),
        "ops": st.lists(operation, min_size=1, max_size=8),
    }
)

_examples = {"n": 0}


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=scenario)
def test_invariant_holds_over_random_operations(store, example_config, data):
    """Any mix of allocations, counts, adjustments, receipts, cancels and shipments never oversells,
    and reservations always add up (each example uses its own SKUs in one store)."""
    from ffctl.core import shipping, stock, workflow

    cfg = example_config
    _examples["n"] += 1
    p = f"x{_examples['n']}_"
    sku = {s: p + s for s in SKUS}
    with store.session(write=True) as s:
        seed(
            s,
            products=list(sku.values()),
            customers=() if _examples["n"] > 1 and _has_c1(s) else ("C1",),
            stock=[(sku[a], w, n) for a, w, n in data["stock"]],
            receipts=[
                (f"{p}R{i}", sku[a], w, q, NOW + timedelta(days=i)) for i, (a, w, q) in enumerate(data["receipts"])
            ],
        )
        orders = [(f"{p}O{i}", prio, [(sku[a], q) for a, q in lines]) for i, (prio, lines) in enumerate(data["orders"])]
        add_orders(s, cfg, orders)
    ids = [o[0] for o in orders]
    for op in data["ops"]:
        try:
            with store.session(write=True) as s:
                kind = op[0]
                if kind == "allocate_all":
                    stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
                elif kind == "allocate_some":
                    stock.allocate(s, cfg, [ids[i % len(ids)] for i in op[1]], at=NOW, actor="cron", tz=TZ)
                elif kind == "adjust":
                    stock.adjust(s, sku[op[1]], op[2], op[3], reason="test", at=NOW, actor="t")
                elif kind == "count":
                    stock.apply_counts(s, [(sku[op[1]], op[2], op[3])], at=NOW, actor="t")
                elif kind == "receive":
                    stock.receive(s, f"{p}R{op[1]}", at=NOW, actor="t")
                elif kind == "cancel":
                    oid = ids[op[1] % len(ids)]
                    workflow.cancel_tasks(s, oid, at=NOW, actor="t", reason="test")
                    stock.release_order(s, oid, at=NOW, actor="t")
                    s.execute(
                        sa.text("UPDATE orders SET status = 'cancelled', node = NULL WHERE order_id = :o"), {"o": oid}
                    )
                elif kind == "ship":
                    oid = ids[op[1] % len(ids)]
                    for node in ("wave_pick", "pack_check"):
                        if node_of(s, oid) == node:
                            workflow.complete(s, cfg, oid, at=NOW, actor="t", node=node)
                    shipping.ship(s, cfg, oid, at=NOW, actor="t")
        except (Conflict, NotFound, UsageError):
            pass  # a refused operation writes nothing
        with store.session() as s:
            check_invariants(s)
    with store.session() as s:
        # shipped orders were fully allocated and consumed what they held
        shipped = s.execute(
            sa.text(
                "SELECT count(*) FROM order_line l JOIN orders o ON o.order_id = l.order_id "
                "WHERE o.status = 'shipped' AND l.allocated <> l.qty"
            )
        ).scalar()
        assert shipped == 0


def _has_c1(session) -> bool:
    return session.execute(sa.text("SELECT count(*) FROM customer WHERE customer = 'C1'")).scalar() > 0


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def waiting(workspace):
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    store = Store(workspace.db_url)
    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 5)], receipts=[("R1", "A", "WH1", 4, NOW + timedelta(days=3))])
        add_orders(s, load_config(workspace.config_path), [("O1", 1, [("A", 3)]), ("O2", 0, [("A", 4)])])
    store.dispose()
    return workspace


def test_cli_allocate_dry_run_then_for_real(waiting):
    import json

    r = waiting.run("allocate", "--all", "--dry-run", "--format", "json", now="2026-11-02T10:00:00+08:00")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["dry_run"] is True and plan["skipped"] == []
    assert plan["summary"] == {
        "orders": 2,
        "completed": 1,
        "partial": 1,
        "backordered": 0,
        "units_allocated": 5,
        "units_backordered": 2,
    }
    o2 = plan["orders"][1]
    assert o2["order_id"] == "O2" and o2["result"] == "partial"
    assert o2["lines"] == [
        {
            "line_no": 1,
            "sku": "A",
            "qty": 4,
            "allocated": 2,
            "reserved": [{"warehouse": "WH1", "qty": 2}],
            "backordered": 2,
            "atp_date": "2026-11-05",
        }
    ]
    assert "Dry run: nothing was written." in r.stderr
    r = waiting.run("allocate", "--all", "--format", "csv", now="2026-11-02T10:05:00+08:00")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        "order_id,priority,promised_ship_date,result,allocated_now,backordered,backorder_atp,next_node",
        "O1,1,,allocated,3,0,,wave_pick",
        "O2,0,,partial,2,2,2026-11-05,",
    ]
    assert "Reserved 5 units for 2 orders: 1 fully allocated (node completed), 1 partial" in r.stderr
    r = waiting.run("allocate", "O2", "--format", "table")
    assert r.exit_code == 0 and "O2" in r.stdout and "partial" in r.stdout


def test_cli_allocate_refusals(waiting):
    r = waiting.run("allocate")
    assert r.exit_code == 2 and "--all" in r.stderr
    r = waiting.run("allocate", "O1", "--all")
    assert r.exit_code == 2
    r = waiting.run("allocate", "NOPE")
    assert r.exit_code == 1 and "no order NOPE" in r.stderr
    waiting.run("allocate", "O1")
    r = waiting.run("allocate", "O1")
    assert r.exit_code == 1 and "O1 is at node wave_pick" in r.stderr


def test_schema_0004_round_trip_keeps_reservations_and_their_cascade(store, example_config):
    """Upgrading a store with reservations to 0004 (SQLite rebuilds the allocation table) and
    back keeps every row; deleting an order still takes its lines and reservations with it."""
    from alembic import command

    from ffctl.core import stock

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A", "B"], stock=[("A", "WH1", 10), ("B", "WH2", 4)])
        add_orders(s, cfg, [("O1", 0, [("A", 6), ("B", 2)]), ("O2", 0, [("A", 3)])])
        stock.allocate(s, cfg, all_orders=True, at=NOW, actor="cron", tz=TZ)
    with store.session() as s:
        before = {o: allocations(s, o) for o in ("O1", "O2")}
    assert before == {"O1": [(1, "WH1", 6), (2, "WH2", 2)], "O2": [(1, "WH1", 3)]}
    alembic_cfg = store._alembic_config()
    command.downgrade(alembic_cfg, "0003")
    assert store.current_revision() == "0003"
    store.upgrade()
    assert store.current_revision() == store.head_revision()
    with store.session(write=True) as s:
        assert {o: allocations(s, o) for o in ("O1", "O2")} == before
        s.execute(sa.text("DELETE FROM orders WHERE order_id = 'O2'"))
    with store.session() as s:
        assert allocations(s, "O2") == []
        assert s.execute(sa.text("SELECT count(*) FROM order_line WHERE order_id = 'O2'")).scalar() == 0
        assert allocations(s, "O1") == before["O1"]


@pytest.fixture
def many_waiting(workspace):
    """400 orders over 6 SKUs (some with odd ids and a promised date), stock for some of them."""
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    skus = [f"S{k}" for k in range(6)]
    orders = []
    for i in range(400):
        lines = [(skus[(i + j) % 6], 1 + (i * 7 + j) % 5) for j in range(1 + i % 3)]
        order_id = f"=O{i:04d}" if i % 97 == 0 else f"O{i:04d} \u00e9" if i % 89 == 0 else f"O{i:04d}"
        spec = (order_id, i % 3, lines) + ((date(2026, 11, 10 + i % 9),) if i % 4 == 0 else ())
        orders.append(spec)
    store = Store(workspace.db_url)
    with store.session(write=True) as s:
        seed(
            s,
            products=skus,
            stock=[(sku, wh, 150 + 40 * k) for k, sku in enumerate(skus) for wh in ("WH1", "WH2")],
            receipts=[(f"R{k}", sku, "WH1", 30, NOW + timedelta(days=2 + k)) for k, sku in enumerate(skus[:4])],
        )
        add_orders(s, load_config(workspace.config_path), orders)
    store.dispose()
    return workspace


def test_cli_allocate_json_and_csv_of_many_orders_keep_their_layout(many_waiting):
    """The bytes scripts read: JSON an object with one order a line inside "orders", CSV one row an
    order (ids formula-safe); the dry run's CSV is its JSON's plan, and the real run's JSON the same layout."""
    import csv
    import io
    import json

    at = "2026-11-02T10:00:00+08:00"

    def check_json(stdout: str, dry_run: bool) -> list[dict]:
        doc = json.loads(stdout)
        rows = ",\n    ".join(json.dumps(o, ensure_ascii=False) for o in doc["orders"])
        rest = json.dumps({k: doc[k] for k in ("skipped", "after_clock", "summary")}, ensure_ascii=False, indent=2)
        opened = '{\n  "dry_run": ' + json.dumps(dry_run) + ',\n  "orders": ['
        assert stdout == opened + ("\n    " + rows + "\n  ]," if rows else "],") + rest[1:] + "\n"
        return doc["orders"]

    plan = many_waiting.run("allocate", "--all", "--dry-run", "--format", "json", now=at)
    assert plan.exit_code == 0, plan.output
    orders = check_json(plan.stdout, True)
    assert len(orders) == 400 and {o["result"] for o in orders} == {"allocated", "partial", "backordered"}

    keys = [
        "order_id",
        "priority",
        "promised_ship_date",
        "result",
        "allocated_now",
        "backordered",
        "backorder_atp",
        "next_node",
    ]
    as_csv = many_waiting.run("allocate", "--all", "--dry-run", "--format", "csv", now=at)
    assert as_csv.exit_code == 0, as_csv.output
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(keys)
    for o in orders:
        cells = ["" if o[k] is None else o[k] for k in keys]
        cells[0] = "'" + cells[0] if cells[0].startswith("=") else cells[0]
        writer.writerow(cells)
    assert as_csv.stdout == expected.getvalue()
    assert "'=O0000" in as_csv.stdout and "O0089 \u00e9" in as_csv.stdout

    real = many_waiting.run("allocate", "--all", "--format", "json", now=at)
    assert real.exit_code == 0, real.output
    assert [o["order_id"] for o in check_json(real.stdout, False)] == [o["order_id"] for o in orders]
    again = many_waiting.run("allocate", "--all", "--dry-run", "--format", "json", now=at)
    assert all(o["result"] != "allocated" for o in check_json(again.stdout, True))
    nothing = many_waiting.run("allocate", "--all", "--dry-run", "--format", "json", now="2026-11-01T10:00:00+08:00")
    assert check_json(nothing.stdout, True) == [] and '"orders": [],\n  "skipped": []' in nothing.stdout
