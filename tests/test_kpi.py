"""KPIs against hand-built histories with known answers, on SQLite and PostgreSQL.

The main history (all created Monday 2026-03-02 09:00 Asia/Shanghai = 01:00 UTC; minutes below
are from then, deadlines are written out so calendars play no part):

O1 east/web/oscar/C1, A x2: credit 0-20, tech skipped, alloc 20-25, pick 25-85, pack 85-115,
   dispatch 115-600 (shipped 19:00 local Mar 2, promised Mar 2: on time), delivered, no picks:
   perfect. Confirmation 20, allocation 5, cycle 10 h.
O2 west/web/oscar/C2, B x1: credit 0-60 (deadline 30: breached, reminded + escalated), alloc
   60-80 (deadline 70: breached), pick, pack, dispatch; shipped +30 h (Mar 3 local) promised
   Mar 2: late; delivered damaged. Confirmation 60, allocation 20, cycle 30 h.
O3 east/b2b/pat/C1, A x3 + C x1: credit 0-10, tech 10-40 rejected, credit 40-50, tech 50-100,
   alloc 100-130 (deadline 110: breached), pick, pack, dispatch; shipped +20 h = 21:00 UTC
   Mar 2 = 05:00 local Mar 3, promised Mar 2: late locally (on time in UTC); picked A x2 (wrong
   qty) and C x1 (right); delivered, no issue: not perfect. Confirmation 10, allocation 120,
   cycle 20 h.
O4 (no region; customer C3 in north)/no channel/pat, B x1: credit 0-15 auto_approved, tech
   skipped, alloc 15-20, pick entered 20, still open, deadline 140, breached. Confirmation 15,
   allocation 5.
now = +3000 min.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from helpers import KPI_BASE as BASE
from helpers import KPI_NOW as NOW
from helpers import KPI_NOW_TEXT as NOW_TEXT
from helpers import insert_kpi_history as insert_history
from helpers import kpi_flow as flow
from helpers import kpi_time as T

from ffctl.core.models import Customer, Delivery, Order, PickLine, Task


def report(store, cfg, by=None, start=None, end=None):
    from ffctl.core.kpi import kpi_report, parse_period, refresh_facts

    refresh_facts(store, cfg, cuts=(by,), now=NOW)
    with store.session() as s:
        return kpi_report(s, cfg, now=NOW, period=parse_period(start, end, cfg.timezone), by=by)


def pick(rows, kpi, group="all"):
    found = [r for r in rows if r["kpi"] == kpi and r["group"] == group]
    assert len(found) == 1, (kpi, group, rows)
    return found[0]


@pytest.fixture
def history(store):
    insert_history(store)
    return store


def test_whole_history_matches_hand_computed_values(history, example_config):
    rows = report(history, example_config)
    conf = pick(rows, "order_confirmation_minutes")
    assert conf["count"] == 4 and conf["actual"] == pytest.approx(17.5) and conf["p90"] == pytest.approx(48.0)
    assert conf["target"] == 30 and conf["gap"] == pytest.approx(-12.5) and conf["met"] is True
    alloc = pick(rows, "allocation_minutes")  # 5, 5, 20, 120
    assert alloc["count"] == 4 and alloc["actual"] == pytest.approx(12.5) and alloc["p90"] == pytest.approx(90.0)
    assert alloc["gap"] == pytest.approx(2.5) and alloc["met"] is False
    acc = pick(rows, "pick_accuracy")
    assert (acc["count"], acc["actual"], acc["met"]) == (2, 0.5, False)
    assert acc["gap"] == pytest.approx(0.5 - 0.999)
    on_time = pick(rows, "on_time_shipping")  # O3 is late in Asia/Shanghai although on time in UTC
    assert on_time["count"] == 3 and on_time["actual"] == pytest.approx(1 / 3, abs=1e-6)
    perfect = pick(rows, "perfect_order")
    assert perfect["count"] == 3 and perfect["actual"] == pytest.approx(1 / 3, abs=1e-6)
    cycle = pick(rows, "cycle_time_hours")  # 10, 20, 30 h
    assert cycle["count"] == 3 and cycle["actual"] == pytest.approx(20.0) and cycle["p90"] == pytest.approx(28.0)
    assert cycle["met"] is True and cycle["unit"] == "hours"
    sla = pick(rows, "sla_attainment")  # 20 decided visits (rejected included), 17 within
    assert sla["count"] == 20 and sla["actual"] == pytest.approx(0.85)
    bottleneck = pick(rows, "bottleneck")
    assert bottleneck["node"] == "wave_pick" and bottleneck["count"] == 1
    assert bottleneck["breach_share"] == pytest.approx(0.25)
    assert bottleneck["over_sla_share"] == pytest.approx(2860 / 2920, abs=1e-6)
    assert "over_sla_seconds" not in bottleneck  # a sum of lateness no reader can use: report sla has p50/p90
    assert [r["kpi"] for r in rows] == [
        "order_confirmation_minutes",
        "allocation_minutes",
        "pick_accuracy",
        "on_time_shipping",
        "fill_rate",
        "perfect_order",
        "cycle_time_hours",
        "sla_attainment",
        "return_rate",
        "bottleneck",
    ]


def test_by_region_uses_the_customers_region_when_the_order_has_none(history, example_config):
    rows = report(history, example_config, by="region")
    assert {r["group"] for r in rows if r["kpi"] != "bottleneck"} == {"east", "west", "north"}
    assert pick(rows, "on_time_shipping", "east")["actual"] == pytest.approx(0.5)
    assert pick(rows, "on_time_shipping", "west")["actual"] == 0.0
    north = pick(rows, "on_time_shipping", "north")
    assert north["count"] == 0 and north["actual"] is None and north["met"] is None
    assert pick(rows, "order_confirmation_minutes", "east")["actual"] == pytest.approx(15.0)
    assert pick(rows, "order_confirmation_minutes", "north")["actual"] == pytest.approx(15.0)
    # one bottleneck for the whole selection, whatever the cut
    assert [(r["group"], r["node"]) for r in rows if r["kpi"] == "bottleneck"] == [("all", "wave_pick")]
    east = pick(rows, "sla_attainment", "east")  # O1 5/5, O3 7/8
    assert (east["count"], east["actual"]) == (13, pytest.approx(12 / 13))


@pytest.mark.parametrize(
    "by, group, kpi, count, actual",
    [
        ("product", "A", "pick_accuracy", 1, 0.0),
        ("product", "C", "pick_accuracy", 1, 1.0),
        ("product", "A", "on_time_shipping", 2, 0.5),
        ("product", "B", "on_time_shipping", 1, 0.0),
        ("category", "widgets", "on_time_shipping", 3, 1 / 3),
        ("category", "gadgets", "pick_accuracy", 1, 1.0),
        ("category", "widgets", "pick_accuracy", 1, 0.0),
        ("channel", "web", "perfect_order", 2, 0.5),
        ("channel", None, "order_confirmation_minutes", 1, 15.0),
        ("team", "oscar", "order_confirmation_minutes", 2, 40.0),
        ("team", "pat", "allocation_minutes", 2, 62.5),
        ("customer", "C1", "cycle_time_hours", 2, 15.0),
        ("customer", "C3", "sla_attainment", 2, 1.0),
        ("node", "credit_review", "sla_attainment", 5, 0.8),
        ("node", "allocation", "sla_attainment", 4, 0.5),
        ("node", "tech_confirm", "sla_attainment", 2, 1.0),
        ("node", "tech_confirm", "on_time_shipping", 1, 0.0),
        ("node", "credit_review", "on_time_shipping", 3, 1 / 3),
        ("node", "credit_review", "cycle_time_hours", 5, 0.25),  # time in node: 10, 10, 15, 20, 60 min
        ("week", "2026-03-02", "on_time_shipping", 3, 1 / 3),
    ],
)
def test_each_cut(history, example_config, by, group, kpi, count, actual):
    row = pick(report(history, example_config, by=by), kpi, group)
    assert row["count"] == count
    assert row["actual"] == pytest.approx(actual, abs=1e-6)


def test_node_cut_names_one_bottleneck_over_all_nodes(history, example_config):
    rows = report(history, example_config, by="node")
    assert [(r["group"], r["node"]) for r in rows if r["kpi"] == "bottleneck"] == [("all", "wave_pick")]


def test_period_and_week_cut(store, example_config):
    insert_history(store, with_o5=True)
    weeks = report(store, example_config, by="week")
    assert pick(weeks, "order_confirmation_minutes", "2026-02-23")["actual"] == pytest.approx(5.0)
    assert pick(weeks, "order_confirmation_minutes", "2026-03-02")["count"] == 4
    assert pick(report(store, example_config, start="2026-03-02"), "order_confirmation_minutes")["count"] == 4
    only_o5 = pick(report(store, example_config, end="2026-03-01"), "order_confirmation_minutes")
    assert (only_o5["count"], only_o5["actual"]) == (1, pytest.approx(5.0))
    # a time bound: O5 was created at 23:00 local, the others at 09:00 the next day
    later = report(store, example_config, start="2026-03-01T23:30", end="2026-03-02 09:00:01")
    assert pick(later, "order_confirmation_minutes")["count"] == 4
    assert (
        pick(report(store, example_config, by="week", start="2026/03/02"), "order_confirmation_minutes", "2026-03-02")[
            "count"
        ]
        == 4
    )


def test_no_deliveries_and_no_orders_give_null_not_a_crash(store, example_config):
    rows = report(store, example_config)
    assert all(r["actual"] is None for r in rows)
    assert pick(rows, "perfect_order")["count"] == 0 and pick(rows, "bottleneck")["node"] is None
    assert [r["kpi"] for r in report(store, example_config, by="region")] == ["bottleneck"]

    def undeliver(s):
        s.execute(sa.delete(Delivery.__table__))
        s.execute(sa.update(Order.__table__).values(delivered_at=None, delivery_issue=None))

    insert_history(store, extra=undeliver)
    perfect = pick(report(store, example_config), "perfect_order")
    assert perfect["count"] == 0 and perfect["actual"] is None and perfect["gap"] is None


def test_all_late(store, example_config):
    def everything_late(s):
        s.execute(sa.update(Order.__table__).values(promised_ship_date=date(2026, 2, 1)))

    insert_history(store, extra=everything_late)
    rows = report(store, example_config)
    assert pick(rows, "on_time_shipping")["actual"] == 0.0
    assert pick(rows, "perfect_order")["actual"] == 0.0
    assert pick(rows, "on_time_shipping")["gap"] == pytest.approx(-0.98)


def test_partial_shipment_and_wrong_sku_are_not_perfect(store, example_config):
    def picks(s):
        # O1 shipped 1 of its 2 units and the other was cancelled (a partial shipment, not a pick
        # error); O2 picked the wrong SKU
        s.execute(
            sa.insert(PickLine.__table__),
            [
                {"order_id": "O1", "line_no": 1, "sku": "A", "qty": 1, "error": None},
                {"order_id": "O2", "line_no": 1, "sku": "A", "qty": 1, "error": "wrong_sku"},
            ],
        )
        s.execute(sa.text("UPDATE order_line SET cancelled = 1 WHERE order_id = 'O1'"))

    insert_history(store, extra=picks)
    rows = report(store, example_config)
    assert pick(rows, "perfect_order")["actual"] == 0.0
    acc = pick(rows, "pick_accuracy")
    assert (acc["count"], acc["actual"]) == (4, 0.5)


def test_sla_report_per_node(history, example_config):
    from ffctl.core.kpi import sla_report

    with history.session() as s:
        rows = {r["node"]: r for r in sla_report(s, example_config, now=NOW)}
    assert list(rows) == ["credit_review", "tech_confirm", "allocation", "wave_pick", "pack_check", "dispatch"]
    credit = rows["credit_review"]
    assert (
        credit["completed"],
        credit["within_sla"],
        credit["breaches"],
        credit["escalations"],
        credit["reminders"],
        credit["auto_actions"],
    ) == (5, 4, 1, 1, 1, 1)
    assert credit["attainment"] == pytest.approx(0.8) and credit["met"] is False
    assert credit["p50_seconds"] == pytest.approx(15 * 60) and credit["sla_seconds"] == 1800
    # lateness is business time past the deadline: 09:30-10:00 Monday in office hours
    assert credit["late_p50_seconds"] == pytest.approx(30 * 60, abs=1) == credit["late_p90_seconds"]
    pick_node = rows["wave_pick"]
    assert (pick_node["completed"], pick_node["breaches"], pick_node["escalations"]) == (3, 1, 2)
    assert pick_node["bottleneck"] is True and credit["bottleneck"] is False
    # open since its deadline Mon 11:20: warehouse hours to Wed 11:00 = 8h40m + 12h + 3h
    assert pick_node["late_p50_seconds"] == pytest.approx((520 + 720 + 180) * 60, abs=1)
    alloc = rows["allocation"]  # no calendar: 10 and 20 minutes of wall-clock time
    assert alloc["breaches"] == 2 and alloc["late_p50_seconds"] == pytest.approx(900, abs=1)
    assert alloc["late_p90_seconds"] == pytest.approx(1140, abs=1)
    assert "over_sla_seconds" not in credit
    assert rows["tech_confirm"]["completed"] == 2 and rows["dispatch"]["attainment"] == 1.0


def test_percentiles_agree_with_python_for_many_values(store, example_config):
    """The SQLite rank pick and PostgreSQL percentile_cont both interpolate like statistics.quantiles."""
    import statistics

    minutes = [3, 7, 7, 12, 19, 26, 31, 44, 58, 90, 91, 130, 240]
    customers = [{"customer": "C", "name": "C"}]
    orders, tasks = [], []
    for i, m in enumerate(minutes):
        oid = f"P{i:02d}"
        orders.append({"order_id": oid, "customer": "C", "created_at": BASE, "status": "open"})
        tasks += flow(oid, [("credit_review", 0, m, "completed", 30)])
    with store.session(write=True) as s:
        s.execute(sa.insert(Customer.__table__), customers)
        s.execute(sa.insert(Order.__table__), orders)
        s.execute(sa.insert(Task.__table__), tasks)
    row = pick(report(store, example_config), "order_confirmation_minutes")
    q = statistics.quantiles(minutes, n=10, method="inclusive")
    assert row["actual"] == pytest.approx(statistics.median(minutes))
    assert row["p90"] == pytest.approx(q[8])


def test_parse_period_rejects_bad_bounds():
    from ffctl.core.kpi import parse_period

    with pytest.raises(ValueError, match="--from"):
        parse_period("yesterday", None, "UTC")
    with pytest.raises(ValueError, match="not after"):
        parse_period("2026-03-02", "2026-03-01 12:00", "UTC")
    p = parse_period("2026-03-02", "2026-03-02", "Asia/Shanghai")
    assert p.end - p.start == timedelta(days=1)
    assert p.start == datetime(2026, 3, 1, 16, 0, tzinfo=timezone.utc)


def test_utc_offsets_find_daylight_saving_changes():
    from ffctl.core.kpi import utc_offsets

    offsets = utc_offsets(
        "Europe/Berlin", datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 12, 31, tzinfo=timezone.utc)
    )
    assert [(t and t.isoformat(), m) for t, m in offsets] == [
        (None, 60),
        ("2026-03-29T01:00:00+00:00", 120),
        ("2026-10-25T01:00:00+00:00", 60),
    ]


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_json_csv_and_table(workspace):
    insert_history(workspace.store())
    r = workspace.run("report", "kpi", "--by", "region", "--format", "json", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {"kpi", "group", "actual", "target", "gap", "count"} <= set(rows[0])
    assert pick(rows, "on_time_shipping", "east")["actual"] == 0.5

    r = workspace.run("report", "kpi", "--format", "csv", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert table[0]["kpi"] == "order_confirmation_minutes" and table[0]["gap"] == "-12.5"
    assert table[-1]["kpi"] == "bottleneck" and table[-1]["node"] == "wave_pick"

    r = workspace.run("report", "kpi", "--format", "table", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    assert "on_time_shipping" in r.stdout and "33.33%" in r.stdout and "Bottleneck: wave_pick" in r.stdout
    assert "┃" in r.stdout

    r = workspace.run("report", "sla", "--format", "table", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    assert "wave_pick *" in r.stdout and "* bottleneck: wave_pick" in r.stdout and "80.00%" in r.stdout
    r = workspace.run("report", "sla", "--format", "json", now=NOW_TEXT)
    assert json.loads(r.stdout)[0]["node"] == "credit_review"


def test_tables_fit_an_80_column_terminal_without_cutting_names(workspace):
    from rich.cells import cell_len

    insert_history(workspace.store())
    names = ("order_confirmation_minutes", "allocation_minutes", "on_time_shipping", "sla_attainment")
    for args in (("report", "kpi"), ("report", "kpi", "--by", "region"), ("report", "sla"), ("sla", "status")):
        r = workspace.run(*args, "--format", "table", now=NOW_TEXT, columns=80)
        assert r.exit_code == 0, r.output
        assert "…" not in r.stdout, r.stdout
        assert max(cell_len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
        rows = r.stdout.split()
        if args[1] == "kpi":
            assert all(name in rows for name in names), r.stdout
        else:
            assert {"credit_review", "wave_pick"} <= {w.strip("*") for w in rows}, r.stdout
    r = workspace.run("report", "kpi", "--format", "table", now=NOW_TEXT, columns=80)
    assert "┃" not in r.stdout  # the bar column makes way for the names
    r = workspace.run("report", "sla", "--format", "table", now=NOW_TEXT, columns=80)
    assert "Not shown, for the terminal's width: owner" in r.stderr
    r = workspace.run("report", "sla", "--format", "table", now=NOW_TEXT, columns=200)
    assert "owner" in r.stdout and "Not shown" not in r.stderr


def test_cli_refuses_bad_options(workspace):
    r = workspace.run("report", "kpi", "--by", "planet")
    assert r.exit_code == 2
    r = workspace.run("report", "kpi", "--from", "last tuesday")
    assert r.exit_code == 2 and "Error: --from 'last tuesday'" in r.stderr


def test_csv_neutralises_formulas(workspace):
    def evil(s):
        s.execute(
            sa.update(Order.__table__).where(Order.__table__.c.order_id == "O1").values(sales_rep="=HYPERLINK(1)")
        )
        s.execute(sa.update(Order.__table__).where(Order.__table__.c.order_id == "O2").values(sales_rep="@cmd"))

    insert_history(workspace.store(), extra=evil)
    r = workspace.run("report", "kpi", "--by", "team", "--format", "csv", now=NOW_TEXT)
    assert r.exit_code == 0, r.output
    groups = {row["group"] for row in csv.DictReader(io.StringIO(r.stdout))}
    assert {"'=HYPERLINK(1)", "'@cmd", "pat"} <= groups
    assert not any(g.startswith(("=", "@", "+")) for g in groups)
    assert "-0.499" in r.stdout  # negative numbers stay numbers


def test_reports_share_a_session_after_it_used_temporary_tables(history, example_config):
    """The dashboard runs several reports in one transaction; the facts table comes and goes."""
    from ffctl.core.kpi import kpi_report, refresh_facts, sla_report

    refresh_facts(history, example_config, cuts=(None, "week"), now=NOW)
    with history.session() as s:
        s.execute(sa.text("CREATE TEMP TABLE scratch AS SELECT 1 AS x"))
        first = kpi_report(s, example_config, now=NOW)
        weekly = kpi_report(s, example_config, now=NOW, by="week")
        nodes = sla_report(s, example_config, now=NOW)
    assert pick(first, "on_time_shipping")["count"] == 3
    assert pick(weekly, "on_time_shipping", "2026-03-02")["count"] == 3 and len(nodes) == 6


def test_rates_show_enough_decimals_to_tell_a_miss_from_the_target():
    from ffctl.core.kpi import percent_decimals

    assert percent_decimals(0.99899, 0.999) == 3  # 99.899% misses 99.900%
    assert percent_decimals(0.5, 0.999) == 2 and percent_decimals(0.999, 0.999) == 2
    assert percent_decimals(None, 0.95) == 2


# --- the facts behind the report -------------------------------------------------------------


def _fact_rows(store):
    with store.session() as s:
        orders = s.execute(sa.text("SELECT * FROM order_fact ORDER BY order_id")).all()
        nodes = s.execute(sa.text("SELECT * FROM node_fact ORDER BY task_id")).all()
    return [tuple(r) for r in orders], [tuple(r) for r in nodes]


def _rebuilt(store, cfg):
    """The facts a full rebuild writes, for comparing with what refreshes kept."""
    from ffctl.core.kpi import refresh_facts

    with store.session(write=True) as s:
        s.execute(sa.text("UPDATE fact_state SET event_id = NULL"))
    assert refresh_facts(store, cfg, now=NOW)["mode"] == "full"
    return _fact_rows(store)


def test_refresh_rewrites_only_what_changed_and_matches_a_rebuild(history, example_config):
    """A change made through ffctl (an audit event) reaches the report on the next refresh,
    which rewrites that order's facts only; the result is what a full rebuild gives."""
    from ffctl.core import workflow
    from ffctl.core.kpi import refresh_facts

    assert refresh_facts(history, example_config, now=NOW) == {"mode": "full", "orders": 4}
    assert refresh_facts(history, example_config, now=NOW) == {"mode": "none", "orders": 0}
    before = report(history, example_config)
    assert pick(before, "sla_attainment")["count"] == 20

    with history.session(write=True) as s:  # O4 leaves wave_pick at +300 (escalated then), past its deadline (140)
        assert workflow.complete(s, example_config, "O4", at=T(300), actor="wh") == "pack_check"
    assert refresh_facts(history, example_config, now=NOW) == {"mode": "incremental", "orders": 1}
    after = report(history, example_config)
    within = round(pick(before, "sla_attainment")["actual"] * 20)
    assert pick(after, "sla_attainment")["count"] == 21
    assert pick(after, "sla_attainment")["actual"] == pytest.approx(within / 21, abs=1e-6)
    kept = _fact_rows(history)
    assert kept == _rebuilt(history, example_config)


