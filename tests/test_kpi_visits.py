"""The node-visit and line facts give the same reports as the generic paths, on both backends.

``report sla``, the node cut of ``report kpi``, breaches per owner, the cycle-time histogram,
``report flow`` and ``report workload`` read ``visit_fact``/``node_fact``/``order_fact``/
``flow_edge``/``flow_path``/``work_fact`` when the facts are current, the product and
category cuts ``group_fact`` and ``group_day``, the whole store and the week cut ``order_day``;
``source="tasks"``
computes them from the task history and the order lines (the generic paths), and the workflow cut
from the orders' own workflow. Random histories (hypothesis) go
through the real write paths (completions, rejections, holds, releases, cancellations, the
sweep, allocation, shipping, delivery) with the facts refreshed incrementally, and every report
is compared between the two sources for several clocks and periods. On the same histories,
``kpi_report(kpis=...)`` gives the full report's rows of those KPIs, and the dashboard (each
series read once, only what it shows) renders the HTML of every report computed in full.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from helpers import open_orders
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

START = datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)  # 09:00 Monday in Asia/Shanghai
TZ = "Asia/Shanghai"
SKUS = ("A", "B", "CUSTOM")

operation = st.tuples(
    st.sampled_from(["advance"] * 10 + ["reject", "hold", "release", "cancel", "sweep", "sweep", "return"]),
    st.integers(0, 3),
    st.integers(0, 240),
)
history = st.fixed_dictionaries(
    {
        "orders": st.lists(
            st.tuples(st.lists(st.sampled_from(SKUS), min_size=1, max_size=2, unique=True), st.integers(0, 120)),
            min_size=1,
            max_size=4,
        ),
        "ops": st.lists(operation, min_size=10, max_size=40),
    }
)

_run = {"n": 0, "clock": START}


def close(a, b) -> bool:
    """Equal, with floats equal to 1e-9 relative (the two paths interpolate in different places)."""
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def step(store, cfg, op, order_id, at) -> None:
    """One operation of a history; refusals (an order not at a node it can do this at) are skipped."""
    from ffctl.core import orders, returns, shipping, sla, stock, workflow
    from ffctl.core.errors import FfctlError

    kind = op[0]
    if kind == "sweep":
        sla.sweep(store, cfg, now=at)
        return
    try:
        with store.session(write=True) as s:
            row = s.execute(sa.text("SELECT status, node FROM orders WHERE order_id = :o"), {"o": order_id}).one()
            if kind == "advance" and row.status == "shipped":
                stock.deliver(s, cfg, order_id, at=at, actor="carrier", issue="damaged" if op[1] % 3 == 0 else None)
            elif kind == "advance" and row.node == "allocation":
                stock.allocate(s, cfg, [order_id], at=at, actor="cron", tz=TZ)
            elif kind == "advance" and row.node == "dispatch" and op[1] % 2 == 0:  # picks as an import reports them
                line = s.execute(
                    sa.text("SELECT line_no, sku, qty FROM order_line WHERE order_id = :o ORDER BY line_no"),
                    {"o": order_id},
                ).first()
                shipping.ship(
                    s,
                    cfg,
                    order_id,
                    at=at,
                    actor="frank",
                    carrier="SF",
                    tracking=f"T-{order_id}-{op[2]}",
                    picks=[(line.line_no, "B" if op[1] == 0 else line.sku, line.qty)],
                )
            elif kind == "advance" and row.node == "dispatch":
                shipping.ship(s, cfg, order_id, at=at, actor="frank", carrier="SF", tracking=f"T-{order_id}")
            elif kind == "return":
                returns.record_return(s, cfg, order_id, [(1, 1)], reason="damaged", at=at, actor="frank")
            elif kind == "advance":
                workflow.complete(s, cfg, order_id, at=at, actor="alice")
            elif kind == "reject":
                workflow.reject(s, cfg, order_id, at=at, actor="alice", reason="not yet")
            elif kind == "hold":
                workflow.hold(s, cfg, order_id, at=at, actor="alice", reason="customer call")
            elif kind == "release":
                workflow.release(s, cfg, order_id, at=at, actor="alice")
            elif kind == "cancel":
                orders.cancel_order(s, cfg, order_id, at=at, actor="admin", reason="customer left")
    except FfctlError:
        pass


def _differing(facts, tasks):
    """The rows that differ (the whole reports when their shapes do)."""
    if isinstance(facts, list) and isinstance(tasks, list) and len(facts) == len(tasks):
        return [(f, t) for f, t in zip(facts, tasks) if not close(f, t)]
    return facts, tasks


def compare(store, cfg, at, created) -> None:
    from ffctl.core import dashboard, flow, kpi, workload

    periods = [
        kpi.Period(),
        kpi.Period(start=created[len(created) // 2]),
        kpi.Period(end=created[0] + timedelta(seconds=1)),
    ]
    with store.session() as s:
        for now in (at, at + timedelta(hours=3), at + timedelta(days=2)):
            for period in periods:
                for name, report in (
                    (
                        "sla",
                        lambda src, now=now, period=period: kpi.sla_report(s, cfg, now=now, period=period, source=src),
                    ),
                    (
                        "kpi by node",
                        lambda src, now=now, period=period: kpi.kpi_report(
                            s, cfg, now=now, period=period, by="node", source=src
                        ),
                    ),
                    *(
                        (
                            f"kpi by {by}",
                            lambda src, by=by, now=now, period=period: kpi.kpi_report(
                                s, cfg, now=now, period=period, by=by, source=src
                            ),
                        )
                        for by in ("product", "category", "workflow", None, "week")
                    ),
                    (
                        "owners",
                        lambda src, now=now, period=period: kpi.breaches_by_owner(
                            s, cfg, now=now, period=period, source=src
                        ),
                    ),
                    (
                        "histogram",
                        lambda src, now=now, period=period: kpi.cycle_time_histogram(
                            s, cfg, now=now, period=period, at_least=30.0, source=src
                        ),
                    ),
                    (
                        "flow",
                        lambda src, now=now, period=period: flow.flow_report(
                            s, cfg, now=now, period=period, top=3, source=src
                        ),
                    ),
                    *(
                        (
                            f"workload by {by}",
                            lambda src, by=by, now=now, period=period: workload.workload_report(
                                s, cfg, now=now, period=period, by=by, source=src
                            ),
                        )
                        for by in workload.BY
                    ),
                ):
                    facts, tasks = report("facts"), report("tasks")
                    assert close(facts, tasks), (name, now, period, _differing(facts, tasks))
                full = workload.workload_report(s, cfg, now=now, period=period, by="role")
                unhandled = [dict(r, handling_p50_seconds=None, handling_p90_seconds=None) for r in full]
                assert workload.workload_report(s, cfg, now=now, period=period, handling=False) == unhandled
                for by in (None, "week", "region", "node", "product") if now == at else ():
                    full = kpi.kpi_report(s, cfg, now=now, period=period, by=by)
                    for kpis in PARTS:
                        part = kpi.kpi_report(s, cfg, now=now, period=period, by=by, kpis=kpis)
                        assert part == [r for r in full if r["kpi"] in kpis], (by, kpis, now, period)
                assert dashboard.build_dashboard(s, cfg, now=now, period=period) == _dashboard_in_full(
                    s, cfg, now, period
                ), (now, period)


#: ``kpi_report(kpis=...)`` asked for a few KPIs: the dashboard's, and each kind of work skipped or kept
#: (rates alone sum only their own counters)
PARTS = (
    ("on_time_shipping", "perfect_order"),
    ("return_rate",),
    ("bottleneck",),
    ("cycle_time_hours", "fill_rate"),
    ("allocation_minutes", "sla_attainment", "pick_accuracy"),
    ("pick_accuracy", "sla_attainment"),
)


def _dashboard_in_full(s, cfg, now, period) -> str:
    """The dashboard as it was built before it shared its reads: every report in full, each on its own."""
    from ffctl.core import dashboard, flow, forecast, kpi, misses, workload

    data = {
        "kpis": kpi.kpi_report(s, cfg, now=now, period=period),
        "weekly": kpi.kpi_report(s, cfg, now=now, period=period, by="week"),
        "nodes": kpi.sla_report(s, cfg, now=now, period=period),
        "histogram": kpi.cycle_time_histogram(
            s, cfg, now=now, period=period, at_least=cfg.kpi_targets.get("cycle_time_hours")
        ),
        "owners": kpi.breaches_by_owner(s, cfg, now=now, period=period),
        "likely": forecast.likely(s, cfg, now),
        "workload": workload.workload_report(s, cfg, now=now, period=period, by="role"),
        "flow": flow.flow_report(s, cfg, now=now, period=period, top=5),
        "misses": misses.pareto(s, cfg, period=period),
        "returns": [
            r for r in kpi.kpi_report(s, cfg, now=now, period=period, by="region") if r["kpi"] == "return_rate"
        ],
    }
    return dashboard.render_dashboard(data, tz=cfg.timezone, now=now, period=period)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=history)
def test_visit_facts_report_what_the_task_history_does(store, example_config, data):
    from ffctl.core import kpi

    cfg = example_config
    _run["n"] += 1
    at = _run["clock"]
    prefix = f"H{_run['n']}-"
    orders = [
        (f"{prefix}{i}", [(sku, 1 + i % 3) for sku in skus], minutes)
        for i, (skus, minutes) in enumerate(data["orders"])
    ]
    with store.session(write=True) as s:
        open_orders(s, cfg, orders, at=at)
        # categories: one shared by two SKUs, one SKU without
        s.execute(
            sa.text(
                "UPDATE product SET category = CASE sku WHEN 'CUSTOM' THEN 'custom' WHEN 'A' THEN 'parts' ELSE NULL END"
            )
        )
        s.execute(sa.text("UPDATE product SET category = 'parts' WHERE sku = 'B' AND :odd = 1"), {"odd": _run["n"] % 2})
    kpi.refresh_facts(store, cfg, now=at)
    for op in data["ops"]:
        at += timedelta(minutes=op[2])
        step(store, cfg, op, orders[op[1] % len(orders)][0], at)
    assert kpi.refresh_facts(store, cfg, now=at)["mode"] in ("incremental", "none")
    _run["clock"] = at + timedelta(days=3)
    with store.session() as s:
        created = sorted(s.execute(sa.text("SELECT created_at FROM orders")).scalars())
    from ffctl.core.models import UTCDateTime

    created = [
        UTCDateTime().process_result_value(c, None)
        if isinstance(c, str)
        else (c if c.tzinfo else c.replace(tzinfo=timezone.utc))
        for c in created
    ]
    compare(store, cfg, at, created)


def test_schema_0007_upgrades_and_downgrades(store, example_config):
    """Down to 0005 the visit facts and node_fact.owner go; back up, the next refresh rebuilds
    every fact (the upgrade forgets the last refresh) and `report sla` reads them again."""
    from alembic import command

    from ffctl.core import kpi, workflow

    cfg = example_config
    at = START
    with store.session(write=True) as s:
        open_orders(s, cfg, [("M1", [("A", 1)], 5), ("M2", [("B", 2)], 4)], at=at)
        workflow.complete(s, cfg, "M1", at=at + timedelta(hours=2), actor="alice")  # late: a breach
    now = at + timedelta(hours=3)
    assert kpi.refresh_facts(store, cfg, now=now)["mode"] == "full"
    with store.session() as s:
        before = kpi.sla_report(s, cfg, now=now, source="facts")
    assert before == _tasks_sla(store, cfg, now)

    command.downgrade(store._alembic_config(), "0005")
    assert store.current_revision() == "0005"
    with store.session() as s:
        tables = set(sa.inspect(s.connection()).get_table_names())
        columns = {c["name"] for c in sa.inspect(s.connection()).get_columns("node_fact")}
    assert "visit_fact" not in tables and "owner" not in columns and "order_fact" in tables

    store.upgrade()
    assert store.current_revision() == store.head_revision()
    with store.session() as s:
        assert s.execute(sa.text("SELECT COUNT(*) FROM visit_fact")).scalar_one() == 0
        assert s.execute(sa.text("SELECT event_id FROM fact_state")).scalar_one() is None
    assert kpi.refresh_facts(store, cfg, now=now)["mode"] == "full"
    with store.session() as s:
        assert kpi.sla_report(s, cfg, now=now, source="facts") == before
        # the late credit review, and the allocation it runs now (an automatic node: no owner)
        assert s.execute(
            sa.text("SELECT owner FROM node_fact WHERE order_id = 'M1' ORDER BY task_id")
        ).scalars().all() == ["finance_reviewer", None]


def _tasks_sla(store, cfg, now):
    from ffctl.core import kpi

    with store.session() as s:
        return kpi.sla_report(s, cfg, now=now, source="tasks")


def test_a_calendar_change_rebuilds_the_stored_lateness(store, example_config):
    """A stopped breached visit's lateness is stored in the node's calendar: changing the calendar
    rebuilds the facts, and `report sla` counts the new business time, as the task history does."""
    import dataclasses

    from ffctl.core import kpi, workflow

    cfg = example_config
    at = START
    with store.session(write=True) as s:
        open_orders(s, cfg, [("M1", [("A", 1)], 5), ("M2", [("B", 2)], 4)], at=at)
        workflow.complete(s, cfg, "M1", at=at + timedelta(hours=2), actor="alice")  # late: stored
    now = at + timedelta(hours=3)  # M2 still running past its deadline: counted at report time
    kpi.refresh_facts(store, cfg, now=now)
    with store.session() as s:
        before = kpi.sla_report(s, cfg, now=now, source="facts")
        stored = s.execute(sa.text("SELECT late FROM node_fact WHERE late IS NOT NULL")).scalars().all()
    assert before == _tasks_sla(store, cfg, now) and len(stored) == 1

    office = cfg.calendars["office"]
    short = dataclasses.replace(office, hours={**office.hours, 0: ((9 * 60, 10 * 60),)})  # Mondays 09:00-10:00
    changed = dataclasses.replace(cfg, calendars={**cfg.calendars, "office": short})
    assert kpi.refresh_facts(store, changed, now=now)["mode"] == "full"
    with store.session() as s:
        after = kpi.sla_report(s, changed, now=now, source="facts")
    assert after == _tasks_sla(store, changed, now)
    review = next(r for r in after if r["node"] == "credit_review")
    assert review["late_p50_seconds"] != next(r for r in before if r["node"] == "credit_review")["late_p50_seconds"]
