"""Data never becomes terminal markup or a terminal instruction: brackets print as typed,
hyperlinks cannot be hidden in a cell, escape sequences never reach the screen. Through the CLI,
with Rich made to believe stdout is a colour terminal (FORCE_COLOR), on both backends."""

from __future__ import annotations

import re

NOW = "2026-11-23T09:25:00+08:00"
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\\r\x9b31m"
LINK = "[link=https://evil.example]b2b[/link]"

# what a well-behaved table may send: colour and style (SGR) only
_SGR = re.compile(r"\x1b\[[0-9;]*m")


def terminal(ws, *args, user=None):
    r = ws.run(*args, now=NOW, user=user or "judy")
    return r


def assert_clean(output: str) -> None:
    rest = _SGR.sub("", output)
    assert "\x1b" not in rest and "\x07" not in rest and "\x9b" not in rest and "\r" not in rest, repr(rest[:400])
    assert "\x1b]8;" not in output  # no hidden hyperlink


def seed(ws) -> None:
    files = {
        "products.csv": "sku,name,category\nSKU-1,[bold]screwdriver[/bold],[/]\n",
        "customers.csv": f"customer,name,region\nC1,{LINK},[/]\nC2,普通客户,[red]east\n",
        "stock.csv": "sku,warehouse,on_hand\nSKU-1,SH,100\n",
        "orders.csv": "order_id,line_no,customer,sku,qty,channel,created_at\n"
        f'[b]SO-1,1,C1,SKU-1,2,"{LINK}",2026-11-23 09:00\n'
        "SO-2,1,C2,SKU-1,1,[/],2026-11-23 09:05\n",
    }
    for name, text in files.items():
        r = ws.run("import", name.removesuffix(".csv"), ws.write(name, text), now=NOW, user="judy")
        assert r.exit_code == 0, r.output


def test_brackets_in_data_print_as_typed_and_never_break_a_report(workspace, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    seed(workspace)
    for by in ("region", "channel", "customer", "category", "product"):
        r = terminal(workspace, "report", "kpi", "--by", by, "-f", "table")
        assert r.exit_code == 0, (by, r.output)
        assert "MarkupError" not in r.output and "bug" not in r.output
        assert_clean(r.stdout)
    plain = _SGR.sub("", terminal(workspace, "report", "kpi", "--by", "region", "-f", "table").stdout)
    assert "[/]" in plain and "[red]east" in plain
    plain = _SGR.sub("", terminal(workspace, "report", "kpi", "--by", "channel", "-f", "table").stdout)
    assert LINK in plain
    r = terminal(workspace, "order", "list", "-f", "table")
    assert r.exit_code == 0 and "[b]SO-1" in _SGR.sub("", r.stdout)
    r = terminal(workspace, "order", "show", "[b]SO-1", "-f", "table")
    assert r.exit_code == 0, r.output
    shown = _SGR.sub("", r.stdout)
    assert "order [b]SO-1" in shown and LINK in shown
    assert_clean(r.stdout)


def test_control_characters_never_reach_the_terminal(workspace, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    seed(workspace)
    # free text from the command line (a hold reason) and an acting user's name carry escapes
    r = terminal(workspace, "order", "hold", "SO-2", "--reason", f"customer {HOSTILE} call", user=f"eve{HOSTILE}")
    assert r.exit_code == 0, r.output
    assert_clean(r.stderr)
    for args in (
        ["order", "show", "SO-2", "-f", "table"],
        ["order", "list", "-f", "table"],
        ["task", "list", "-f", "table"],
        ["order", "show", "SO-2", "-f", "csv"],
    ):
        r = terminal(workspace, *args)
        assert r.exit_code == 0, (args, r.output)
        assert_clean(r.stdout)
    shown = _SGR.sub("", terminal(workspace, "order", "show", "SO-2", "-f", "table").stdout)
    assert "pwned" in shown and "click" in shown  # the text stays readable; only the controls go
    # JSON keeps the data exactly (escaped by JSON itself), for scripts
    r = terminal(workspace, "order", "show", "SO-2", "-f", "json")
    assert "\\u001b]0;pwned\\u0007" in r.stdout and "\x1b" not in r.stdout
    # an error message naming hostile data
    r = terminal(workspace, "order", "show", f"SO-9{HOSTILE}")
    assert r.exit_code == 1 and "no order" in r.stderr
    assert_clean(r.stderr)