def test_a_customer_moving_region_moves_its_orders(history, example_config):
    """O4 has no region of its own: it follows its customer's, even after the facts were written."""
    from ffctl.core.kpi import refresh_facts

    assert pick(report(history, example_config, by="region"), "allocation_minutes", "north")["count"] == 1
    with history.session(write=True) as s:
        s.execute(sa.text("UPDATE customer SET region = '华南' WHERE customer = 'C3'"))
    assert refresh_facts(history, example_config, now=NOW)["mode"] == "incremental"
    rows = report(history, example_config, by="region")
    assert pick(rows, "allocation_minutes", "华南")["count"] == 1
    assert not [r for r in rows if r["group"] == "north"]


def test_a_new_time_zone_rebuilds_the_facts(history, example_config):
    """On-time compares local dates: O3 shipped 05:00 Mar 3 in Shanghai, 21:00 Mar 2 in UTC."""
    import dataclasses

    from ffctl.core.kpi import refresh_facts

    assert pick(report(history, example_config), "on_time_shipping")["actual"] == pytest.approx(1 / 3)
    utc = dataclasses.replace(example_config, timezone="UTC")
    assert refresh_facts(history, utc, now=NOW)["mode"] == "full"
    assert pick(report(history, utc), "on_time_shipping")["actual"] == pytest.approx(2 / 3)


