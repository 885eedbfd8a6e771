"""SPEC 9.7: `report flow`, the paths orders actually took (directly-follows counts with the
median business time, rework, variants), on SQLite and PostgreSQL, driven through the CLI."""

from __future__ import annotations

import json

import pytest

from tests.helpers import cli_json, cli_ok, flow_at, flow_history, import_csv

NOW = "2026-12-04T00:00:00+08:00"


@pytest.fixture
def history(workspace):
    """flow_history, and N1: created 17:50 on Wednesday, its credit review done 09:10 on Thursday
    (20 minutes of office hours, 15h20m of wall-clock time)."""
    flow_history(workspace)
    import_csv(
        workspace,
        "orders",
        "order_id,line_no,customer,sku,qty,channel,created_at\nN1,1,C2,A,1,web,2026-12-02 17:50\n",
        now=flow_at("09:06", "2026-12-03T"),
    )
    cli_ok(workspace, "advance", "N1", now=flow_at("09:10", "2026-12-03T"), user="judy")
    return workspace


def test_flow_counts_edges_rework_and_variants(history):
    report = cli_json(history, "report", "flow", now=NOW)
    edges = {(e["from"], e["to"]): (e["count"], e["median_business_seconds"]) for e in report["edges"]}
    assert edges == {
        # P1 10m, CH1 19m, CH2 23m, N1 20m of office hours (its night is not counted): median 19.5m
        ("credit_review", "allocation"): (4, 1170.0),
        ("allocation", "dispatch"): (1, 1200.0),  # P1 (pilot), wall-clock: allocation has no calendar
        ("allocation", "wave_pick"): (1, 600.0),
        ("wave_pick", "pack_check"): (2, 1800.0),  # CH1 twice: before and after the reject
        ("pack_check", "wave_pick"): (1, 1800.0),  # the reject back
        ("pack_check", "dispatch"): (1, 1800.0),
    }
    assert [(e["from"], e["to"]) for e in report["edges"]][:3] == [
        ("credit_review", "allocation"),
        ("allocation", "wave_pick"),
        ("allocation", "dispatch"),
    ]  # config order
    rework = {r["node"]: r for r in report["rework"]}
    assert rework["pack_check"] == {"node": "pack_check", "visits": 2, "orders": 1, "rejects": 1, "revisits": 1}
    assert rework["wave_pick"] == {"node": "wave_pick", "visits": 2, "orders": 1, "rejects": 0, "revisits": 1}
    assert rework["credit_review"]["visits"] == 5 and "tech_confirm" not in rework  # skipped visits are no visits
    assert report["orders"] == 5 and report["variants_total"] == 4 and report["other_orders"] == 0
    assert report["variants"] == [
        {"path": ["credit_review", "allocation"], "orders": 2, "share": 0.4},  # CH2, N1
        {"path": ["credit_review"], "orders": 1, "share": 0.2},  # X1
        {"path": ["credit_review", "allocation", "dispatch"], "orders": 1, "share": 0.2},
        {
            "path": ["credit_review", "allocation", "wave_pick", "pack_check", "wave_pick", "pack_check", "dispatch"],
            "orders": 1,
            "share": 0.2,
        },
    ]


def test_top_period_and_the_table(history):
    report = cli_json(history, "report", "flow", "--top", "1", now=NOW)
    assert len(report["variants"]) == 1 and report["other_orders"] == 3
    report = cli_json(history, "report", "flow", "--from", "2026-12-03", now=NOW)
    assert report["orders"] == 1 and report["edges"] == [] and report["variants"][0]["path"] == ["credit_review"]

    r = cli_ok(history, "report", "flow", "-f", "table", "--top", "2", now=NOW)
    assert "Node to node — all orders" in r.stdout
    lines = [" ".join(line.split()) for line in r.stdout.splitlines()]
    assert "credit_review allocation 4 19m30s" in lines and "pack_check wave_pick 1 30m" in lines
    assert "pack_check 2 1 1" in lines  # visits, rejects, revisits
    assert "Paths (variants) — 2 of 4" in lines
    assert lines[lines.index("share orders path") + 2 :][:2] == [
        "40.0% 2 credit_review → allocation",
        "20.0% 1 credit_review",
    ]
    assert "2 more orders took 2 other paths (--top shows more)." in lines

    r = cli_ok(history, "report", "flow", "-f", "csv", now=NOW)
    assert r.stdout.splitlines()[:2] == ["from,to,count,median_business_seconds", "credit_review,allocation,4,1170.0"]


def test_an_empty_period_and_mistakes(history):
    r = cli_ok(history, "report", "flow", "-f", "table", "--from", "2030-01-01", now=NOW)
    assert "No node visits: orders created since 2030-01-01 00:00 (Asia/Shanghai)." in r.stderr
    assert json.loads(cli_ok(history, "report", "flow", "-f", "json", "--from", "2030-01-01", now=NOW).stdout) == {
        "orders": 0,
        "edges": [],
        "rework": [],
        "variants": [],
        "variants_total": 0,
        "other_orders": 0,
    }
    r = history.run("report", "flow", "--top", "0", now=NOW)
    assert r.exit_code == 2 and "--top" in r.stderr
    r = history.run("report", "flow", "--from", "yesterday", now=NOW)
    assert r.exit_code == 2 and "--from 'yesterday'" in r.stderr


def test_the_dashboard_draws_the_order_flow(history):
    html = cli_ok(history, "report", "dashboard", "--out", "-", now=NOW).stdout
    assert "<h2>Order flow</h2>" in html
    svg = html.split('aria-label="order flow"', 1)[1].split("</svg>", 1)[0]
    assert "<title>credit_review → allocation: 4 orders · 19m30s</title>" in svg
    assert "<title>pack_check → wave_pick: 1 order · 30m</title>" in svg
    assert svg.count("<rect") == 5  # one box per node visited (tech_confirm was skipped)
    assert "2 visits · 1 rejects" in svg
    assert "<td>40.0%</td><td>2</td><td>credit_review → allocation</td>" in html
