"""Copy-paste hints quote what came from data: pasting one runs the command it names, nothing more."""

from __future__ import annotations

import re
import shlex

NOW = "2026-11-23T09:25:00+08:00"
ODD = "SO6; touch /tmp/x"


def pasted(text: str) -> list[list[str]]:
    """Every `ffctl ...` command quoted in ``text``, as the shell would split it."""
    return [shlex.split(found) for found in re.findall(r"`(ffctl [^`]*)`", text)]


def test_hints_quote_ids_so_a_paste_runs_only_ffctl(workspace):
    files = {
        "products.csv": "sku,name\nSKU-1,screwdriver\nSKU 2 $(id),wrench\n",
        "customers.csv": "customer,name\nC1,Acme\n",
        "stock.csv": "sku,warehouse,on_hand\nSKU-1,SH,10\n",
        "orders.csv": f'order_id,line_no,customer,sku,qty,created_at\n"{ODD}",1,C1,SKU-1,1,2026-11-23 09:00\n',
    }
    for name, text in files.items():
        r = workspace.run("import", name.removesuffix(".csv"), workspace.write(name, text), now=NOW, user="judy")
        assert r.exit_code == 0, r.output
    r = workspace.run("order", "hold", ODD, "--reason", "call", now=NOW, user="judy")
    assert r.exit_code == 0 and pasted(r.stderr) == [["ffctl", "order", "release", ODD]], r.stderr
    r = workspace.run("advance", ODD, now=NOW, user="judy")
    assert r.exit_code == 1 and pasted(r.stderr) == [["ffctl", "order", "release", ODD]], r.stderr
    r = workspace.run("ship", ODD, now=NOW, user="judy")
    assert r.exit_code == 1 and pasted(r.stderr) == [["ffctl", "order", "release", ODD]], r.stderr
    assert workspace.run("order", "release", ODD, now=NOW, user="judy").exit_code == 0
    r = workspace.run("ship", ODD, now=NOW, user="judy")  # still at credit_review
    assert r.exit_code == 1 and pasted(r.stderr) == [["ffctl", "order", "show", ODD]], r.stderr
    r = workspace.run("deliver", ODD, now=NOW, user="judy")
    assert r.exit_code == 1 and pasted(r.stderr) == [["ffctl", "ship", ODD]], r.stderr
    r = workspace.run("stock", "adjust", "SKU 2 $(id)", "SH", "-1", "--reason", "count", now=NOW, user="judy")
    assert r.exit_code == 1 and pasted(r.stderr) == [["ffctl", "stock", "show", "SKU 2 $(id)"]], r.stderr
