"""The report facts follow every way ffctl changes an order, on both backends.

Orders go through the real write paths (workflow entry, allocation, manual nodes, holds,
rejection, the sweep, shipping, delivery, returns, cancellation, a customer's new region); after each
step the facts are refreshed incrementally, and at the end they equal a rebuild from scratch.
A write path that changed an order without an audit event naming it would show up here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from helpers import STOCK_NOW as NOW
from helpers import STOCK_TZ as TZ
from helpers import add_orders, seed
from helpers import fact_rows as facts


def test_every_write_path_reaches_the_facts(store, example_config):
    from ffctl.core import kpi, orders, returns, shipping, sla, stock, workflow

    cfg = example_config
    modes = []

    def refresh(at):
        modes.append(kpi.refresh_facts(store, cfg, cuts=(None, "region"), now=at)["mode"])

    with store.session(write=True) as s:
        seed(s, products=["A", "B"], stock=[("A", "WH1", 50), ("B", "WH1", 1)], customers=("C1", "C2"))
        add_orders(
            s,
            cfg,
            [
                ("O1", 0, [("A", 2)]),
                ("O2", 1, [("A", 1), ("B", 1)]),
                ("O3", 0, [("B", 5)]),
                ("O4", 0, [("A", 1)]),
                ("O5", 0, [("A", 3)]),
            ],
        )
        s.execute(sa.text("UPDATE orders SET region = NULL"))  # they follow their customer's region
    refresh(NOW)
    assert modes == ["full"]
    steps = [
        lambda s, at: stock.allocate(s, cfg, ["O1", "O2", "O3", "O4", "O5"], at=at, actor="cron", tz=TZ),
        lambda s, at: workflow.complete(s, cfg, "O1", at=at, actor="frank", node="wave_pick"),
        lambda s, at: workflow.hold(s, cfg, "O2", at=at, actor="frank", reason="customer call"),
        lambda s, at: workflow.release(s, cfg, "O2", at=at, actor="frank"),
        lambda s, at: workflow.reject(s, cfg, "O4", at=at, actor="frank", reason="wrong bin"),
        lambda s, at: workflow.complete(s, cfg, "O1", at=at, actor="frank", node="pack_check"),
        lambda s, at: shipping.ship(
            s, cfg, "O1", at=at, actor="frank", carrier="SF", tracking="T1", picks=[(1, "A", 1)]
        ),  # a partial shipment: the order stays at dispatch
        lambda s, at: shipping.ship(
            s, cfg, "O1", at=at, actor="frank", carrier="SF", tracking="T2", picks=[(1, "A", 1)]
        ),  # the rest: shipped in full
        lambda s, at: stock.deliver(s, cfg, "O1", at=at, actor="frank", issue="short"),
        lambda s, at: returns.record_return(
            s, cfg, "O1", [(1, 1)], reason="damaged", at=at, actor="frank", restock="WH1"
        ),
        lambda s, at: workflow.complete(s, cfg, "O2", at=at, actor="frank", node="wave_pick"),
        lambda s, at: workflow.complete(s, cfg, "O2", at=at, actor="frank", node="pack_check"),
        lambda s, at: shipping.ship(
            s, cfg, "O2", at=at, actor="frank", carrier="SF", tracking="T3", picks=[(1, "A", 1), (2, "B", 1)]
        ),
        lambda s, at: returns.record_return(s, cfg, "O2", [(2, 1)], reason="wrong_size", at=at, actor="frank"),
        lambda s, at: orders.cancel_order(s, cfg, "O5", at=at, actor="admin", reason="duplicate"),
        lambda s, at: s.execute(sa.text("UPDATE customer SET region = '华南' WHERE customer = 'C1'")),
        lambda s, at: s.execute(sa.text("UPDATE product SET category = 'spares' WHERE sku = 'B'")),
    ]
    at = NOW
    for i, step in enumerate(steps):
        at += timedelta(minutes=20)
        with store.session(write=True) as s:
            step(s, at)
        if i == 3:  # hours later: the sweep breaches what waited too long
            at += timedelta(hours=30)
            sla.sweep(store, cfg, now=at)
        refresh(at)
    assert set(modes[1:]) == {"incremental"}
    kept = facts(store)
    with store.session() as s:
        assert s.execute(sa.text("SELECT COUNT(*) FROM node_fact WHERE breached = 1")).scalar_one() > 0
        assert s.execute(sa.text("SELECT region FROM order_fact WHERE order_id = 'O1'")).scalar_one() == "华南"
        # the line cuts: O2's lines of A and B, its picks of each, B's new category
        assert s.execute(
            sa.text(
                "SELECT member, line_picked, line_shipped, line_returned FROM group_fact "
                "WHERE order_id = 'O2' AND cut = 'category' AND g = 'spares'"
            )
        ).one() == (1, 1, 1, 1)
        assert (
            s.execute(sa.text("SELECT COUNT(*) FROM group_fact WHERE order_id = 'O2' AND cut = 'product'")).scalar_one()
            == 2
        )
        assert s.execute(
            sa.text("SELECT shipped, delivered, picked, perfect FROM order_fact WHERE order_id = 'O1'")
        ).one() == (1, 1, 2, 0)
        # O1's visits: one row each, the first of each node carrying the order's facts
        assert s.execute(
            sa.text("SELECT COUNT(*), SUM(first), SUM(shipped), SUM(decided) FROM visit_fact WHERE order_id = 'O1'")
        ).one() == (5, 5, 5, 5)
        # one first visit per (order, node) visited, whatever the rejections sent back
        assert (
            s.execute(
                sa.text(
                    "SELECT COUNT(*) FROM (SELECT order_id, node FROM visit_fact GROUP BY order_id, node "
                    "HAVING SUM(first) <> 1) x"
                )
            ).scalar_one()
            == 0
        )
        assert s.execute(
            sa.text(
                "SELECT order_id, units_shipped, units_returned FROM order_fact WHERE units_returned > 0 "
                "ORDER BY order_id"
            )
        ).all() == [("O1", 2, 1), ("O2", 2, 1)]
        misses = s.execute(
            sa.text("SELECT order_id, delivery_issue, returned, cause FROM miss_fact ORDER BY order_id")
        ).all()
    assert [tuple(m[:3]) for m in misses] == [("O1", 1, 1), ("O2", 0, 1)]
    # O1 waited 30 hours at pack_check: late, and the breach comes before its delivery issue and return
    assert misses[0].cause == "node:pack_check"
    with store.session(write=True) as s:
        s.execute(sa.text("UPDATE fact_state SET event_id = NULL"))
    assert kpi.refresh_facts(store, cfg, now=at)["mode"] == "full"
    assert facts(store) == kept


def test_late_completions_without_a_sweep_are_breaches_and_choose_the_bottleneck(store, example_config):
    """SPEC 9.1 (the issue's tour): three credit reviews go late, two are done late and one is still
    open, and no sweep ever ran. All three are breaches, for `report sla`, the KPIs, the bottleneck
    and its lateness, through incremental refreshes that equal a rebuild."""
    from ffctl.core import kpi, workflow

    cfg = example_config
    with store.session(write=True) as s:  # created 09:57-09:59 Monday in Shanghai: due 10:27-10:29
        seed(s, products=["A"], stock=[("A", "WH1", 50)], customers=("C1",))
        add_orders(s, cfg, [("O1", 0, [("A", 1)]), ("O2", 0, [("A", 1)]), ("O3", 0, [("A", 1)])], to_allocation=False)
    kpi.refresh_facts(store, cfg, now=NOW)
    for order_id, minutes in (("O1", 120), ("O2", 125)):  # done at 12:00 and 12:05
        with store.session(write=True) as s:
            workflow.complete(s, cfg, order_id, at=NOW + timedelta(minutes=minutes), actor="alice")
    report_at = NOW + timedelta(minutes=128)  # 12:08: O3 still waits; allocation is not late yet
    assert kpi.refresh_facts(store, cfg, now=report_at)["mode"] == "incremental"
    with store.session() as s:
        assert s.execute(sa.text("SELECT COUNT(*) FROM task WHERE sla_state = 'breached'")).scalar_one() == 0
        credit = next(r for r in kpi.sla_report(s, cfg, now=report_at) if r["node"] == "credit_review")
        rows = kpi.kpi_report(s, cfg, now=report_at)
    assert (credit["completed"], credit["within_sla"], credit["breaches"]) == (2, 0, 3)
    # late by 93, 97 and 99 minutes of office hours
    assert credit["late_p50_seconds"] == 97 * 60 and credit["late_p90_seconds"] == pytest.approx(98.6 * 60)
    bottleneck = rows[-1]
    assert (bottleneck["node"], bottleneck["count"], bottleneck["breach_share"]) == ("credit_review", 3, 1.0)
    sla_attainment = next(r for r in rows if r["kpi"] == "sla_attainment")
    assert (sla_attainment["count"], sla_attainment["actual"]) == (2, 0.0)
    kept = facts(store)
    with store.session(write=True) as s:
        s.execute(sa.text("UPDATE fact_state SET event_id = NULL"))
    assert kpi.refresh_facts(store, cfg, now=report_at)["mode"] == "full"
    assert facts(store) == kept


def test_a_hold_stops_the_clock_also_when_the_order_is_cancelled_on_hold(store, example_config):
    """Held at 10:05 (due 10:29), cancelled the next day: never past its deadline, so no breach;
    one held after its deadline is one, whenever it is cancelled."""
    from ffctl.core import kpi, orders, workflow

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A"], stock=[("A", "WH1", 50)], customers=("C1",))
        add_orders(s, cfg, [("O1", 0, [("A", 1)]), ("O2", 0, [("A", 1)])], to_allocation=False)
        workflow.hold(s, cfg, "O2", at=NOW + timedelta(minutes=5), actor="alice", reason="call")
        workflow.hold(s, cfg, "O1", at=NOW + timedelta(minutes=40), actor="alice", reason="call")
    later = NOW + timedelta(days=1)
    with store.session(write=True) as s:
        for order_id in ("O1", "O2"):
            orders.cancel_order(s, cfg, order_id, at=later, actor="alice", reason="customer left")
    kpi.refresh_facts(store, cfg, now=later)
    with store.session() as s:
        credit = next(r for r in kpi.sla_report(s, cfg, now=later) if r["node"] == "credit_review")
        assert credit["breaches"] == 1 and credit["late_p50_seconds"] == 12 * 60  # O1: held 10:40, due 10:28
        assert kpi.kpi_report(s, cfg, now=later)[-1]["count"] == 1


def test_a_refresh_writes_only_the_fact_rows_that_differ(store, example_config):
    """An audit event that changes no fact leaves every fact row where it was; a real change
    rewrites only the changed order's rows that differ, and the facts still equal a rebuild."""
    from ffctl.core import audit, kpi, workflow

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A", "B"], stock=[("A", "WH1", 50), ("B", "WH1", 50)], customers=("C1",))
        add_orders(s, cfg, [("O1", 0, [("A", 1), ("B", 2)]), ("O2", 0, [("A", 1)])])
    kpi.refresh_facts(store, cfg, now=NOW)
    tables = ("order_fact", "node_fact", "visit_fact", "group_fact", "miss_fact", "flow_edge", "flow_path", "work_fact")
    where = "ctid" if store.engine.dialect.name == "postgresql" else "rowid"

    def places():  # each row's physical place: a row deleted and inserted again moves
        with store.session() as s:
            return {
                t: sorted((r[0], str(r[1])) for r in s.execute(sa.text(f"SELECT order_id, {where} FROM {t}")))
                for t in tables
            }

    def day_places():  # the day tables' rows: an upsert moves a PostgreSQL row
        with store.session() as s:
            return [
                sorted(map(str, s.execute(sa.text(f"SELECT {where} FROM {t}")).scalars()))
                for t in ("visit_day", "work_day", "group_day", "order_day")
            ]

    before, days = places(), day_places()
    assert before["visit_fact"] and before["group_fact"] and before["flow_path"] and all(days)
    with store.session(write=True) as s:
        audit.record(s, event="notified", at=NOW + timedelta(minutes=5), actor="bot", order_id="O1")
    assert kpi.refresh_facts(store, cfg, now=NOW + timedelta(minutes=5)) == {"mode": "incremental", "orders": 1}
    assert places() == before
    assert day_places() == days

    at = NOW + timedelta(hours=3)
    with store.session(write=True) as s:
        workflow.complete(s, cfg, "O1", at=at, actor="frank")
    assert kpi.refresh_facts(store, cfg, now=at) == {"mode": "incremental", "orders": 1}
    after = places()
    for t in tables:
        assert [r for r in after[t] if r[0] == "O2"] == [r for r in before[t] if r[0] == "O2"], t
    assert after["visit_fact"] != before["visit_fact"]
    kept = facts(store)
    with store.session(write=True) as s:
        s.execute(sa.text("UPDATE fact_state SET event_id = NULL"))
    assert kpi.refresh_facts(store, cfg, now=at)["mode"] == "full"
    assert facts(store) == kept


def test_an_incremental_refresh_reads_the_changed_orders_history_once(store, example_config):
    """Every fact's statement of an incremental refresh reads the changed orders' copies of the
    history tables (kpi.History), not the tables themselves: each order is looked up once per
    table, and a statement that read a table whole would show up here."""
    import re

    from sqlalchemy import event

    from ffctl.core import kpi, workflow

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A", "B"], stock=[("A", "WH1", 50), ("B", "WH1", 50)], customers=("C1",))
        add_orders(s, cfg, [("O1", 0, [("A", 1), ("B", 2)]), ("O2", 0, [("A", 1)])])
    kpi.refresh_facts(store, cfg, now=NOW)
    at = NOW + timedelta(hours=3)
    with store.session(write=True) as s:
        workflow.complete(s, cfg, "O1", at=at, actor="frank")
    computing: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        words = statement.split()
        if words[:3] in (["INSERT", "INTO", "fact_stage"], ["INSERT", "INTO", "temp.fact_stage"]) or (
            words[:3] == ["CREATE", "TEMP", "TABLE"] and not words[3].startswith(("fact_h_", "fact_stage"))
        ):
            computing.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert kpi.refresh_facts(store, cfg, now=at) == {"mode": "incremental", "orders": 1}
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    tables = "|".join(kpi.HISTORY)
    direct = re.compile(rf"\b(?:FROM|JOIN)\s+(?:main\.)?({tables})\b", re.IGNORECASE)
    assert len(computing) >= 10
    assert [m.group(1) for st in computing for m in direct.finditer(st)] == []


def test_schema_0017_has_autovacuum_come_for_the_facts_after_a_small_change(store):
    """PostgreSQL: after 0.5% of a fact table's rows changed, not the default 20%, so the pages a
    1% refresh rewrote are all-visible again for the reports' index-only scans; downgrade puts
    the defaults back. SQLite: the revision passes through."""
    from alembic import command

    def options(table: str) -> list[str]:
        with store.session() as s:
            if store.is_sqlite:
                return []
            found = s.execute(
                sa.text(
                    "SELECT reloptions FROM pg_class WHERE relname = :t AND relnamespace = current_schema()::regnamespace"
                ),
                {"t": table},
            ).scalar_one()
            return sorted(found or [])

    wanted = (
        []
        if store.is_sqlite
        else [
            "autovacuum_analyze_scale_factor=0.005",
            "autovacuum_vacuum_insert_scale_factor=0.005",
            "autovacuum_vacuum_scale_factor=0.005",
        ]
    )
    assert options("order_fact") == options("group_fact") == wanted
    command.downgrade(store._alembic_config(), "0016")
    assert store.current_revision() == "0016"
    assert options("order_fact") == []
    store.upgrade()
    assert store.current_revision() == store.head_revision() == "0018"
    assert options("visit_fact") == options("group_day") == options("order_day") == wanted


def test_schema_0018_fills_the_day_sums_at_the_next_refresh_without_a_rebuild(store, example_config):
    """A store upgraded to 0018 has facts and an empty group_day and order_day: the whole-store,
    week, product and category reports give the same numbers from the facts until the next
    refresh fills the day tables from them (no rebuild of the facts), and the same again after;
    a downgrade drops the tables."""
    from alembic import command

    from ffctl.core import kpi

    cfg = example_config
    with store.session(write=True) as s:
        seed(s, products=["A", "B"], stock=[("A", "WH1", 50), ("B", "WH1", 50)], customers=("C1",))
        s.execute(sa.text("UPDATE product SET category = 'parts' WHERE sku = 'A'"))  # B has none
        add_orders(s, cfg, [("O1", 0, [("A", 1), ("B", 2)]), ("O2", 0, [("A", 1)])])
    kpi.refresh_facts(store, cfg, now=NOW)

    def line_cuts():
        with store.session() as s:
            return [kpi.kpi_report(s, cfg, now=NOW, by=by) for by in ("product", "category", None, "week")] + [
                kpi.kpi_report(s, cfg, now=NOW, by=by, kpis=("on_time_shipping", "perfect_order"))
                for by in (None, "week")
            ]

    def group_days():
        with store.session() as s:
            return [s.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in ("group_day", "order_day")]

    before, kept = line_cuts(), facts(store)
    assert all(group_days()) and {r["group"] for r in before[1]} >= {"parts", None}
    command.downgrade(store._alembic_config(), "0017")
    store.upgrade()
    assert group_days() == [0, 0]
    assert line_cuts() == before  # read-only stores report this way: from the facts
    assert kpi.refresh_facts(store, cfg, now=NOW) == {"mode": "none", "orders": 0}
    assert facts(store) == kept
    assert line_cuts() == before
