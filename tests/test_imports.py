"""`ffctl import KIND FILE` through the CLI on both backends: every kind, every error, the modes
(abort, skip with a rejects file, dry run), encodings, idempotent re-imports, --update."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone

import pytest
import sqlalchemy as sa
from helpers import IMPORT_CUSTOMERS as CUSTOMERS  # noqa: F401
from helpers import IMPORT_SUPPLIERS as SUPPLIERS
from helpers import NOW, QUICK_CONFIG, masters, ok, query, run, scalar  # noqa: F401


@pytest.fixture
def ws(workspace):
    masters(workspace)
    return workspace


def counts(ws):
    return (
        scalar(ws, "SELECT count(*) FROM orders"),
        scalar(ws, "SELECT count(*) FROM order_line"),
        scalar(ws, "SELECT count(*) FROM task"),
        scalar(ws, "SELECT count(*) FROM event"),
    )


# --- master data -----------------------------------------------------------------------------


def test_masters_upsert_by_key_and_leave_empty_cells_alone(workspace):
    ws = workspace
    r = ok(run(ws, "suppliers", ws.write("suppliers.csv", SUPPLIERS)))
    assert "suppliers: 2 new, 0 updated, 0 unchanged" in r.stderr
    masters(ws)  # again: all unchanged
    assert query(
        ws,
        "SELECT sku, name, category, supplier, CASE WHEN custom THEN 1 ELSE 0 END, lead_time_days, "
        "safety_stock FROM product ORDER BY sku",
    ) == [
        ("A1", "Widget", "tools", "S1", 0, 3, 5),
        ("A2", "定制件", "custom", "S2", 1, 5, 0),
        ("A3", "Thing", "tools", None, 0, None, 0),
    ]
    r = ok(run(ws, "products", ws.write("p2.csv", "name,sku,safety_stock\nWidget v2,A1,\nThing,A3,9\nNew,A4,\n")))
    assert "products: 1 new, 2 updated, 0 unchanged" in r.stderr
    assert query(
        ws, "SELECT sku, name, category, safety_stock FROM product WHERE sku IN ('A1', 'A3', 'A4') ORDER BY sku"
    ) == [
        ("A1", "Widget v2", "tools", 5),
        ("A3", "Thing", "tools", 9),
        ("A4", "New", None, 0),
    ]
    assert query(
        ws, "SELECT customer, name, tier, region, sales_rep, credit_limit FROM customer ORDER BY customer"
    ) == [
        ("C1", "张三贸易有限公司", "gold", "east", "alice", 50000.0),
        ("C2", "Beta Co", "silver", "华南", None, None),
    ]


def test_master_data_errors(workspace):
    ws = workspace
    ok(run(ws, "suppliers", ws.write("suppliers.csv", SUPPLIERS)))
    r = run(
        ws,
        "products",
        ws.write(
            "p.csv",
            "sku,name,supplier,custom,safety_stock,reorder_qty\nB1,One,S9,maybe,-1,0\nB1,Dup,S1,,,\n,NoSku,,,,\n",
        ),
    )
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert "line 2: supplier 'S9': unknown supplier (not in suppliers; import suppliers first)" in lines
    assert "line 2: custom 'maybe': must be true or false (yes/no, 1/0)" in lines
    assert "line 2: safety_stock '-1': must be a whole number, 0 or more" in lines
    assert "line 2: reorder_qty '0': must be a positive whole number" in lines
    assert "line 3: sku 'B1': duplicate sku: also on line 2" in lines
    assert "line 4: sku '': missing required value" in lines
    assert "Error: 6 errors in" in r.stderr and "nothing was imported" in r.stderr
    assert scalar(ws, "SELECT count(*) FROM product") == 0


def test_supplier_frozen_exemption_is_not_set_back(workspace):
    ws = workspace
    ok(run(ws, "suppliers", ws.write("suppliers.csv", SUPPLIERS)))
    store = ws.store()
    with store.session(write=True) as s:
        s.execute(
            sa.text(
                "UPDATE supplier SET inspection_exempt = :f, exempt_frozen_at = :t, "
                "exempt_frozen_reason = 'qc pass rate 0.90' WHERE supplier = 'S1'"
            ),
            {"f": False, "t": datetime(2026, 11, 1)},
        )
    store.dispose()
    r = ok(run(ws, "suppliers", ws.path / "suppliers.csv"))
    assert "inspection exemption stays frozen (qc pass rate 0.90)" in r.stderr
    assert scalar(ws, "SELECT CASE WHEN inspection_exempt THEN 1 ELSE 0 END FROM supplier WHERE supplier = 'S1'") == 0


# --- orders ----------------------------------------------------------------------------------

ORDERS = (
    "order_id,line_no,customer,sku,qty,channel,created_at,priority,unit_price\n"
    "O1,1,C1,A1,2,b2b,2026/11/24 09:00,high,12.50\n"
    "O2,1,C2,A3,5,shop,2026-11-24T10:00:00+08:00,,\n"
    'O1,2,C1,A2,1,b2b,2026/11/24 09:00,high,"1,299.00"\n'
    "O3,1,C2,A1,1,shop,2026/11/24,,\n"
    "O4,1,C2,A3,1,,,,\n"
)


def test_orders_import_groups_lines_and_enters_the_workflow(ws):
    r = ok(run(ws, "orders", ws.write("orders.csv", ORDERS)))
    assert "5 rows read" in r.stderr and "orders: 4 new, 0 updated, 0 unchanged, 0 skipped; 0 rows rejected" in r.stderr
    rows = query(
        ws,
        "SELECT order_id, customer, channel, region, sales_rep, priority, workflow, node, "
        "CASE WHEN has_custom_items THEN 1 ELSE 0 END, status FROM orders ORDER BY order_id",
    )
    assert rows == [
        ("O1", "C1", "b2b", "east", "alice", 1, "pilot", "credit_review", 1, "open"),
        ("O2", "C2", "shop", "华南", None, 0, "standard", "credit_review", 0, "open"),
        ("O3", "C2", "shop", "华南", None, 0, "standard", "credit_review", 0, "open"),
        ("O4", "C2", None, "华南", None, 0, "standard", "credit_review", 0, "open"),
    ]
    assert query(
        ws, "SELECT order_id, line_no, sku, qty, unit_price, allocated FROM order_line ORDER BY order_id, line_no"
    ) == [
        ("O1", 1, "A1", 2, 12.5, 0),
        ("O1", 2, "A2", 1, 1299.0, 0),
        ("O2", 1, "A3", 5, None, 0),
        ("O3", 1, "A1", 1, None, 0),
        ("O4", 1, "A3", 1, None, 0),
    ]
    # created_at: naive times are in [defaults] timezone (Asia/Shanghai); absent = the import time
    store = ws.store()
    with store.session() as s:
        from ffctl.core.models import Order, Task

        created = dict(s.execute(sa.select(Order.order_id, Order.created_at)).all())
        tasks = s.execute(sa.select(Task.order_id, Task.node, Task.status, Task.entered_at)).all()
        promised = dict(s.execute(sa.select(Order.order_id, Order.promise_source)).all())
    store.dispose()
    utc = timezone.utc
    assert created == {
        "O1": datetime(2026, 11, 24, 1, 0, tzinfo=utc),
        "O2": datetime(2026, 11, 24, 2, 0, tzinfo=utc),
        "O3": datetime(2026, 11, 23, 16, 0, tzinfo=utc),
        "O4": datetime(2026, 11, 25, 2, 0, tzinfo=utc),
    }
    # every new order has an open task at its workflow's first node, entered at created_at
    assert sorted((t.order_id, t.node, t.status, t.entered_at) for t in tasks) == sorted(
        (oid, "credit_review", "open", at) for oid, at in created.items()
    )
    # a missing promised_ship_date comes from available-to-promise (no stock: the lead time)
    assert set(promised.values()) <= {"atp", "lead_time"} and all(promised.values())
    assert scalar(ws, "SELECT count(*) FROM event WHERE event = 'created'") == 4


def test_columns_in_any_order_and_a_given_promise_is_kept(ws):
    text = "qty,sku,promised_ship_date,customer,line_no,order_id\n3,A1,2026/12/01,C1,1,P1\n"
    ok(run(ws, "orders", ws.write("o.csv", text)))
    assert query(ws, "SELECT promise_source FROM orders") == [("import",)]
    store = ws.store()
    with store.session() as s:
        assert s.execute(sa.text("SELECT promised_ship_date FROM orders")).scalar() in (date(2026, 12, 1), "2026-12-01")
    store.dispose()


@pytest.mark.parametrize("batch_rows", ["1", "10000"])
def test_promises_consume_atp_across_batches_and_a_given_promise_counts_as_demand(ws, batch_rows):
    # 10 of A1 on hand (A1's lead time is 3 days). Orders go by order_id: P1 takes 3 of today's 10,
    # P2 brings its own date and takes 6, so P3's 3 are not there today: the lead time. The same
    # whatever the batch size: the import keeps one ATP ledger across its batches.
    ok(run(ws, "stock", ws.write("stock.csv", "sku,warehouse,on_hand\nA1,WH1,10\n")))
    text = (
        "order_id,line_no,customer,sku,qty,promised_ship_date\nP3,1,C1,A1,3,\nP2,1,C2,A1,6,2026/12/01\nP1,1,C1,A1,3,\n"
    )
    ok(run(ws, "orders", ws.write("o.csv", text), "--batch-rows", batch_rows))
    rows = query(ws, "SELECT order_id, promised_ship_date, promise_source FROM orders ORDER BY order_id")
    assert [(o, str(d)[:10], s) for o, d, s in rows] == [
        ("P1", "2026-11-25", "atp"),
        ("P2", "2026-12-01", "import"),
        ("P3", "2026-11-28", "lead_time"),
    ]


def test_promises_read_demand_already_in_the_store(ws):
    ok(run(ws, "stock", ws.write("stock.csv", "sku,warehouse,on_hand\nA1,WH1,10\n")))
    ok(run(ws, "orders", ws.write("a.csv", "order_id,line_no,customer,sku,qty\nQ1,1,C1,A1,8\n")))
    ok(run(ws, "orders", ws.write("b.csv", "order_id,line_no,customer,sku,qty\nQ2,1,C1,A1,2\nQ3,1,C1,A1,1\n")))
    rows = query(ws, "SELECT order_id, promised_ship_date, promise_source FROM orders ORDER BY order_id")
    assert [(o, str(d)[:10], s) for o, d, s in rows] == [
        ("Q1", "2026-11-25", "atp"),
        ("Q2", "2026-11-25", "atp"),
        ("Q3", "2026-11-28", "lead_time"),
    ]


def test_every_order_error_kind_is_reported_with_line_column_value_and_reason(ws):
    text = (
        "order_id,line_no,customer,sku,qty,created_at,promised_ship_date,unit_price,priority\n"
        "E1,1,C9,A1,1,,,,\n"  # 2 unknown customer
        "E2,1,C1,ZZ,1,,,,\n"  # 3 unknown SKU
        "E3,1,C1,A1,0,,,,\n"  # 4 qty zero
        "E4,1,C1,A1,1.5,,,,\n"  # 5 qty not whole
        "E5,1,C1,A1,-2,,,,\n"  # 6 qty negative
        "E6,1,C1,A1,1,2026-13-01,,,\n"  # 7 bad time
        "E7,1,C1,A1,1,,someday,,\n"  # 8 bad date
        "E8,1,C1,A1,1,,,abc,\n"  # 9 bad price
        "E9,1,C1,A1,1,,,,soon\n"  # 10 bad priority
        "E10,1,C1,A1,1,,,,\n"
        "E10,1,C1,A2,1,,,,\n"  # 12 duplicate (order_id, line_no)
        "E11,1,C1,A1,,,,,\n"  # 13 missing qty
        "E12,x,C1,A1,1,,,,\n"  # 14 bad line_no
        "E13,1,C1,A1,1,2026/11/01,,,\n"
        "E13,2,C2,A1,1,2026/11/01,,,\n"  # 16 another customer on one order
        "E14,1,C1,A1,1,,,,,extra\n"  # 17 a cell beyond the header
    )
    r = run(ws, "orders", ws.write("bad.csv", text))
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    expected = [
        "line 2: customer 'C9': unknown customer (not in customers; import customers first)",
        "line 3: sku 'ZZ': unknown SKU (not in products; import products first)",
        "line 4: qty '0': must be a positive whole number",
        "line 5: qty '1.5': must be a positive whole number",
        "line 6: qty '-2': must be a positive whole number",
        "line 8: promised_ship_date 'someday': not a date: use YYYY-MM-DD or YYYY/MM/DD",
        "line 9: unit_price 'abc': must be a number",
        "line 10: priority 'soon': must be a whole number or one of low, normal, high, urgent",
        "line 12: line_no '1': duplicate line: order_id E10 line_no 1 is also on line 11",
        "line 13: qty '': missing required value",
        "line 14: line_no 'x': must be a positive whole number",
        "line 16: customer 'C2': differs from line 15 ('C1'): every row of one order must have the same customer",
        "line 17: 10 cells but the header has 9 columns",
    ]
    for line in expected:
        assert line in lines, f"{line!r} not in:\n{r.stderr}"
    assert any(line.startswith("line 7: created_at '2026-13-01': ") for line in lines)
    assert "Error: 14 errors in" in r.stderr and "nothing was imported" in r.stderr
    assert counts(ws) == (0, 0, 0, scalar(ws, "SELECT count(*) FROM event"))
    assert scalar(ws, "SELECT count(*) FROM orders") == 0


def test_abort_is_the_default_and_writes_nothing_even_for_good_rows(ws):
    text = "order_id,line_no,customer,sku,qty\nG1,1,C1,A1,1\nG2,1,C1,A1,1\nB1,1,C1,NOPE,1\n"
    r = run(ws, "orders", ws.write("o.csv", text))
    assert r.exit_code == 1 and "line 4: sku 'NOPE'" in r.stderr
    assert "nothing imported" in r.stderr
    assert counts(ws)[:3] == (0, 0, 0)


def test_skip_writes_good_orders_rejects_whole_bad_orders_and_the_fixed_file_imports(ws):
    text = (
        "order_id,line_no,customer,sku,qty,note\n"
        "K1,1,C1,A1,1,a\n"
        "K2,1,C1,A1,2,b\n"
        "K2,2,C1,BAD,1,c\n"  # K2 is rejected whole: its good line 3 too
        "K3,1,C1,A1,0,d\n"
        "K4,1,C2,A3,1,e\n"
        "K2,3,C1,A3,1,f\n"  # a non-adjacent line of K2
    )
    src = ws.write("o.csv", text)
    rejects = ws.path / "rejects.csv"
    r = run(ws, "orders", src, "--on-error", "skip", "--rejects", rejects, "--ignore-unknown")
    assert r.exit_code == 1
    assert "orders: 2 new" in r.stderr and "4 rows rejected" in r.stderr and str(rejects) in r.stderr
    assert query(ws, "SELECT order_id FROM orders ORDER BY order_id") == [("K1",), ("K4",)]
    raw = rejects.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM for Excel
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["order_id", "line_no", "customer", "sku", "qty", "note", "error"]
    assert [r[:6] for r in rows[1:]] == [
        ["K2", "1", "C1", "A1", "2", "b"],
        ["K2", "2", "C1", "BAD", "1", "c"],
        ["K3", "1", "C1", "A1", "0", "d"],
        ["K2", "3", "C1", "A3", "1", "f"],
    ]
    assert (
        rows[1][6]
        == "not imported: this order has an error on line 4 (unknown SKU (not in products; import products first))"
    )
    assert rows[2][6] == "sku: unknown SKU (not in products; import products first)"
    assert rows[3][6] == "qty: must be a positive whole number"
    # fix the rejects file in place (the error column stays) and import it as it is
    fixed = raw.decode("utf-8-sig").replace(",BAD,", ",A2,").replace("K3,1,C1,A1,0", "K3,1,C1,A1,4")
    rejects.write_bytes(fixed.encode("utf-8-sig"))
    r = ok(run(ws, "orders", rejects, "--ignore-unknown"))
    assert "orders: 2 new" in r.stderr
    assert query(ws, "SELECT order_id, count(*) FROM order_line GROUP BY order_id ORDER BY order_id") == [
        ("K1", 1),
        ("K2", 3),
        ("K3", 1),
        ("K4", 1),
    ]
    # a clean run with --rejects leaves a header-only file, not the rejects of an earlier run
    clean = ws.write("clean.csv", "order_id,line_no,customer,sku,qty\nK5,1,C1,A1,1\n")
    ok(run(ws, "orders", clean, "--on-error", "skip", "--rejects", rejects))
    assert rejects.read_text(encoding="utf-8-sig").splitlines() == ["order_id,line_no,customer,sku,qty,error"]


def test_dry_run_validates_reports_and_writes_nothing(ws):
    src = ws.write("orders.csv", ORDERS)
    before = counts(ws)
    r = ok(run(ws, "orders", src, "--dry-run"))
    assert r.stderr.startswith("Dry run: ") and "orders: 4 new" in r.stderr
    assert counts(ws) == before
    r = run(ws, "orders", ws.write("bad.csv", "order_id,line_no,customer,sku,qty\nX,1,C1,A1,0\n"), "--dry-run")
    assert r.exit_code == 1 and "line 2: qty '0'" in r.stderr
    assert counts(ws) == before


def test_reimport_adds_nothing_and_reports_unchanged(ws):
    src = ws.write("orders.csv", ORDERS)
    ok(run(ws, "orders", src))
    first = counts(ws)
    r = ok(run(ws, "orders", src, now="2026-11-26T10:00:00+08:00"))
    assert "orders: 0 new, 0 updated, 4 unchanged" in r.stderr
    assert counts(ws) == first


def test_a_changed_order_is_reported_and_replaced_only_with_update(ws):
    ok(run(ws, "orders", ws.write("orders.csv", ORDERS)))
    changed = ORDERS.replace("O2,1,C2,A3,5,", "O2,1,C2,A3,7,") + "O2,2,C2,A1,1,shop,2026-11-24T10:00:00+08:00,,\n"
    src = ws.write("changed.csv", changed)
    r = ok(run(ws, "orders", src))
    assert "orders: 0 new, 0 updated, 3 unchanged, 1 skipped" in r.stderr
    assert "Warning: 1 order changed since it was imported and was left as it is (O2); pass --update" in r.stderr
    assert "pass --strict to exit 1" in r.stderr
    r = run(ws, "orders", src, "--strict")
    assert r.exit_code == 1 and "Error: --strict: 1 changed order was skipped" in r.stderr
    assert "orders: 0 new, 0 updated, 3 unchanged, 1 skipped" in r.stderr
    assert "--strict: the import fails because of the skipped ones" in r.stderr
    assert query(ws, "SELECT qty FROM order_line WHERE order_id = 'O2'") == [(5,)]
    ok(run(ws, "orders", ws.path / "orders.csv", "--strict"))  # nothing skipped: strict passes
    r = ok(run(ws, "orders", src, "--update"))
    assert "orders: 0 new, 1 updated, 3 unchanged, 0 skipped" in r.stderr
    assert query(ws, "SELECT line_no, sku, qty FROM order_line WHERE order_id = 'O2' ORDER BY line_no") == [
        (1, "A3", 7),
        (2, "A1", 1),
    ]
    assert query(ws, "SELECT detail FROM event WHERE event = 'updated' AND order_id = 'O2'") == [
        ("replaced by import: 2 line(s), was 1",)
    ]
    assert scalar(ws, "SELECT count(*) FROM task WHERE order_id = 'O2'") == 1  # still the one open task
    ok(run(ws, "orders", src, "--update"))  # now unchanged
    assert scalar(ws, "SELECT count(*) FROM event WHERE event = 'updated'") == 1


def test_update_refuses_shipped_and_allocated_orders(ws):
    ok(run(ws, "orders", ws.write("orders.csv", ORDERS)))
    store = ws.store()
    with store.session(write=True) as s:
        s.execute(sa.text("UPDATE orders SET status = 'shipped', node = NULL WHERE order_id = 'O2'"))
        s.execute(sa.text("INSERT INTO stock (sku, warehouse, on_hand, allocated) VALUES ('A1', 'WH1', 5, 1)"))
        line_id = s.execute(sa.text("SELECT id FROM order_line WHERE order_id = 'O3'")).scalar()
        s.execute(sa.text("UPDATE order_line SET allocated = 1 WHERE id = :i"), {"i": line_id})
        s.execute(
            sa.text(
                "INSERT INTO allocation (order_id, line_id, sku, warehouse, qty, created_at) "
                "VALUES ('O3', :i, 'A1', 'WH1', 1, :t)"
            ),
            {"i": line_id, "t": datetime(2026, 11, 24)},
        )
    store.dispose()
    changed = ORDERS.replace("O2,1,C2,A3,5,", "O2,1,C2,A3,6,").replace("O3,1,C2,A1,1,", "O3,1,C2,A1,2,")
    src = ws.write("changed.csv", changed)
    r = run(ws, "orders", src, "--update")
    assert r.exit_code == 1
    assert "line 3: order O2 is shipped: it can no longer change" in r.stderr
    assert "line 5: order O3 has stock allocated: it can no longer change" in r.stderr
    assert "nothing was imported" in r.stderr
    # without --update a shipped order that changed is only reported
    r = ok(run(ws, "orders", src))
    assert "2 skipped" in r.stderr


def test_unknown_and_missing_columns_and_ignore_unknown(ws):
    r = run(ws, "orders", ws.write("o.csv", "order_id,line_no,customer,sku,qty,colour\nU1,1,C1,A1,1,red\n"))
    assert r.exit_code == 1
    assert "Error: unknown column 'colour': orders takes order_id, line_no, customer, sku, qty (required)" in r.stderr
    assert "--ignore-unknown" in r.stderr
    r = run(ws, "orders", ws.write("o2.csv", "order_id,line_no,customer,skus,qty\nU1,1,C1,A1,1\n"))
    assert "unknown column 'skus' (did you mean 'sku'?)" in r.stderr
    ok(run(ws, "orders", ws.path / "o.csv", "--ignore-unknown"))
    assert scalar(ws, "SELECT count(*) FROM orders") == 1
    r = run(ws, "orders", ws.write("o3.csv", "order_id,customer,sku\nU2,C1,A1\n"))
    assert r.exit_code == 1 and "Error: missing required columns line_no, qty" in r.stderr
    r = run(ws, "orders", ws.write("o4.csv", "Order ID,Line No,CUSTOMER, sku ,Qty\nU3,1,C1,A1,1\n"))
    assert r.exit_code == 0, r.stderr  # header names are matched loosely
    r = run(ws, "orders", ws.write("o5.csv", "order_id,line_no,customer,sku,qty,sku\nU4,1,C1,A1,1,A1\n"))
    assert r.exit_code == 1 and "column 'sku' appears twice in the header (columns 4 and 6)" in r.stderr


def test_empty_file_header_only_and_bad_arguments(ws):
    r = run(ws, "orders", ws.write("empty.csv", ""))
    assert r.exit_code == 1 and "is empty: a header row is required" in r.stderr
    r = ok(run(ws, "orders", ws.write("header.csv", "order_id,line_no,customer,sku,qty\n\n")))
    assert "0 rows read" in r.stderr
    r = run(ws, "orders", ws.path / "missing.csv")
    assert r.exit_code == 1 and "no such file" in r.stderr
    r = run(ws, "widgets", ws.path / "header.csv")
    assert r.exit_code == 2 and "unknown import kind 'widgets'" in r.stderr
    r = run(ws, "orders", ws.path / "header.csv", "--rejects", ws.path / "r.csv")
    assert r.exit_code == 2 and "--rejects goes with --on-error skip" in r.stderr
    r = run(ws, "orders", ws.path / "header.csv", "--encoding", "klingon")
    assert r.exit_code == 2 and "unknown encoding 'klingon'" in r.stderr


def test_stdin(ws):
    r = ws.run("import", "orders", "-", now=NOW, input="order_id,line_no,customer,sku,qty\nS1,1,C1,A1,1\n")
    assert r.exit_code == 0, r.stderr
    assert scalar(ws, "SELECT count(*) FROM orders") == 1


def test_more_than_fifty_errors_are_counted(ws):
    text = "order_id,line_no,customer,sku,qty\n" + "".join(f"M{i},1,C1,A1,0\n" for i in range(60))
    r = run(ws, "orders", ws.write("many.csv", text))
    assert r.exit_code == 1
    assert sum(1 for line in r.stderr.splitlines() if line.startswith("line ")) == 50
    assert "... and 10 more errors" in r.stderr and "Error: 60 errors in" in r.stderr


# --- encodings ---------------------------------------------------------------------------------


def test_gbk_and_bom_files_with_chinese_names(workspace):
    ws = workspace
    text = "customer,name,region\nG1,广州贸易有限公司,华南\nG2,北京科技,华北\n"
    r = ok(run(ws, "customers", ws.write("gbk.csv", text, encoding="gbk")))
    assert "(gb18030)" in r.stderr
    r = ok(run(ws, "customers", ws.write("bom.csv", "customer,name,region\nG3,上海商贸,华东\n", encoding="utf-8-sig")))
    assert "(utf-8-sig)" in r.stderr
    assert query(ws, "SELECT customer, name, region FROM customer ORDER BY customer") == [
        ("G1", "广州贸易有限公司", "华南"),
        ("G2", "北京科技", "华北"),
        ("G3", "上海商贸", "华东"),
    ]
    # a file that starts as plain ASCII and has GBK further down than the detector looks
    late = "customer,name\n" + "".join(f"L{i},name {i}\n" for i in range(6000)) + "L9999,深圳公司\n"
    r = ok(run(ws, "customers", ws.write("late.csv", late, encoding="gbk")))
    assert "(gb18030)" in r.stderr and scalar(ws, "SELECT name FROM customer WHERE customer = 'L9999'") == "深圳公司"
    # --encoding overrides detection: a GBK file read as UTF-8 has undecodable rows
    r = run(ws, "customers", ws.path / "gbk.csv", "--encoding", "utf-8")
    assert r.exit_code == 1 and "line 2: bytes that are not valid utf-8" in r.stderr


def test_rejects_of_a_gbk_file_are_utf8_with_bom(ws):
    text = "order_id,line_no,customer,sku,qty,region\nR1,1,C1,A1,0,华东\n"
    rejects = ws.path / "r.csv"
    r = run(ws, "orders", ws.write("g.csv", text, encoding="gbk"), "--on-error", "skip", "--rejects", rejects)
    assert r.exit_code == 1
    assert (
        rejects.read_bytes().decode("utf-8-sig").splitlines()[1]
        == "R1,1,C1,A1,0,华东,qty: must be a positive whole number"
    )


# --- stock, receipts, qc ------------------------------------------------------------------------


def test_stock_counts_set_on_hand_and_are_idempotent(ws):
    src = ws.write("stock.csv", "sku,warehouse,on_hand\nA1,WH1,10\nA3,WH2,4\n")
    r = ok(run(ws, "stock", src))
    assert "counts: 2 new" in r.stderr
    assert query(ws, "SELECT sku, warehouse, on_hand, allocated FROM stock ORDER BY sku") == [
        ("A1", "WH1", 10, 0),
        ("A3", "WH2", 4, 0),
    ]
    r = ok(run(ws, "stock", src))
    assert "counts: 0 new, 0 updated, 2 unchanged" in r.stderr
    assert scalar(ws, "SELECT count(*) FROM stock_move WHERE kind = 'count'") == 2
    store = ws.store()
    with store.session(write=True) as s:
        s.execute(sa.text("UPDATE stock SET allocated = 3 WHERE sku = 'A1'"))
    store.dispose()
    r = run(ws, "stock", ws.write("s2.csv", "sku,warehouse,on_hand\nA1,WH1,2\nA3,WH2,5\n"))
    assert r.exit_code == 1 and "count 2 for A1 in WH1 is below the 3 allocated" in r.stderr
    assert scalar(ws, "SELECT on_hand FROM stock WHERE sku = 'A3'") == 4  # abort: nothing written
    r = run(ws, "stock", ws.path / "s2.csv", "--on-error", "skip")
    assert r.exit_code == 1 and "counts: 0 new, 1 updated" in r.stderr
    r = run(ws, "stock", ws.write("s3.csv", "sku,warehouse,on_hand\nZZ,WH1,1\nA1,WH1,x\nA1,,1\n"))
    assert "line 2: sku 'ZZ': unknown SKU" in r.stderr
    assert "line 3: on_hand 'x': must be a whole number, 0 or more" in r.stderr
    assert "line 4: warehouse '': missing required value" in r.stderr


def test_receipts_are_keyed_and_received_ones_do_not_change(ws):
    text = (
        "receipt_id,sku,warehouse,qty,expected_at,supplier\nR1,A1,WH1,10,2026/12/01,S1\nR1,A3,WH1,5,2026/12/02 14:00,\n"
    )
    src = ws.write("r.csv", text)
    assert "receipt lines: 2 new" in ok(run(ws, "receipts", src)).stderr
    assert "receipt lines: 0 new, 0 updated, 2 unchanged" in ok(run(ws, "receipts", src)).stderr
    store = ws.store()
    with store.session(write=True) as s:
        s.execute(sa.text("UPDATE receipt SET status = 'received' WHERE sku = 'A1'"))
    store.dispose()
    r = run(ws, "receipts", ws.write("r2.csv", text.replace(",10,", ",12,").replace(",5,", ",6,")))
    assert r.exit_code == 1 and "line 2: receipt R1 (A1, WH1) was already received: it can no longer change" in r.stderr
    assert query(ws, "SELECT sku, qty FROM receipt ORDER BY sku") == [("A1", 10), ("A3", 5)]
    r = run(
        ws,
        "receipts",
        ws.write("r3.csv", "receipt_id,sku,warehouse,qty,expected_at,supplier\nR2,A1,WH1,1,2026/02/30,S7\n"),
    )
    assert "line 2: expected_at '2026/02/30': not a real date/time" in r.stderr
    assert "line 2: supplier 'S7': unknown supplier" in r.stderr


def test_qc_batches(ws):
    text = (
        "supplier,batch_id,inspected_at,passed,total,promised_at,received_at,sku\n"
        "S1,B1,2026/11/20 10:00,98,100,2026/11/18,2026/11/19,A1\n"
        "S1,B2,2026/11/21,101,100,2026/11/18,2026/11/19,\n"
        "S2,B1,2026/11/21,5,0,2026/11/18,2026/11/19,\n"
    )
    r = run(ws, "qc", ws.write("qc.csv", text), "--on-error", "skip")
    assert r.exit_code == 1
    assert "line 3: passed '101': is more than total (100)" in r.stderr
    assert "line 4: total '0': must be a positive whole number" in r.stderr
    assert query(ws, "SELECT supplier, batch_id, passed, total, sku FROM qc_batch") == [("S1", "B1", 98, 100, "A1")]
    r = ok(run(ws, "qc", ws.write("qc2.csv", text.splitlines()[0] + "\n" + text.splitlines()[1] + "\n")))
    assert "qc batches: 0 new, 0 updated, 1 unchanged" in r.stderr


# --- shipments and deliveries -------------------------------------------------------------------


@pytest.fixture
def quick(workspace_with_config):
    ws = workspace_with_config(QUICK_CONFIG)
    masters(ws)
    ok(run(ws, "orders", ws.write("orders.csv", ORDERS)))
    return ws


def test_shipments_and_deliveries(quick):
    ws = quick
    ship = (
        "order_id,shipped_at,carrier,tracking,line_no,sku,qty\n"
        "O1,2026/11/25 11:00,SF,T1,1,A1,2\n"
        "O2,2026/11/25 12:00,EMS,,,,\n"
        "O1,2026/11/25 11:00,SF,T1,2,A3,1\n"
    )  # a wrong SKU picked: recorded for pick accuracy
    src = ws.write("ship.csv", ship)
    r = ok(run(ws, "shipments", src))
    assert "shipments: 2 new" in r.stderr
    assert query(
        ws, "SELECT order_id, status, carrier, tracking FROM orders WHERE status = 'shipped' ORDER BY order_id"
    ) == [
        ("O1", "shipped", "SF", "T1"),
        ("O2", "shipped", "EMS", None),
    ]
    assert query(ws, "SELECT line_no, sku, qty, error FROM pick_line WHERE order_id = 'O1'") == [
        (2, "A3", 1, "wrong_sku")
    ]
    assert query(ws, "SELECT line_no, picked_right FROM shipment_line WHERE order_id = 'O1' ORDER BY line_no") == [
        (1, 1),
        (2, 0),
    ]
    assert "shipments: 0 new, 0 updated, 2 unchanged" in ok(run(ws, "shipments", src)).stderr
    bad = (
        "order_id,shipped_at,carrier,line_no,sku,qty\n"
        "NOPE,2026/11/25,SF,,,\n"
        "O1,2026/11/26,SF,,,\n"
        "O3,2026/11/25,SF,1,A1,\n"
        "O4,2026/11/25 12:00,SF,,,\n"
    )  # after it was created (10:00): a timeline never runs backwards
    r = run(ws, "shipments", ws.write("bad.csv", bad))
    assert r.exit_code == 1
    assert "line 4: qty '': missing: how many units of the line left in this shipment" in r.stderr
    assert "nothing imported" in r.stderr
    r = run(ws, "shipments", ws.path / "bad.csv", "--on-error", "skip")
    assert r.exit_code == 1
    assert "line 2: unknown order 'NOPE' (not in orders; import orders first)" in r.stderr
    assert "line 3: order O1 was already shipped" in r.stderr
    assert "shipments: 1 new" in r.stderr  # O4
    deliveries = "order_id,delivered_at,issue\nO1,2026/11/27 09:00,\nO2,2026/11/27 10:00,damaged\n"
    src = ws.write("d.csv", deliveries)
    assert "deliveries: 2 new" in ok(run(ws, "deliveries", src)).stderr
    assert "deliveries: 0 new, 0 updated, 2 unchanged" in ok(run(ws, "deliveries", src)).stderr
    assert query(
        ws, "SELECT order_id, status, delivery_issue FROM orders WHERE status = 'delivered' ORDER BY order_id"
    ) == [
        ("O1", "delivered", None),
        ("O2", "delivered", "damaged"),
    ]
    r = run(ws, "deliveries", ws.write("d2.csv", "order_id,delivered_at,issue\nO3,2026/11/27,\nO4,2026/11/27,lost\n"))
    assert r.exit_code == 1
    assert "line 3: issue 'lost': must be one of wrong_item, short, late, damaged, wrong_address, documents" in r.stderr
    r = run(ws, "deliveries", ws.write("d3.csv", "order_id,delivered_at\nO3,2026/11/27\n"))
    assert r.exit_code == 1 and "line 2: order O3 has not shipped" in r.stderr


def test_shipments_dry_run_changes_nothing(quick):
    ws = quick
    r = ok(run(ws, "shipments", ws.write("s.csv", "order_id,shipped_at\nO1,2026/11/25\n"), "--dry-run"))
    assert "Dry run: " in r.stderr and "shipments: 1 new" in r.stderr
    assert scalar(ws, "SELECT count(*) FROM shipment") == 0
    assert scalar(ws, "SELECT status FROM orders WHERE order_id = 'O1'") == "open"


# --- the entry planner ----------------------------------------------------------------------------

PLANNER_CONFIG = """
[defaults]
timezone = "Asia/Shanghai"
[calendars.office]
timezone = "Asia/Shanghai"
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = ["09:00-12:00", "13:00-17:00"] }
[roles.finance]
members = ["alice"]
[roles.engineering]
members = ["bob"]
[workflows.pilot]
match = { channel = ["B2B"], region = ["east"] }
nodes = ["tech_confirm"]
[workflows.gadgets]
match = { category = ["gadgets"], priority = [1, 2] }
nodes = ["credit_review", "tech_confirm", "allocation"]
[workflows.shops]
match = { channel = ["shop"] }
nodes = ["credit_review", "tech_confirm", "allocation"]
[nodes.credit_review]
owner = "finance"
sla = "30m"
calendar = "office"
[nodes.tech_confirm]
owner = "engineering"
sla = "4h"
when = { has_custom_items = true }
[nodes.allocation]
sla = "10m"
auto = "allocate"
"""


def test_entry_planner_routes_and_clocks():
    """Every route (a workflow, a skipped node, all nodes skipped, no workflow at all) and the
    clocks on a business calendar, as the one entry planner plans them."""
    from ffctl.core import csvio, workflow
    from ffctl.core.config import parse_config

    cfg = parse_config(PLANNER_CONFIG)
    skus = {"W": ("widgets", False), "G": ("gadgets", False), "X": (None, True)}
    customers = {"C1": ("gold", "east", "alice"), "C2": ("silver", None, None)}
    orders = [  # order_id, customer, channel, region, priority, created (local), [(sku, qty)]
        ("A", "C1", "b2b", None, None, "2026-11-23 08:00", [("W", 1)]),  # pilot, tech_confirm skipped: all skipped
        ("B", "C1", "b2b", None, None, "2026-11-27 16:59", [("X", 1)]),  # pilot at tech_confirm
        ("C", "C2", None, "west", 2, "2026-11-23 17:50", [("G", 1), ("W", 2)]),  # gadgets, credit review over the night
        ("D", "C2", "shop", None, None, "2026-11-28 10:00", [("X", 3)]),  # shops: a Saturday
        ("E", "C2", "web", None, 0, "2026-11-23 09:00", [("W", 1)]),  # no workflow matches
        ("F", "C2", "shop", None, None, "2026-11-23 09:00", [("W", 1)]),  # the same clocks as E's time
        ("G", "C2", "shop", None, None, "2026-11-29 23:30", [("W", 1)]),  # closed: starts at D's opening
    ]
    parse_time = csvio.time_parser(cfg.timezone)
    facts = []
    for oid, cust, channel, region, prio, created, lines in orders:
        tier, cregion, rep = customers[cust]
        facts.append(
            workflow.routing_facts(
                oid,
                csvio.from_stored(parse_time(created)),
                channel=channel,
                region=region,
                customer=cust,
                sales_rep=None,
                priority=prio,
                tier=tier,
                customer_region=cregion,
                customer_rep=rep,
                lines=[(s, *skus[s]) for s, _ in lines],
            )
        )
    entries = workflow.plan_entries(cfg, facts, actor="importer")
    assert entries.moves == {
        "A": ("pilot", None),
        "B": ("pilot", "tech_confirm"),
        "C": ("gadgets", "credit_review"),
        "D": ("shops", "credit_review"),
        "E": (None, None),
        "F": ("shops", "credit_review"),
        "G": ("shops", "credit_review"),
    }

    def rows(part):  # each row as every column it writes
        return [{**part.fixed, **dict(zip(part.columns, row))} for row in part.rows]

    tasks = {(t["order_id"], t["node"]): t for part in entries.tasks() for t in rows(part)}
    assert tasks[("A", "tech_confirm")]["status"] == "skipped"
    assert tasks[("C", "credit_review")]["deadline"] == "2026-11-24 01:20:00.000000"  # 10 min + 20 min next morning
    d, g = tasks[("D", "credit_review")], tasks[("G", "credit_review")]
    assert d["entered_at"] != g["entered_at"] and d["deadline"] == g["deadline"]  # both wait for Monday's opening
    events = [(e["order_id"], e["event"], e["node"]) for e in rows(entries.events)]
    assert events[:3] == [("A", "created", None), ("A", "skipped", "tech_confirm"), ("B", "created", None)]
    assert ("E", "created", None) in events and not [e for e in events if e[0] == "E" and e[1] != "created"]
    assert {e["actor"] for e in rows(entries.events)} == {"importer"}


def test_a_bulk_import_leaves_fresh_planner_statistics(ws):
    """Planned blind, key lookups after a bulk load become scans: the import analyzes what it grew."""
    lines = [f"S{i:05d},1,C{1 + i % 2},A{1 + i % 3},{1 + i % 7},2026/11/2{i % 5} 09:00" for i in range(1500)]
    ok(run(ws, "orders", ws.write("o.csv", "order_id,line_no,customer,sku,qty,created_at\n" + "\n".join(lines) + "\n")))
    if ws.db_url.startswith("sqlite"):
        stats = dict(query(ws, "SELECT tbl, max(CAST(stat AS INTEGER)) FROM sqlite_stat1 GROUP BY tbl"))
    else:
        stats = dict(
            query(
                ws,
                "SELECT relname, reltuples FROM pg_class WHERE relname IN "
                "('orders', 'order_line', 'task', 'event') AND relkind = 'r' "
                "AND relnamespace = to_regnamespace(current_schema())::oid",
            )
        )
    assert stats["orders"] == stats["order_line"] == stats["task"] == 1500
    assert stats["event"] == 3000
    # a small import on top does not analyze again
    ok(run(ws, "orders", ws.write("p.csv", "order_id,line_no,customer,sku,qty\nT1,1,C1,A1,1\n")))
    if ws.db_url.startswith("sqlite"):
        assert scalar(ws, "SELECT max(CAST(stat AS INTEGER)) FROM sqlite_stat1 WHERE tbl = 'orders'") == 1500


def test_prepared_rows_are_checked_again_by_the_writer(ws):
    """PostgreSQL imports prepare a batch's rows ahead of the transaction that writes it: an order
    another import stored in between is found there and not inserted twice."""
    from ffctl.core import imports
    from ffctl.core.config import load_config

    cfg = load_config(ws.config_path)
    store = ws.store()
    try:
        ctx = imports._context(
            store, cfg, now=datetime(2026, 11, 25, 2, tzinfo=timezone.utc), actor="importer", update=False
        )
        ctx.present = frozenset(imports.ORDER_COLUMNS)
        spec = imports.KINDS["orders"]

        def record(oid):
            return imports.Record(oid, [(1, 2, (oid, 1, "C1", "A1", 2) + (None,) * 7)])

        batch = [record("R1"), record("R2")]
        handler = spec.handler()
        with store.session() as s:
            prepared = handler.prepare(s, ctx, spec, batch)
        assert prepared[1] == ["R1", "R2"]
        ok(
            run(
                ws,
                "orders",
                ws.write("r1.csv", "order_id,line_no,customer,sku,qty\nR1,1,C1,A1,2\n"),
                now="2026-11-25T10:00:00+08:00",
            )
        )
        with store.session(write=True) as s:
            outcomes = handler.apply(s, ctx, spec, batch, True, prepared=prepared)
    finally:
        store.dispose()
    assert outcomes == [(imports.UNCHANGED, None), (imports.NEW, None)]
    assert query(ws, "SELECT order_id, count(*) FROM order_line GROUP BY order_id ORDER BY order_id") == [
        ("R1", 1),
        ("R2", 1),
    ]
    assert query(
        ws, "SELECT order_id, count(*) FROM event WHERE event = 'created' GROUP BY order_id ORDER BY order_id"
    ) == [("R1", 1), ("R2", 1)]
    assert scalar(ws, "SELECT count(*) FROM task WHERE order_id = 'R2' AND status = 'open'") == 1


def test_batches_commit_without_a_checkpoint_each_and_the_connection_gets_its_checkpoints_back(ws):
    # SQLite: an import's batch commits leave the WAL to one checkpoint after the last batch
    # (bulk.sqlite_defer_checkpoints); the pooled connection then checkpoints as before. Every
    # batch is still its own transaction (tests/test_imports_kill.py kills an import half way).
    from ffctl.core.config import load_config
    from ffctl.core.imports import import_file

    text = "order_id,line_no,customer,sku,qty\n" + "".join(f"B{i:03d},1,C1,A1,1\n" for i in range(50))
    store = ws.store()
    try:
        report = import_file(
            store,
            load_config(ws.config_path),
            "orders",
            ws.write("batches.csv", text),
            now=datetime.fromisoformat(NOW),
            actor="importer",
            batch_rows=10,
        )
        assert (report.written, report.batches) == (50, 5)
        with store.session() as s:
            assert s.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 50
            if store.dialect == "sqlite":
                assert s.execute(sa.text("PRAGMA wal_autocheckpoint")).scalar() == 1000
    finally:
        store.dispose()


@pytest.mark.parametrize("sqlite_writer_thread", [False, True], ids=["default", "sqlite-writer-thread"])
def test_an_error_in_the_writer_thread_stops_the_import_with_that_error(ws, monkeypatch, sqlite_writer_thread):
    # the batches are written by a writer thread (imports.pipeline._run_pipelined; on SQLite with
    # SQLITE_WRITER_THREAD): an error there is the import's error, raised as it is, with the batches
    # before it committed and nothing after
    from ffctl.core.config import load_config
    from ffctl.core.errors import StoreError
    from ffctl.core.imports import import_file, pipeline
    from ffctl.core.imports.orders import Orders

    insert, calls = Orders._insert, []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise StoreError("the disk is full")
        return insert(self, *args, **kwargs)

    monkeypatch.setattr(Orders, "_insert", failing)
    monkeypatch.setattr(pipeline, "SQLITE_WRITER_THREAD", sqlite_writer_thread)
    text = "order_id,line_no,customer,sku,qty\n" + "".join(f"W{i:03d},1,C1,A1,1\n" for i in range(50))
    store = ws.store()
    try:
        with pytest.raises(StoreError, match="the disk is full"):
            import_file(
                store,
                load_config(ws.config_path),
                "orders",
                ws.write("writer.csv", text),
                now=datetime.fromisoformat(NOW),
                actor="importer",
                batch_rows=10,
            )
    finally:
        store.dispose()
    import threading

    assert not [t for t in threading.enumerate() if t.name == "ffctl-import-writer"]
    assert scalar(ws, "SELECT count(*) FROM orders") == 10
    assert scalar(ws, "SELECT count(*) FROM task") == 10
    assert scalar(ws, "SELECT max(order_id) FROM orders") == "W009"
    monkeypatch.setattr(Orders, "_insert", insert)
    ok(run(ws, "orders", ws.write("writer.csv", text)))  # the rest goes in on the next run
    assert scalar(ws, "SELECT count(*) FROM orders") == 50