def test_report_before_any_refresh_says_what_to_do(history, example_config):
    from ffctl.core.kpi import FactsNotReady, kpi_report

    with history.session() as s, pytest.raises(FactsNotReady, match="refresh_facts"):
        kpi_report(s, example_config, now=NOW)


@pytest.mark.parametrize("by", [None, "region", "team", "week", "customer"])
def test_indexed_and_generic_paths_agree(store, example_config, by):
    """Both backends answer single-valued cuts from per-cut indexes (OFFSET picks: on SQLite a
    prepared read per group, on PostgreSQL one LATERAL statement for all); the generic path
    (window functions, percentile_cont) must give the same numbers, with and without a period.
    A customer id with a quote and a colon rides through the bound parameters."""
    import random

    from ffctl.core import kpi

    rng = random.Random(7)
    customers = [
        {"customer": f"C{i}", "name": f"客户{i}", "region": rng.choice(["华东", "华南", None])} for i in range(5)
    ] + [{"customer": "C:5'x", "name": "客户5", "region": "华东"}]
    orders, tasks = [], []
    for i in range(120):
        oid = f"R{i:03d}"
        created = rng.randrange(0, 20000)
        shipped = created + rng.randrange(60, 5000) if rng.random() < 0.7 else None
        orders.append(
            {
                "order_id": oid,
                "customer": rng.choice([*(f"C{i}" for i in range(5)), "C:5'x"]),
                "created_at": T(created),
                "status": "shipped" if shipped else "open",
                "sales_rep": rng.choice(["pat", "oscar", None]),
                "shipped_at": T(shipped) if shipped else None,
                "promised_ship_date": date(2026, 3, 5),
            }
        )
        done = created + rng.choice([1, 5, 5, 9, 30, 61])
        tasks += flow(
            oid,
            [
                ("credit_review", created, done, "completed", created + 30),
                ("allocation", done, done + rng.randrange(1, 40), "completed", done + 10),
            ],
        )
    with store.session(write=True) as s:
        s.execute(sa.insert(Customer.__table__), customers)
        s.execute(sa.insert(Order.__table__), orders)
        s.execute(sa.insert(Task.__table__), tasks)
    for start, end in ((None, None), ("2026-03-03", "2026-03-10")):
        fast = report(store, example_config, by=by, start=start, end=end)
        with store.session() as s:
            rep = kpi._Report(s, example_config, now=NOW, period=kpi.parse_period(start, end, "Asia/Shanghai"), by=by)
            sums, times = rep._generic()
        for name, col in (
            ("order_confirmation_minutes", "conf"),
            ("allocation_minutes", "alloc"),
            ("cycle_time_hours", "cycle"),
        ):
            got = {r["group"]: (r["count"], r["actual"], r["p90"]) for r in fast if r["kpi"] == name and r["count"]}
            want = {
                ("all" if by is None else g): (n, kpi._round(p50, "minutes"), kpi._round(p90, "minutes"))
                for g, (n, p50, p90) in times[col].items()
            }
            assert got == want, name
        assert {r["group"]: r["count"] for r in fast if r["kpi"] == "on_time_shipping" and r["count"]} == {
            ("all" if by is None else g): v["shipped"] for g, v in sums.items() if v["shipped"]
        }


