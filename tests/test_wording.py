"""User text reads as English and TOML, not Python: counts agree with their nouns, booleans are
true/false, and a blank --as is refused instead of quietly becoming the OS login."""

from __future__ import annotations

from helpers import cli_json, cli_ok, import_csv, open_shop
from typer.testing import CliRunner


def test_a_blank_acting_user_is_refused(workspace):
    from ffctl.cli import app

    env = {"FFCTL_CONFIG": str(workspace.config_path), "FFCTL_DB": workspace.db_url}
    for blank in ("", "  "):
        r = CliRunner().invoke(app, ["--as", blank, "task", "list"], env={**env, "FFCTL_USER": None})
        assert r.exit_code == 2, r.output
        assert r.stderr == "Error: --as needs a user name; leave --as out to act as your login\n"
        assert r.stdout == ""
    for blank in ("", " "):
        r = CliRunner().invoke(app, ["task", "list"], env={**env, "FFCTL_USER": blank})
        assert r.exit_code == 2 and "FFCTL_USER is blank" in r.stderr, r.output
    r = CliRunner().invoke(app, ["--as", "alice", "task", "list", "-f", "json"], env=env)
    assert r.exit_code == 0, r.output


NOW = "2026-11-23T09:00:00+08:00"  # a Monday


def test_timeline_spells_a_skipped_nodes_condition_as_the_config_does(workspace):
    open_shop(workspace, now=NOW)
    import_csv(workspace, "orders", "order_id,line_no,customer,sku,qty\nSO-1,1,C-WEST,SKU-0001,2\n", now=NOW)
    cli_ok(workspace, "advance", "SO-1", now="2026-11-23T09:10:00+08:00", user="alice")
    o = cli_json(workspace, "order", "show", "SO-1", now="2026-11-23T09:11:00+08:00")
    skipped = [e["detail"] for e in o["timeline"] if e["event"] == "skipped"]
    assert skipped == ["skipped: the order does not match has_custom_items = true"]


def test_counts_agree_with_their_nouns(workspace):
    open_shop(workspace, now=NOW)
    import_csv(workspace, "orders", "order_id,line_no,customer,sku,qty\nSO-1,1,C-WEST,SKU-0001,1\n", now=NOW)
    import_csv(
        workspace, "receipts", "receipt_id,sku,warehouse,qty,expected_at\nPO-1,SKU-0002,WH-SH,1,2026-11-30\n", now=NOW
    )
    r = cli_ok(workspace, "stock", "receive", "PO-1", now="2026-11-23T09:05:00+08:00")
    assert "Received PO-1: 1 unit (SKU-0002 1 into WH-SH)." in r.stderr
    cli_ok(workspace, "advance", "SO-1", now="2026-11-23T09:10:00+08:00", user="alice")
    r = cli_ok(workspace, "allocate", "--all", "-f", "csv", now="2026-11-23T09:12:00+08:00")
    assert "Reserved 1 unit for 1 order: " in r.stderr and "; 0 units backordered." in r.stderr
    r = cli_ok(
        workspace, "order", "cancel", "SO-1", "--reason", "customer changed their mind", now="2026-11-23T09:15:00+08:00"
    )
    assert r.stderr == "SO-1: cancelled; released 1 reserved unit.\n"
    import_csv(workspace, "products", "sku,name,safety_stock\nSKU-0002,不锈钢垫圈 M8,50\n", now=NOW)  # 11 < 50
    r = cli_ok(workspace, "rules", "run", "-f", "table", now="2026-11-23T09:20:00+08:00")
    assert "1 hit; queued 1 notification" in r.stderr
