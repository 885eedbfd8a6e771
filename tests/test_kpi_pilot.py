"""`report kpi --by workflow` (a pilot against the rest) and `[kpi.baseline]` (baseline → actual →
target), through the CLI on both backends.

The history (Monday 2026-11-23, Asia/Shanghai; example config: b2b orders from the east take the
pilot workflow credit_review → allocation → dispatch, the others the standard one):

SO-P1 pilot:    credit 09:00-09:10, allocated 09:11, shipped 10:00 (cycle 1 h)
SO-P2 pilot:    credit 09:00-09:20, allocated 09:21, shipped 11:00 (cycle 2 h)
SO-S1 standard: credit 09:00-10:00 (30 min office SLA: breached), allocated 10:01, wave_pick
                10:01-10:30, pack_check 10:30-10:45, shipped 12:00 (cycle 3 h)
SO-S2 standard: waits at credit_review.
"""

from __future__ import annotations

import csv
import io

import pytest
from helpers import cli_json, cli_ok, import_csv, open_shop

DAY = "2026-11-23T{}:00+08:00"
NOW = DAY.format("13:00")
BASELINE = """
[kpi.baseline]
order_confirmation_minutes = 45
on_time_shipping = 0.9
sla_attainment = 0.7
"""


def pilot_history(ws) -> None:
    open_shop(ws, now=DAY.format("09:00"))
    import_csv(
        ws,
        "orders",
        "order_id,line_no,customer,sku,qty,channel,region\n"
        "SO-P1,1,C-EAST,SKU-0001,1,b2b,east\nSO-P2,1,C-EAST,SKU-0001,1,b2b,east\n"
        "SO-S1,1,C-WEST,SKU-0001,1,web,west\nSO-S2,1,C-WEST,SKU-0001,1,web,west\n",
        now=DAY.format("09:00"),
    )
    cli_ok(ws, "advance", "SO-P1", now=DAY.format("09:10"), user="alice")
    cli_ok(ws, "allocate", "SO-P1", now=DAY.format("09:11"))
    cli_ok(ws, "advance", "SO-P2", now=DAY.format("09:20"), user="alice")
    cli_ok(ws, "allocate", "SO-P2", now=DAY.format("09:21"))
    cli_ok(ws, "ship", "SO-P1", now=DAY.format("10:00"), user="frank")
    cli_ok(ws, "advance", "SO-S1", now=DAY.format("10:00"), user="bob")
    cli_ok(ws, "allocate", "SO-S1", now=DAY.format("10:01"))
    cli_ok(ws, "advance", "SO-S1", now=DAY.format("10:30"), user="frank")
    cli_ok(ws, "advance", "SO-S1", now=DAY.format("10:45"), user="grace")
    cli_ok(ws, "ship", "SO-P2", now=DAY.format("11:00"), user="frank")
    cli_ok(ws, "ship", "SO-S1", now=DAY.format("12:00"), user="grace")


def pick(rows, kpi, group):
    found = [r for r in rows if r["kpi"] == kpi and r["group"] == group]
    assert len(found) == 1, (kpi, group, rows)
    return found[0]


def test_kpi_by_workflow_compares_the_pilot_with_the_rest(workspace):
    pilot_history(workspace)
    rows = cli_json(workspace, "report", "kpi", "--by", "workflow", now=NOW)
    assert {r["group"] for r in rows if r["kpi"] != "bottleneck"} == {"pilot", "standard"}
    conf_pilot, conf_std = (pick(rows, "order_confirmation_minutes", g) for g in ("pilot", "standard"))
    assert (conf_pilot["count"], conf_pilot["actual"], conf_pilot["met"]) == (2, 15.0, True)
    assert (conf_std["count"], conf_std["actual"], conf_std["met"]) == (1, 60.0, False)
    cycle = {g: pick(rows, "cycle_time_hours", g) for g in ("pilot", "standard")}
    assert (cycle["pilot"]["count"], cycle["pilot"]["actual"]) == (2, 1.5)
    assert (cycle["standard"]["count"], cycle["standard"]["actual"]) == (1, 3.0)
    # decided visits: the pilot's 2 credit reviews, 2 allocations, 2 dispatches, all in time; the
    # standard's SO-S1 credit review (late), allocation, pick, pack, dispatch (SO-S2 still waits)
    sla = {g: pick(rows, "sla_attainment", g) for g in ("pilot", "standard")}
    assert (sla["pilot"]["count"], sla["pilot"]["actual"]) == (6, 1.0)
    assert (sla["standard"]["count"], sla["standard"]["actual"]) == (5, 0.8)
    assert [r["node"] for r in rows if r["kpi"] == "bottleneck"] == ["credit_review"]

    table = cli_ok(workspace, "report", "kpi", "--by", "workflow", "--format", "table", now=NOW).stdout
    assert "workflow" in table and "pilot" in table and "standard" in table
    assert "baseline" not in table  # no [kpi.baseline]: no column for it


