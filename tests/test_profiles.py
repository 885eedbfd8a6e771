"""`ffctl import orders FILE --profile NAME` (SPEC 9.6) through the CLI on both backends: Shopify's
and WooCommerce's exports, a Taobao/Tmall profile from the config (Chinese headers, GBK), errors
that name the source column, skipped rows, and the config's checks of a profile."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import NOW, ok, query, run, scalar

REPO = Path(__file__).resolve().parent.parent

CONFIG = """
[defaults]
timezone = "Asia/Shanghai"
[roles.warehouse]
members = ["frank"]
[workflows.quick]
match = {}
nodes = ["dispatch"]
[nodes.dispatch]
owner = "warehouse"
sla = "48h"
auto = "ship"
"""
PRODUCTS = "sku,name\nTEE-S,T-shirt S\nTEE-M,T-shirt M\nMUG,Mug\n"
CUSTOMERS = "customer,name,region\nann@example.com,Ann,east\nbo@example.com,Bo,west\nTMALL-RETAIL,天猫零售,east\n"

# Shopify admin's orders export (a subset of its columns, in its order): the order's own fields
# only on its first row, one row per further line item.
SHOPIFY = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,Subtotal,"
    "Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Billing Name,Shipping Province,"
    "Shipping Country,Cancelled at\n"
    "#1001,ann@example.com,paid,2026-11-24 09:30:00 +0800,unfulfilled,,no,CNY,120.00,"
    "2026-11-24 09:29:41 +0800,2,T-shirt - S,40.00,TEE-S,Ann,ZJ,CN,\n"
    "#1001,,,,,,,,,,1,Mug,40.00,MUG,,,,\n"
    "#1002,bo@example.com,refunded,2026-11-24 10:00:00 +0800,,,no,CNY,40.00,"
    "2026-11-24 09:59:00 +0800,1,T-shirt - M,40.00,TEE-M,Bo,GD,CN,\n"
    "#1002,,,,,,,,,,1,Mug,0.00,MUG,,,,\n"
    "#1003,bo@example.com,pending,,unfulfilled,,yes,CNY,40.00,"
    "2026-11-25 08:00:00 +0800,1,T-shirt - M,40.00,TEE-M,Bo,GD,CN,\n"
)

WOOCOMMERCE = (
    "order_id,order_number,order_date,status,shipping_total,order_total,billing_email,shipping_state,"
    "shipping_country,item_id,item_name,item_sku,item_quantity,item_subtotal,item_total\n"
    "501,501,2026-11-24 11:00:00,processing,5.00,85.00,ann@example.com,ZJ,CN,1,T-shirt S,TEE-S,2,80.00,80.00\n"
    "501,501,2026-11-24 11:00:00,processing,5.00,85.00,ann@example.com,ZJ,CN,2,Mug,MUG,1,0.00,0.00\n"
    "502,502,2026-11-24 12:00:00,cancelled,0.00,40.00,bo@example.com,GD,CN,3,T-shirt M,TEE-M,1,40.00,40.00\n"
)

TMALL = (
    "订单编号,订单状态,订单创建时间,宝贝标题,商家编码,购买数量,价格\n"
    "TB-8801,买家已付款,2026-11-24 20:15:00,纯棉T恤 S码,TEE-S,3,39.90\n"
    "TB-8801,买家已付款,2026-11-24 20:15:00,陶瓷杯,MUG,1,25.00\n"
    "TB-8802,交易关闭,2026-11-24 21:00:00,纯棉T恤 M码,TEE-M,1,39.90\n"
)


def example_profile() -> str:
    """The Taobao/Tmall profile config.example.toml carries, uncommented."""
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    start = text.index("# [import_profiles.tmall]")
    block = text[start : text.index("\n\n", start)]
    return "\n".join(line[2:] for line in block.splitlines()) + "\n"


@pytest.fixture
def ws(workspace_with_config):
    ws = workspace_with_config(CONFIG + example_profile())
    ok(run(ws, "products", ws.write("products.csv", PRODUCTS)))
    ok(run(ws, "customers", ws.write("customers.csv", CUSTOMERS)))
    return ws


def orders(ws) -> list[tuple]:
    return query(
        ws,
        "SELECT o.order_id, o.customer, o.channel, ol.line_no, ol.sku, ol.qty, ol.unit_price "
        "FROM orders o JOIN order_line ol ON ol.order_id = o.order_id ORDER BY o.order_id, ol.line_no",
    )


def test_a_shopify_export_imports_one_order_per_name_skipping_refunds(ws):
    r = ok(run(ws, "orders", ws.write("orders_export.csv", SHOPIFY), "--profile", "shopify"))
    assert orders(ws) == [
        ("#1001", "ann@example.com", "shopify", 1, "TEE-S", 2, 40.0),
        ("#1001", "ann@example.com", "shopify", 2, "MUG", 1, 40.0),  # the order's fields from its first row
        ("#1003", "bo@example.com", "shopify", 1, "TEE-M", 1, 40.0),
    ]
    assert "2 rows skipped by the shopify profile: Financial Status = refunded" in r.stderr
    created = scalar(ws, "SELECT created_at FROM orders WHERE order_id = '#1001'")
    assert str(created).startswith("2026-11-24 01:29:41")  # +0800 as written, stored in UTC
    again = ok(run(ws, "orders", ws.write("orders_export.csv", SHOPIFY), "--profile", "shopify"))
    assert "2 unchanged" in again.stderr and scalar(ws, "SELECT count(*) FROM orders") == 2


def test_errors_name_the_source_column_as_the_file_has_it(ws):
    bad = SHOPIFY.replace(",2,T-shirt - S,40.00,TEE-S,", ",two,T-shirt - S,40.00,TEE-X,")
    r = run(ws, "orders", ws.write("bad.csv", bad), "--profile", "shopify")
    assert r.exit_code == 1
    assert "line 2: Lineitem quantity 'two': must be a positive whole number" in r.stderr, r.stderr
    assert "line 2: Lineitem sku 'TEE-X': unknown SKU" in r.stderr
    assert "line 2: qty" not in r.stderr and "line 2: sku" not in r.stderr
    assert scalar(ws, "SELECT count(*) FROM orders") == 0  # abort: nothing written


def test_a_date_the_format_does_not_read_is_that_rows_error(ws):
    bad = SHOPIFY.replace("2026-11-25 08:00:00 +0800", "25/11/2026 08:00")
    r = run(
        ws,
        "orders",
        ws.write("bad.csv", bad),
        "--profile",
        "shopify",
        "--on-error",
        "skip",
        "--rejects",
        str(ws.path / "rejects.csv"),
    )
    assert r.exit_code == 1
    assert (
        "line 6: Created at '25/11/2026 08:00': does not match the profile's date format "
        "%Y-%m-%d %H:%M:%S %z or %Y-%m-%d %H:%M:%S"
    ) in r.stderr
    assert [o[0] for o in orders(ws)] == ["#1001", "#1001"]
    # the rejects file holds the mapped row: fixed, it imports without --profile
    rejects = (ws.path / "rejects.csv").read_text(encoding="utf-8-sig")
    assert rejects.splitlines()[0] == "order_id,customer,sku,qty,unit_price,created_at,channel,line_no,error"
    fixed = (
        rejects.splitlines()[0].rsplit(",", 1)[0] + "\n#1003,bo@example.com,TEE-M,1,40.00,2026-11-25 08:00,shopify,1\n"
    )
    ok(run(ws, "orders", ws.write("fixed.csv", fixed)))
    assert [o[0] for o in orders(ws)] == ["#1001", "#1001", "#1003"]


def test_a_woocommerce_export_skips_cancelled_orders(ws):
    r = ok(run(ws, "orders", ws.write("woo.csv", WOOCOMMERCE), "--profile", "woocommerce"))
    assert orders(ws) == [
        ("501", "ann@example.com", "woocommerce", 1, "TEE-S", 2, None),
        ("501", "ann@example.com", "woocommerce", 2, "MUG", 1, None),
    ]
    assert "1 row skipped by the woocommerce profile: status = cancelled" in r.stderr


def test_the_example_tmall_profile_reads_a_gbk_report_with_chinese_headers(ws):
    path = ws.write("宝贝报表.csv", TMALL, encoding="gbk")
    r = ok(run(ws, "orders", path, "--profile", "tmall"))
    assert orders(ws) == [
        ("TB-8801", "TMALL-RETAIL", "tmall", 1, "TEE-S", 3, 39.9),
        ("TB-8801", "TMALL-RETAIL", "tmall", 2, "MUG", 1, 25.0),
    ]
    assert "1 row skipped by the tmall profile: 订单状态 = 交易关闭" in r.stderr
    created = scalar(ws, "SELECT created_at FROM orders")
    assert str(created).startswith("2026-11-24 12:15:00")  # Asia/Shanghai, as [defaults] says


def test_a_file_without_the_profiles_columns_is_refused_naming_them(ws):
    r = run(ws, "orders", ws.write("woo.csv", WOOCOMMERCE), "--profile", "shopify")
    assert r.exit_code == 1
    assert "the shopify profile reads the columns 'Name', 'Email', 'Lineitem sku', 'Lineitem quantity'" in r.stderr
    assert "--profile" in r.stderr  # the hint asks whether it is the right profile


def test_an_unknown_profile_or_kind_is_a_usage_error(ws):
    r = run(ws, "orders", ws.write("o.csv", SHOPIFY), "--profile", "shopfy")
    assert r.exit_code == 2 and "unknown import profile 'shopfy': use one of shopify, tmall, woocommerce" in r.stderr
    r = run(ws, "products", ws.write("p.csv", PRODUCTS), "--profile", "shopify")
    assert r.exit_code == 2 and "--profile shopify maps orders files, not products" in r.stderr


def test_a_profile_may_extend_a_built_in_one(workspace_with_config):
    ws = workspace_with_config(
        CONFIG
        + """
