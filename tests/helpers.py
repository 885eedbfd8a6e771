"""Helpers for tests that drive ffctl through its CLI the way a user would (imports, then commands)."""

from __future__ import annotations

import json

SUPPLIERS = "supplier,name\nSUP-1,华东紧固件有限公司\n"
PRODUCTS = ("sku,name,category,safety_stock,supplier\n"
            "SKU-0001,六角螺栓 M8,fasteners,0,SUP-1\n"
            "SKU-0002,不锈钢垫圈 M8,fasteners,0,SUP-1\n")
CUSTOMERS = ("customer,name,region,tier,sales_rep\n"
             "C-EAST,上海宏达机械厂,east,gold,oscar\n"
             "C-WEST,Western Goods,west,silver,\n")
STOCK = "sku,warehouse,on_hand\nSKU-0001,WH-SH,100\nSKU-0002,WH-SH,10\n"


def cli_ok(ws, *args, now: str | None = None, user: str | None = None):
    """Run a command that must succeed; returns the result."""
    r = ws.run(*args, now=now, user=user)
    assert r.exit_code == 0, f"ffctl {' '.join(map(str, args))}: exit {r.exit_code}\n{r.stdout}\n{r.stderr}"
    return r


def cli_json(ws, *args, now: str | None = None, user: str | None = None):
    return json.loads(cli_ok(ws, *args, "--format", "json", now=now, user=user).stdout)


def import_csv(ws, kind: str, text: str, *, now: str | None = None) -> None:
    path = ws.write(f"{kind}.csv", text)
    cli_ok(ws, "import", kind, path, now=now)


def open_shop(ws, *, now: str | None = None, stock: str = STOCK) -> None:
    """Suppliers, two products, an eastern (pilot workflow for b2b) and a western customer, stock."""
    for kind, text in (("suppliers", SUPPLIERS), ("products", PRODUCTS), ("customers", CUSTOMERS),
                       ("stock", stock)):
        import_csv(ws, kind, text, now=now)