def test_kpi_by_workflow_after_the_facts_were_built(workspace):
    """The workflow cut reads the order's own workflow: facts built before the cut serve it as they are."""
    pilot_history(workspace)
    cli_ok(workspace, "report", "kpi", now=NOW)
    rows = cli_json(
        workspace, "report", "kpi", "--by", "workflow", "--from", "2026-11-23", "--to", "2026-11-23", now=NOW
    )
    assert pick(rows, "order_confirmation_minutes", "pilot")["count"] == 2
    empty = cli_json(workspace, "report", "kpi", "--by", "workflow", "--from", "2026-11-24", now=NOW)
    assert [(r["kpi"], r["node"]) for r in empty] == [("bottleneck", None)]
    r = workspace.run("report", "kpi", "--by", "workflow", "--from", "2026-11-24", "--format", "table", now=NOW)
    assert r.exit_code == 0 and "No orders: orders created since 2026-11-24 00:00 (Asia/Shanghai)." in r.stderr
    r = workspace.run("report", "kpi", "--by", "workflow", "--from", "2026-11-24", "--to", "2026-11-23", now=NOW)
    assert r.exit_code == 2 and "--to '2026-11-23' is not after --from '2026-11-24'" in r.stderr


def test_baseline_column_in_table_json_csv_and_dashboard(workspace):
    with workspace.config_path.open("a", encoding="utf-8") as f:
        f.write(BASELINE)
    pilot_history(workspace)
    rows = cli_json(workspace, "report", "kpi", now=NOW)
    conf = pick(rows, "order_confirmation_minutes", "all")
    assert (conf["baseline"], conf["actual"], conf["target"]) == (45.0, 20.0, 30.0)
    assert pick(rows, "on_time_shipping", "all")["baseline"] == 0.9
    assert pick(rows, "sla_attainment", "all")["baseline"] == 0.7
    assert pick(rows, "allocation_minutes", "all")["baseline"] is None  # not in [kpi.baseline]
    assert pick(rows, "bottleneck", "all")["baseline"] is None
    by_workflow = cli_json(workspace, "report", "kpi", "--by", "workflow", now=NOW)
    assert pick(by_workflow, "order_confirmation_minutes", "pilot")["baseline"] == 45.0

    out = cli_ok(workspace, "report", "kpi", "--format", "csv", now=NOW).stdout
    header = next(csv.reader(io.StringIO(out)))
    assert header[:5] == ["kpi", "group", "baseline", "actual", "target"]

    table = cli_ok(workspace, "report", "kpi", "--format", "table", now=NOW).stdout
    line = next(ln for ln in table.splitlines() if "order_confirmation_minutes" in ln)
    assert line.index("45.0 min") < line.index("20.0 min") < line.index("30.0 min")  # baseline → actual → target
    assert "baseline: where the KPI stood before" in table
    narrow = workspace.run("report", "kpi", "--format", "table", now=NOW, columns=80)
    assert narrow.exit_code == 0 and "45.0 min" in narrow.stdout and "order_confirmation_minutes" in narrow.stdout
    assert max(len(ln) for ln in narrow.stdout.splitlines()) <= 80 and "…" not in narrow.stdout

    html = cli_ok(workspace, "report", "dashboard", "--out", "-", now=NOW).stdout
    assert "baseline 45.0 min → 20.0 min → target 30.0 min" in html
    assert "baseline 90.00% → " in html and "baseline 70.00% → " in html
    assert html.count('class="meta baseline"') == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("[kpi.baseline]\non_time_shipping = 93\n", "kpi.baseline.on_time_shipping: rates are fractions from 0 to 1"),
        ("[kpi.baseline]\norder_confirmation_minute = 40\n", "kpi.baseline: unknown KPI 'order_confirmation_minute'"),
        ("[kpi.baseline]\ncycle_time_hours = -1\n", "kpi.baseline.cycle_time_hours: must be more than 0 hours"),
        ('[kpi.baseline]\nperfect_order = "high"\n', "kpi.baseline.perfect_order"),
        ("[kpi.baselines]\nperfect_order = 0.9\n", "unknown key 'baselines'"),
    ],
)
def test_config_check_validates_the_baseline(workspace, text, message):
    with workspace.config_path.open("a", encoding="utf-8") as f:
        f.write("\n" + text)
    r = workspace.run("config", "check")
    assert r.exit_code == 2, r.output
    assert message in r.stderr, r.stderr
    r = workspace.run("report", "kpi")
    assert r.exit_code == 2 and message in r.stderr


def test_config_check_shows_the_baseline(workspace):
    with workspace.config_path.open("a", encoding="utf-8") as f:
        f.write(BASELINE)
    out = cli_ok(workspace, "config", "check").stdout
    section = out.split("kpi baseline", 1)[1]
    assert "order_confirmation_minutes  45 minutes" in section and "on_time_shipping" in section and "90%" in section


def test_config_diff_names_a_changed_baseline(workspace):
    """`config diff` (step 2 of the loop) sees [kpi.baseline] as the config's own terms."""
    old = workspace.write("old.toml", workspace.config_path.read_text(encoding="utf-8") + BASELINE)
    new = workspace.write(
        "new.toml",
        workspace.config_path.read_text(encoding="utf-8")
        + BASELINE.replace("on_time_shipping = 0.9", "on_time_shipping = 0.93"),
    )
    rows = cli_json(workspace, "config", "diff", old, new)
    assert [(r["section"], r["name"], r["old"], r["new"]) for r in rows] == [
        ("kpi.baseline", "on_time_shipping", 0.9, 0.93)
    ]