def test_lateness_in_sql_is_business_time_across_clock_changes(store, tmp_path):
    """`report sla` counts lateness in SQL from the calendar's day table: it must agree with the
    calendar itself, here an office in Berlin across both 2026 clock changes."""
    import random
    import statistics

    from ffctl.core.config import load_config
    from ffctl.core.kpi import sla_report
    from tests.conftest import EXAMPLE_CONFIG

    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace(
        '[calendars.office]\ntimezone = "Asia/Shanghai"', '[calendars.office]\ntimezone = "Europe/Berlin"'
    )
    (tmp_path / "berlin.toml").write_text(text, encoding="utf-8")
    cfg = load_config(tmp_path / "berlin.toml")
    assert cfg.calendars["office"].timezone == "Europe/Berlin"
    cal = cfg.calendar("credit_review")
    rng = random.Random(16)
    now = datetime(2026, 11, 3, 12, 0, tzinfo=timezone.utc)
    orders, tasks, late = [], [], []
    for i in range(60):
        deadline = datetime(2026, 3, 20, tzinfo=timezone.utc) + timedelta(seconds=rng.uniform(0, 225 * 86400))
        stop = None if i % 10 == 0 else deadline + timedelta(seconds=rng.uniform(1, 9 * 86400))
        late.append(cal.between(deadline, stop or now))
        orders.append(
            {"order_id": f"B{i:02d}", "customer": "C", "created_at": deadline - timedelta(hours=1), "status": "open"}
        )
        tasks.append(
            {
                "order_id": f"B{i:02d}",
                "workflow": "standard",
                "node": "credit_review",
                "seq": 0,
                "status": "open" if stop is None else "done",
                "entered_at": deadline - timedelta(hours=1),
                "sla_seconds": 1800,
                "deadline": deadline,
                "completed_at": stop,
                "outcome": None if stop is None else "completed",
            }
        )
    with store.session(write=True) as s:
        s.execute(sa.insert(Customer.__table__), [{"customer": "C", "name": "C"}])
        s.execute(sa.insert(Order.__table__), orders)
        s.execute(sa.insert(Task.__table__), tasks)
    with store.session() as s:
        credit = next(r for r in sla_report(s, cfg, now=now) if r["node"] == "credit_review")
    assert credit["breaches"] == 60
    q = statistics.quantiles(late, n=10, method="inclusive")
    assert credit["late_p50_seconds"] == pytest.approx(statistics.median(late), abs=0.01)
    assert credit["late_p90_seconds"] == pytest.approx(q[8], abs=0.01)


