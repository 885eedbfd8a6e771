"""Reading CSV as people export it, through `ffctl import` on both backends: encodings chosen by
plausibility and checked line by line, delimiters, stray quotes, hostile cells, implausible
times, long values, templates, --strict and the progress bar's rate."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from helpers import NOW, QUICK_CONFIG, masters, ok, query, run, scalar

KIND_ORDER = (
    "suppliers",
    "products",
    "customers",
    "stock",
    "receipts",
    "orders",
    "shipments",
    "deliveries",
    "returns",
    "qc",
)


@pytest.fixture
def ws(workspace):
    masters(workspace)
    return workspace


# --- stray quotes ------------------------------------------------------------------------------

STRAY = 'sku,name,category\nSQ-1,"27 inch monitor,electronics\nSQ-2,Keyboard,electronics\nSQ-3,Mouse,electronics\n'


def test_an_unterminated_quote_is_a_row_error_and_swallows_no_row(workspace):
    ws = workspace
    src = ws.write("stray.csv", STRAY)
    r = run(ws, "products", src)
    assert r.exit_code == 1
    assert 'line 2: a quoted value opens on this line and is never closed (a stray " character?)' in r.stderr
    assert "3 rows read; nothing imported" in r.stderr
    assert scalar(ws, "SELECT count(*) FROM product") == 0
    rejects = ws.path / "rejects.csv"
    r = run(ws, "products", src, "--on-error", "skip", "--rejects", rejects)
    assert r.exit_code == 1 and "products: 2 new" in r.stderr and "1 row rejected" in r.stderr
    assert query(ws, "SELECT sku, name FROM product ORDER BY sku") == [("SQ-2", "Keyboard"), ("SQ-3", "Mouse")]
    rejected = list(csv.reader(io.StringIO(rejects.read_text(encoding="utf-8-sig"))))
    assert [row[0] for row in rejected] == ["sku", "SQ-1"]
    # a stray quote on the last line, after a quoted value that does close (over two lines)
    last = ws.write("last.csv", 'sku,name\nSQ-4,"Two\nlines"\nSQ-5,Plain\nSQ-6,"unclosed\n')
    r = run(ws, "products", last, "--on-error", "skip")
    assert "line 2: name 'Two\\nlines': contains a line break (LF)" in r.stderr
    assert "line 5: a quoted value opens" in r.stderr and "products: 1 new" in r.stderr


# --- encodings ---------------------------------------------------------------------------------


def test_gbk_names_whose_bytes_are_valid_utf8_read_as_gbk(workspace):
    ws = workspace
    text = "customer,name\nK1,郑伟\nK2,谢强\nK3,石英\n"
    data = text.encode("gbk")
    data.decode("utf-8")  # the trap: every byte of it is valid UTF-8 too
    src = ws.path / "names.csv"
    src.write_bytes(data)
    r = ok(run(ws, "customers", src))
    assert "Note: read " in r.stderr and "as GBK/GB18030 (detected; --encoding NAME overrides)" in r.stderr
    assert query(ws, "SELECT customer, name FROM customer ORDER BY customer") == [
        ("K1", "郑伟"),
        ("K2", "谢强"),
        ("K3", "石英"),
    ]
    # --encoding still overrides: read as UTF-8 these are other characters
    ok(run(ws, "customers", src, "--encoding", "utf-8"))
    assert scalar(ws, "SELECT name FROM customer WHERE customer = 'K1'") == data.split(b"\n")[1][3:].decode("utf-8")


@pytest.mark.parametrize("utf8_first", [True, False])
def test_a_file_mixing_utf8_and_gbk_lines_is_refused_naming_the_line(workspace, utf8_first):
    ws = workspace
    utf8 = "G1,南京商贸,华东\n".encode()
    gbk = "G2,北京科技,华北\n".encode("gbk")
    src = ws.path / "mixed.csv"
    src.write_bytes(b"customer,name,region\n" + (utf8 + gbk if utf8_first else gbk + utf8))
    r = run(ws, "customers", src)
    assert r.exit_code == 1
    assert f"line {2 if utf8_first else 3} is written in UTF-8, while the file reads as GBK/GB18030" in r.stderr
    assert "--encoding" in r.stderr
    assert scalar(ws, "SELECT count(*) FROM customer") == 0
    # far apart: a UTF-8 file with a GBK line long after the sample detection reads
    far = (
        b"customer,name\n" + "".join(f"F{i},客户{i}\n" for i in range(4000)).encode("utf-8") + "X9,深圳\n".encode("gbk")
    )
    src.write_bytes(far)
    r = run(ws, "customers", src)
    assert r.exit_code == 1 and "line 4002 is written in GBK/GB18030, while the file reads as UTF-8" in r.stderr
    # --encoding reads every line in the one named
    ok(run(ws, "customers", src, "--encoding", "gb18030"))
    assert scalar(ws, "SELECT name FROM customer WHERE customer = 'X9'") == "深圳"


def test_gbk_after_a_long_ascii_start_on_stdin(workspace):
    ws = workspace
    text = "customer,name\n" + "".join(f"L{i},name {i}\n" for i in range(6000)) + "L9999,深圳公司\n"
    r = ws.run("import", "customers", "-", now=NOW, input=text.encode("gbk"))
    assert r.exit_code == 0, r.stderr
    assert "as GBK/GB18030" in r.stderr
    assert scalar(ws, "SELECT name FROM customer WHERE customer = 'L9999'") == "深圳公司"


# --- delimiters --------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter,name", [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_and_tab_files_are_detected_and_said(ws, delimiter, name):
    text = (
        "\n".join(
            delimiter.join(row)
            for row in (
                ("order_id", "line_no", "customer", "sku", "qty", "unit_price"),
                ("D1", "1", "C1", "A1", "2", "1,5" if delimiter == ";" else "1.5"),
            )
        )
        + "\n"
    )
    r = run(ws, "orders", ws.write("d.csv", text), "--ignore-unknown" if delimiter == ";" else "--dry-run")
    assert r.exit_code in (0, 1), r.stderr
    assert f"the cells of {ws.path / 'd.csv'} are separated by {name} (detected; --delimiter overrides)" in r.stderr
    assert "unknown column" not in r.stderr


def test_delimiter_option_overrides_detection(ws):
    src = ws.write("d.csv", "order_id;line_no;customer;sku;qty\nD2;1;C1;A1;2\n")
    r = run(ws, "orders", src, "--delimiter", ",")
    assert r.exit_code == 1
    assert "unknown column 'order_id;line_no;customer;sku;qty'" in r.stderr
    assert "The header looks separated by semicolon rather than comma: pass --delimiter ';'" in r.stderr
    ok(run(ws, "orders", src, "--delimiter", "semicolon"))
    assert scalar(ws, "SELECT qty FROM order_line WHERE order_id = 'D2'") == 2
    tab = ws.write("t.csv", "order_id\tline_no\tcustomer\tsku\tqty\nD3\t1\tC1\tA1\t4\n")
    ok(run(ws, "orders", tab, "--delimiter", "tab"))
    r = run(ws, "orders", tab, "--delimiter", "ab")
    assert r.exit_code == 2 and "--delimiter 'ab': give one character" in r.stderr


# --- long values -------------------------------------------------------------------------------


def test_a_ten_megabyte_cell_is_cut_in_messages_and_kept_in_the_rejects_file(ws):
    huge = "x" * (10 * 1024 * 1024)
    src = ws.write("big.csv", f"order_id,line_no,customer,sku,qty\nB1,1,{huge},A1,1\nB2,1,C1,A1,1\n")
    rejects = ws.path / "rejects.csv"
    r = run(ws, "orders", src, "--on-error", "skip", "--rejects", rejects)
    assert r.exit_code == 1
    assert len(r.stderr) < 5000
    assert f"line 2: customer '{'x' * 60}'... (10,485,760 characters): unknown customer" in r.stderr
    with open(rejects, encoding="utf-8-sig", newline="") as f:
        assert [row[2] for row in csv.reader(f)][1] == huge
    assert scalar(ws, "SELECT count(*) FROM orders") == 1


# --- hostile cells -----------------------------------------------------------------------------


def test_control_characters_in_keys_and_names_are_row_errors_naming_the_column(ws):
    text = (
        "order_id,line_no,customer,sku,qty,channel\n"
        '"SO2\r\nBcc: x@evil.example",1,C1,A1,1,web\n'
        'SO3,1,C1,A1,1,"\x1b]0;owned\x07\x1b[2J"\n'
        "SO4,1,C1,A1,1,web\n"
    )
    rejects = ws.path / "rejects.csv"
    r = run(ws, "orders", ws.write("c.csv", text), "--on-error", "skip", "--rejects", rejects)
    assert r.exit_code == 1
    assert (
        "line 2: order_id 'SO2\\r\\nBcc: x@evil.example': contains a carriage return (CR): "
        "keys and names must be one line of printable text"
    ) in r.stderr
    assert "line 4: channel '\\x1b]0;owned\\x07\\x1b[2J': contains an escape character (ESC)" in r.stderr
    assert "\x1b" not in r.stderr  # echoed escaped, never raw to the terminal
    assert query(ws, "SELECT order_id FROM orders") == [("SO4",)]
    r = run(
        ws,
        "customers",
        ws.write("n.csv", 'customer,name\nN1,"Acme\nLtd"\nN2,Tab\there\nN3, fine \n'),
        "--on-error",
        "skip",
    )
    assert "line 2: name 'Acme\\nLtd': contains a line break (LF)" in r.stderr
    assert "line 4: name 'Tab\\there': contains a tab" in r.stderr
    assert query(ws, "SELECT customer, name FROM customer WHERE customer LIKE 'N%'") == [("N3", "fine")]


def test_a_nul_byte_in_any_cell_is_a_row_error_and_the_rest_imports(ws):
    text = (
        "order_id,line_no,customer,sku,qty,region,unit_price,colour\n"
        "Z1,1,C1,A1,1,ea\x00st,,\n"  # a stored text column
        "Z2,1,C1,A1,1,,1\x002,\n"  # a number
        "Z3,1,C1,A1,1,,,re\x00d\n"  # a column ffctl does not keep
        "Z4,1,C1,A1,1,east,,\n"
    )
    r = run(ws, "orders", ws.write("nul.csv", text), "--on-error", "skip", "--ignore-unknown")
    assert r.exit_code == 1, r.stderr
    assert "line 2: region 'ea\\x00st': contains a NUL byte" in r.stderr
    assert "line 3: unit_price '1\\x002': must be a number" in r.stderr
    assert "line 4: colour 're\\x00d': contains a NUL byte, which cannot be stored" in r.stderr
    assert query(ws, "SELECT order_id, region FROM orders") == [("Z4", "east")]


def test_rejects_holding_formula_cells_are_replayed_as_they_are_and_said(ws):
    rejects = ws.path / "rejects.csv"
    text = "order_id,line_no,customer,sku,qty\nF1,1,C1,A1,=1+1\nF2,1,C1,A1,-3\n"
    r = run(ws, "orders", ws.write("f.csv", text), "--on-error", "skip", "--rejects", rejects)
    assert r.exit_code == 1
    assert (
        "Warning: 1 row in " in r.stderr
        and "has a cell starting with =, +, - or @, kept as it was so the file "
        "imports as it is; a spreadsheet may run it as a formula"
        in r.stderr
    )
    assert "F1,1,C1,A1,=1+1," in rejects.read_text(encoding="utf-8-sig")
    r = run(
        ws,
        "orders",
        ws.write("g.csv", "order_id,line_no,customer,sku,qty\nF3,1,C1,A1,0\n"),
        "--on-error",
        "skip",
        "--rejects",
        rejects,
    )
    assert "spreadsheet may run" not in r.stderr  # a plain number is not a formula


# --- implausible times -------------------------------------------------------------------------


def test_implausible_order_times_are_row_errors(ws):
    text = (
        "order_id,line_no,customer,sku,qty,created_at,promised_ship_date\n"
        "T1,1,C1,A1,1,2030-01-05 10:00,2030-01-09\n"  # after the command clock
        "T2,1,C1,A1,1,1970-01-01 08:00,\n"  # a spreadsheet's zero date
        "T3,1,C1,A1,1,2026-11-20 10:00,2026-11-19\n"  # promised before it was created
        "T4,1,C1,A1,1,2026-11-26 09:00,\n"  # within a day ahead: clocks disagree
        "T5,1,C1,A1,1,2026-11-20 23:30,2026/11/20\n"  # promised the day it was created (local date)
        "T6,1,C1,A1,1,,1999/12/31\n"
    )
    r = run(ws, "orders", ws.write("t.csv", text), "--on-error", "skip")
    assert r.exit_code == 1
    assert (
        "line 2: created_at '2030-01-05 10:00': is more than a day after the command clock "
        "(2026-11-25 10:00+08:00): an order cannot come from the future"
    ) in r.stderr
    assert "line 3: created_at '1970-01-01 08:00': is before 2000: not a plausible date here" in r.stderr
    assert "line 4: promised_ship_date '2026-11-19': is before the order's created_at (2026-11-20)" in r.stderr
    assert "line 7: promised_ship_date '1999/12/31': is before 2000" in r.stderr
    assert query(ws, "SELECT order_id FROM orders ORDER BY order_id") == [("T4",), ("T5",)]
    # the same 2030 order imports once the clock is there
    ok(
        run(
            ws,
            "orders",
            ws.write("t2.csv", "order_id,line_no,customer,sku,qty,created_at\nT1,1,C1,A1,1,2030-01-05 10:00\n"),
            now="2030-01-05T09:00:00+08:00",
        )
    )


# --- case-insensitive channel and region ---------------------------------------------------------


def test_channel_and_region_compare_without_case_and_keep_the_first_spelling(ws):
    ok(
        run(
            ws,
            "orders",
            ws.write(
                "a.csv",
                "order_id,line_no,customer,sku,qty,channel,region\n"
                "W1,1,C1,A1,1,Web,\nW2,1,C1,A1,1,WEB,EAST\nW3,1,C2,A1,1,b2b,East\n",
            ),
        )
    )
    ok(
        run(
            ws,
            "orders",
            ws.write(
                "b.csv", "order_id,line_no,customer,sku,qty,channel,region\nW4,1,C2,A1,1,web,\nW5,1,C1,A1,1,B2B,east\n"
            ),
        )
    )
    assert query(ws, "SELECT order_id, channel, region FROM orders ORDER BY order_id") == [
        ("W1", "Web", "east"),
        ("W2", "Web", "east"),
        ("W3", "b2b", "east"),
        ("W4", "Web", "华南"),
        ("W5", "b2b", "east"),
    ]
    # routing: the pilot workflow matches channel b2b and region east, whatever the case
    assert query(ws, "SELECT order_id, workflow FROM orders WHERE order_id IN ('W3', 'W5') ORDER BY order_id") == [
        ("W3", "pilot"),
        ("W5", "pilot"),
    ]
    r = ws.run("report", "kpi", "--by", "channel", "--format", "json", now=NOW)
    assert r.exit_code == 0, r.stderr
    assert {row["group"] for row in json.loads(r.stdout)} - {"all"} == {"Web", "b2b"}
    r = ws.run("report", "kpi", "--by", "region", "--format", "json", now=NOW)
    assert {row["group"] for row in json.loads(r.stdout)} - {"all"} == {"east", "华南"}
    # a customer's region joins the spelling its orders have
    ok(run(ws, "customers", ws.write("c.csv", "customer,name,region\nC3,Gamma,EAST\nC4,Delta,华南\n")))
    assert query(ws, "SELECT customer, region FROM customer WHERE customer IN ('C3', 'C4') ORDER BY customer") == [
        ("C3", "east"),
        ("C4", "华南"),
    ]


# --- summaries -----------------------------------------------------------------------------------


def test_the_summary_counts_in_words(ws):
    r = ok(run(ws, "orders", ws.write("one.csv", "order_id,line_no,customer,sku,qty\nP1,1,C1,A1,1\n")))
    assert "1 row read in" in r.stderr and "0 rows rejected" in r.stderr
    r = run(ws, "orders", ws.write("bad.csv", "order_id,line_no,customer,sku,qty\nP2,1,C1,A1,0\n"))
    assert "Error: 1 error in" in r.stderr and "1 row read; nothing imported" in r.stderr
    r = run(ws, "orders", ws.path / "bad.csv", "--on-error", "skip", "--rejects", ws.path / "r.csv")
    assert "Error: 1 row rejected; it is in" in r.stderr and "1 rejected row was written to" in r.stderr


# --- templates ---------------------------------------------------------------------------------


def test_templates_have_every_column_and_the_examples_import_in_order(workspace_with_config):
    ws = workspace_with_config(QUICK_CONFIG)
    from ffctl.core.imports import KINDS

    assert set(KIND_ORDER) == set(KINDS)
    for kind in KIND_ORDER:
        r = ws.run("import", kind, "--template")
        assert r.exit_code == 0, r.stderr
        assert r.stdout.splitlines() == [",".join(KINDS[kind].columns)]
        r = ws.run("import", kind, "--template", "--example")
        rows = list(csv.reader(io.StringIO(r.stdout)))
        assert rows[0] == list(KINDS[kind].columns) and len(rows) == 4
        src = ws.path / f"{kind}.csv"
        src.write_text(r.stdout, encoding="utf-8")
        r = ok(run(ws, kind, src))
        assert "3 rows read" in r.stderr and "0 rows rejected" in r.stderr, r.stderr
    assert scalar(ws, "SELECT count(*) FROM orders WHERE status = 'delivered'") == 3
    assert scalar(ws, "SELECT count(*) FROM qc_batch") == 3
    r = ws.run("import", "orders", "--example")
    assert r.exit_code == 2 and "--example goes with --template" in r.stderr
    r = ws.run("import", "orders")
    assert r.exit_code == 2 and "give the CSV FILE" in r.stderr


# --- progress ------------------------------------------------------------------------------------


def test_progress_shows_a_real_rate_reading_stdin_and_checking(ws):
    """On a terminal, the rate column is rows over elapsed time for every phase: it showed 0
    rows/s for stdin (no size to measure against) and for the cross-row checks (one step)."""
    rows = 60_000
    data = ("sku,name\n" + "".join(f"PR{i:06d},Product {i}\n" for i in range(rows))).encode()
    env = {
        **os.environ,
        "FFCTL_CONFIG": str(ws.config_path),
        "FFCTL_DB": ws.db_url,
        "FFCTL_NOW": NOW,
        "FFCTL_USER": "admin_user",
        "COLUMNS": "160",
        "TERM": "xterm",
    }
    env.pop("FFCTL_DEBUG", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ffctl", "import", "products", "-"],
        stdin=subprocess.PIPE,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ws.path,
    )
    os.close(slave)
    proc.stdin.write(data)
    proc.stdin.close()
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode("utf-8", "replace"))
    assert proc.returncode == 0, text[-2000:]
    rates = {
        phase: [int(r.replace(",", "")) for r in re.findall(rf"{phase}\b[^\n\r]*?([\d,]+) rows/s", text)]
        for phase in ("reading", "checking")
    }
    assert rates["reading"] and rates["checking"], text[-3000:]
    assert all(rate > 0 for found in rates.values() for rate in found), rates
    assert not re.search(r"\s0 rows/s", text)