[import_profiles.myshop]
base = "shopify"
constants = { channel = "web" }
[import_profiles.myshop.columns]
"Shipping Province" = "region"
"""
    )
    ok(run(ws, "products", ws.write("products.csv", PRODUCTS)))
    ok(run(ws, "customers", ws.write("customers.csv", CUSTOMERS)))
    ok(run(ws, "orders", ws.write("o.csv", SHOPIFY), "--profile", "myshop"))
    assert query(ws, "SELECT order_id, channel, region FROM orders ORDER BY order_id") == [
        ("#1001", "web", "ZJ"),
        ("#1003", "web", "GD"),
    ]


@pytest.mark.parametrize(
    "profile, problem",
    [
        (
            '[import_profiles.p.columns]\n"单号" = "order_no"',
            "import_profiles.p.columns.\"单号\": unknown ffctl column 'order_no' (did you mean 'order_id'?)",
        ),
        (
            '[import_profiles.p.columns]\n"单号" = "order_id"\n"数量" = "qty"',
            "import_profiles.p.columns: no source column for customer, sku: map them, or give them as constants",
        ),
        ('[import_profiles.p]\nbase = "shopee"', "import_profiles.p.base: unknown built-in profile 'shopee'"),
        (
            '[import_profiles.p]\nbase = "shopify"\nconstants = { customer = "X" }\n[import_profiles.p.columns]\n"Buyer" = "customer"',
            "import_profiles.p.constants.customer: customer is also mapped from the source column 'Buyer'",
        ),
        (
            '[import_profiles.p]\nbase = "shopify"\ndate_format = "YYYY-MM-DD"',
            "import_profiles.p.date_format: expected a strptime format",
        ),
        (
            '[import_profiles.p]\nbase = "shopify"\nskip = { "Financial Status" = 3 }',
            'import_profiles.p.skip."Financial Status": expected the values that make a row skipped',
        ),
    ],
)
def test_config_check_names_the_profile_key_that_is_wrong(workspace_with_config, profile, problem):
    ws = workspace_with_config(CONFIG + profile + "\n")
    r = ws.run("config", "check")
    assert r.exit_code == 2, r.output
    assert problem in r.stderr


def test_a_time_in_the_profile_is_converted_as_written(workspace_with_config):
    """No date_format: created_at goes to the import's own reader (ISO, Excel's YYYY/MM/DD)."""
    ws = workspace_with_config(
        CONFIG
        + """