def test_a_role_that_cannot_build_the_cut_indexes_reports_the_same_numbers(tmp_path, db_url):
    """The per-cut indexes are built by the first report that may build them. PostgreSQL: a role
    that does not own the facts (as docs/operations.md advises for ffctl) cannot; its reports
    take the generic paths and show the same numbers, and the owner's next report builds the
    indexes. SQLite (no roles): the first report cut by region builds them."""
    import json
    import sqlite3
    import uuid
    from datetime import datetime, timezone

    from conftest import Workspace, _pg_admin, require_pg

    from ffctl.core.demo import build_demo

    end = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    result = build_demo(tmp_path / "demo", orders=60, days=3, now=end, db_url=db_url)
    owner = Workspace(path=result.directory, db_url=db_url, config_path=result.config_path)
    args = ("report", "kpi", "--by", "region", "--format", "json")
    indexes = "ix_order_fact_by_region_sums", "ix_order_fact_by_region_alloc", "ix_order_fact_by_region_cycle"

    def rows(ws) -> list[dict]:
        r = ws.run(*args, now=end.isoformat())
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    if db_url.startswith("sqlite"):  # no roles: the first report cut by region builds them
        path = db_url.split("///", 1)[1]
        with sqlite3.connect(path) as conn:
            for name in indexes:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
        seen = rows(owner)
        with sqlite3.connect(path) as conn:
            assert len(conn.execute(f"SELECT name FROM sqlite_master WHERE name IN {indexes}").fetchall()) == 3
        assert rows(owner) == seen
        return
    require_pg()
    role = f"ffctl_rw_{uuid.uuid4().hex[:8]}"
    database = db_url.rsplit("/", 1)[1]
    _pg_admin(f"CREATE ROLE {role} LOGIN")
    _pg_admin(f"GRANT CONNECT ON DATABASE {database} TO {role}")
    import psycopg

    owner_dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        for name in indexes:  # the demo's dashboard built them
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")
    try:
        writer = Workspace(
            path=owner.path,
            db_url=db_url.replace("postgresql+psycopg://root@", f"postgresql+psycopg://{role}@"),
            config_path=owner.config_path,
        )

        def built() -> int:
            with psycopg.connect(owner_dsn) as conn:
                return conn.execute(
                    "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ANY(%s)",
                    (list(indexes),),
                ).fetchone()[0]

        seen = rows(writer)  # refreshes the facts (it may write them), builds no index
        assert built() == 0
        assert rows(owner) == seen
        assert built() == 3
        assert rows(writer) == seen  # now through the owner's indexes
    finally:
        with psycopg.connect(owner_dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
        _pg_admin(f"DROP OWNED BY {role}")
        _pg_admin(f"DROP ROLE IF EXISTS {role}")