[import_profiles.erp]
constants = { customer = "TMALL-RETAIL" }
[import_profiles.erp.columns]
"No." = "order_id"
"Item" = "sku"
"Qty" = "qty"
"Date" = "created_at"
"""
    )
    ok(run(ws, "products", ws.write("products.csv", PRODUCTS)))
    ok(run(ws, "customers", ws.write("customers.csv", CUSTOMERS)))
    ok(run(ws, "orders", ws.write("erp.csv", "No.,Item,Qty,Date\nE1,MUG,4,2026/11/24 10:00\n"), "--profile", "erp"))
    assert str(scalar(ws, "SELECT created_at FROM orders")).startswith("2026-11-24 02:00:00")
    assert NOW  # the import clock is helpers.NOW (2026-11-25), after every created_at here


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=4), st.booleans()), min_size=1, max_size=12))
def test_shopify_rows_become_numbered_lines_with_the_orders_fields(orders_spec):
    """Any run of orders, each of n line items (refunded or not): every kept line carries its
    order's email and time, and an order's lines are numbered 1..n."""
    from ffctl.core.profiles import BUILTIN, ProfileReader

    header = ["Name", "Email", "Financial Status", "Created at", "Lineitem quantity", "Lineitem sku", "Lineitem price"]
    rows, expected = [], []
    for i, (lines, refunded) in enumerate(orders_spec):
        name, email, when = f"#{1000 + i}", f"c{i}@example.com", f"2026-11-24 09:{i:02d}:00 +0800"
        for n in range(1, lines + 1):
            first = n == 1
            rows.append(
                [
                    name,
                    email if first else "",
                    ("refunded" if refunded else "paid") if first else "",
                    when if first else "",
                    str(n),
                    f"SKU-{n}",
                    "1.00",
                ]
            )
            if not refunded:
                expected.append((name, email, f"2026-11-24T09:{i:02d}:00+08:00", str(n), f"SKU-{n}"))

    source = SimpleNamespace(path="orders_export.csv", header=header)
    source.rows = iter([(line, cells, None) for line, cells in enumerate(rows, start=2)])
    reader = ProfileReader(BUILTIN["shopify"], source)
    at = {c: reader.header.index(c) for c in ("order_id", "customer", "created_at", "line_no", "sku")}
    got = [tuple(cells[at[c]] for c in at) for _line, cells, flaw in reader.rows]
    assert got == expected
    assert sum(reader.skipped.values()) == sum(n for n, refunded in orders_spec if refunded)
