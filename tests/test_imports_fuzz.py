"""Property-based fuzzing of `ffctl import`: any input gives a clean error or a correct import,
never a traceback and never a partial order.

SQLite only, with a modest number of examples (each example copies a fresh store); the same
code runs on PostgreSQL in test_imports.py. Two generators: raw bytes (anything at all), and
structured CSV files whose cells mix good values with every kind of bad one, in any column
order, in UTF-8, UTF-8 with BOM or GBK.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import Workspace
from helpers import NOW, masters
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ffctl.core import csvio
from ffctl.core.clock import parse_time

SETTINGS = settings(
    max_examples=int(os.environ.get("FFCTL_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COLUMNS = [
    "order_id",
    "line_no",
    "customer",
    "sku",
    "qty",
    "channel",
    "region",
    "unit_price",
    "created_at",
    "promised_ship_date",
    "priority",
    "sales_rep",
]


@pytest.fixture
def base(tmp_path, make_db_url):
    """A store with masters loaded, copied afresh for each example."""
    url = make_db_url("sqlite")
    ws = Workspace(path=tmp_path, db_url=url, config_path=tmp_path / "ffctl.toml")
    shutil.copy(Path(__file__).resolve().parent.parent / "config.example.toml", ws.config_path)
    masters(ws)

    def fresh() -> Workspace:
        target = tmp_path / f"fuzz-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(url.split("///", 1)[1], target)
        return Workspace(path=tmp_path, db_url=f"sqlite:///{target}", config_path=ws.config_path)

    return fresh


def state(ws):
    store = ws.store()
    try:
        with store.session() as s:
            orders = set(s.execute(sa.text("SELECT order_id FROM orders")).scalars())
            lines: dict[str, set] = {}
            for oid, n, sku, qty in s.execute(sa.text("SELECT order_id, line_no, sku, qty FROM order_line")):
                lines.setdefault(oid, set()).add((n, sku, qty))
            tasks = dict(
                s.execute(sa.text("SELECT order_id, count(*) FROM task WHERE status = 'open' GROUP BY order_id")).all()
            )
    finally:
        store.dispose()
    return orders, lines, tasks


def clean(result) -> None:
    """Exit 0 or 1 with an `Error:` line; never a traceback or the unexpected-error handler."""
    assert result.exit_code in (0, 1), (result.exit_code, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, result.stderr
    if result.exit_code == 1:
        assert "Error: " in result.stderr


def whole_orders(ws) -> tuple[set, dict]:
    orders, lines, tasks = state(ws)
    assert set(lines) == orders  # no order without lines, no lines without their order
    assert all(tasks.get(oid) == 1 for oid in orders)  # each has its open task
    stored = {v for row in text_columns(ws) for v in row if v is not None}
    assert not [v for v in stored if csvio.CONTROL.search(v)]  # no control character, no NUL is stored
    return orders, lines


def text_columns(ws) -> list[tuple]:
    store = ws.store()
    try:
        with store.session() as s:
            return [tuple(r) for r in s.execute(sa.text("SELECT order_id, channel, region, sales_rep FROM orders"))]
    finally:
        store.dispose()


@SETTINGS
@given(data=st.binary(max_size=600), mode=st.sampled_from(["abort", "skip"]))
def test_any_bytes_give_a_clean_result(base, data, mode):
    ws = base()
    path = ws.path / f"{uuid.uuid4().hex[:8]}.csv"
    path.write_bytes(b"order_id,line_no,customer,sku,qty\n" + data if data[:1] != b"!" else data)
    args = ["import", "orders", str(path), "--on-error", mode]
    if mode == "skip":
        args += ["--rejects", str(path.with_suffix(".rej.csv"))]
    result = ws.run(*args, now=NOW)
    clean(result)
    whole_orders(ws)


GOOD = {
    "order_id": st.sampled_from(["F1", "F2", "F3", "订单4"]),
    "line_no": st.sampled_from(["1", "2", "3"]),
    "customer": st.sampled_from(["C1", "C2"]),
    "sku": st.sampled_from(["A1", "A2", "A3"]),
    "qty": st.integers(1, 50).map(str),
    "channel": st.sampled_from(["b2b", "shop", ""]),
    "region": st.sampled_from(["east", "华东", ""]),
    "unit_price": st.sampled_from(["12.5", "0", "1,299.00", ""]),
    "created_at": st.sampled_from(["2026/11/24 09:00", "2026-11-24T09:00:00+08:00", "2026/11/24", ""]),
    "promised_ship_date": st.sampled_from(["2026/12/01", "2026-12-02", ""]),
    "priority": st.sampled_from(["high", "3", "-1", ""]),
    "sales_rep": st.sampled_from(["alice", "王五", ""]),
}
BAD = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1.5",
            "x",
            "ZZ",
            "C9",
            "2026-13-40",
            "nan",
            "inf",
            "1e309",
            "=1+1",
            '"',
            "a,b",
            "line\nbreak",
            "\t",
            "99999999999999999999",
            "１２",
            "\x00",
            "A1\x00",
            "\x1b[2J",
            "SO2\r\nBcc: x@evil.example",
            "\x85",
            '=HYPERLINK("x")',
            "1970/01/01",
            "2031/01/01",
        ]
    ),
    st.text(max_size=12),
)


@st.composite
def csv_files(draw):
    columns = draw(st.permutations(COLUMNS[:5]))
    columns += draw(st.lists(st.sampled_from(COLUMNS[5:]), unique=True, max_size=4))
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        row = {c: draw(GOOD[c]) if draw(st.integers(0, 9)) else draw(BAD) for c in columns}
        rows.append(row)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gbk"]))
    return columns, rows, encoding


def render(columns, rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # so that a bare \r in a cell is quoted too
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row[c] for c in columns])
    return out.getvalue()


@SETTINGS
@given(spec=csv_files(), mode=st.sampled_from(["abort", "skip"]))
def test_structured_files_import_whole_orders_or_reject_them(base, spec, mode):
    columns, rows, encoding = spec
    ws = base()
    text = render(columns, rows)
    try:
        payload = text.encode(encoding)
    except UnicodeEncodeError:
        payload = text.encode("utf-8")
    path = ws.path / f"{uuid.uuid4().hex[:8]}.csv"
    path.write_bytes(payload)
    rejects = path.with_suffix(".rej.csv")
    args = ["import", "orders", str(path), "--on-error", mode] + (["--rejects", str(rejects)] if mode == "skip" else [])
    result = ws.run(*args, now=NOW)
    clean(result)
    orders, lines = whole_orders(ws)
    if mode == "abort" and result.exit_code == 1:
        assert not orders  # nothing written
    # an imported order has exactly the lines the file gives it
    for oid in orders:
        given_lines = {(int(r["line_no"]), r["sku"], int(r["qty"])) for r in rows if r["order_id"].strip() == oid}
        assert lines[oid] == given_lines, (oid, lines[oid], given_lines)
    if mode == "skip" and result.exit_code == 1 and "rows read" in result.stderr:
        # every row is either in the store or in the rejects file
        with open(rejects, encoding="utf-8-sig", newline="") as f:
            rejected = list(csv.reader(f))[1:]
        imported = sum(len(v) for v in lines.values())
        assert (
            imported + len(rejected) == sum(1 for r in rows if any(v.strip() for v in r.values()))
            or "not valid CSV" in result.stderr
        )
        # and the rejects file imports as it is (it may still have errors: then cleanly)
        clean(
            ws.run(
                "import",
                "orders",
                str(rejects),
                "--on-error",
                "skip",
                "--rejects",
                str(path.with_suffix(".r2.csv")),
                now=NOW,
            )
        )
        whole_orders(ws)


@settings(max_examples=400, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    tz=st.sampled_from(
        [
            "Asia/Shanghai",
            "UTC",
            "America/New_York",
            "Europe/London",
            "Australia/Lord_Howe",
            "America/Sao_Paulo",
            "Pacific/Chatham",
        ]
    ),
    form=st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y/%m/%d %H:%M", "%Y/%m/%d"]),
)
def test_import_times_are_stored_as_parse_time_gives_them(moment, tz, form):
    """The import's time parser (a naive time less its zone's offset there) stores exactly what
    clock.parse_time gives, in gaps and folds of daylight saving time too; a time written before
    the year 2000 is refused (csvio.EARLIEST_YEAR)."""
    text = f"{moment.year:04d}" + moment.strftime(form)[4:]
    try:
        expected = csvio.stored_time(parse_time(text, tz)) if moment.year >= csvio.EARLIEST_YEAR else None
    except (ValueError, OverflowError):
        expected = None
    try:
        got = csvio.time_parser(tz)(text)
    except ValueError:
        got = None
    assert got == expected


# --- reading: encodings, delimiters, stray quotes (csvio alone, no store) --------------------------

# The 3,755 Chinese characters of GB2312's first level: what names and places are written with
HANZI = [
    bytes([hi, lo]).decode("gb2312")
    for hi in range(0xB0, 0xD8)
    for lo in range(0xA1, 0xFF)
    if not (hi == 0xD7 and lo > 0xF9)
]
HANZI_SET = frozenset(HANZI)
NAMES = st.text(st.sampled_from(HANZI), min_size=1, max_size=8)
ASCII_CELLS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789 -_./"), max_size=10)


def read_all(path, **kwargs):
    source = csvio.open_csv(path, **kwargs)
    try:
        return source, [source.header] + [cells for _, cells, _ in source.rows]
    finally:
        source.close()


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(ASCII_CELLS, st.one_of(NAMES, ASCII_CELLS), st.one_of(NAMES, ASCII_CELLS)), min_size=1, max_size=20
    ),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gbk"]),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_a_file_of_chinese_names_reads_back_exactly_in_any_encoding_and_delimiter(
    tmp_path_factory, rows, encoding, delimiter
):
    """Whatever the encoding (GBK whose bytes happen to be valid UTF-8 included) and the delimiter,
    detection reads a one-encoding file of real names as it was written. (One or two characters
    are not enough to tell by: GBK 一 is UTF-8 һ, as UTF-8 ± is GBK 卤.)"""
    assume(sum(len(cell) for row in rows for cell in row if cell[:1] in HANZI_SET) >= 4)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    header = ["customer", "name", "region"]
    writer.writerow(header)
    writer.writerows(rows)
    path = tmp_path_factory.mktemp("enc") / "names.csv"
    path.write_bytes(out.getvalue().encode(encoding))
    source, read = read_all(path)
    assert read == [header] + [list(r) for r in rows]
    assert source.delimiter == delimiter


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.text(st.sampled_from("abcxyz019 "), max_size=6), min_size=3, max_size=3), min_size=1, max_size=15
    ),
    at=st.integers(0, 1000),
    field=st.integers(0, 2),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_one_stray_quote_loses_no_row(tmp_path_factory, rows, at, field, delimiter):
    """A quote that opens a value and never closes is one flawed record on its own line; every
    other line is still read as the record it is."""
    stray = 1 + at % len(rows)
    rows = [list(row) for row in rows]
    rows[stray - 1][field] = '"' + rows[stray - 1][field]
    lines = [delimiter.join("abc")] + [delimiter.join(row) for row in rows]
    path = tmp_path_factory.mktemp("quote") / "stray.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = csvio.open_csv(path)
    try:
        records = list(source.rows)
    finally:
        source.close()
    flawed = [line for line, _, flaw in records if flaw is not None]
    assert flawed == [stray + 1]
    assert [line for line, _, _ in records] == list(range(2, len(lines) + 1))
    for line, read, flaw in records:
        if flaw is None:
            assert read == lines[line - 1].split(delimiter)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.lists(st.one_of(ASCII_CELLS, NAMES, st.just('a "quoted"\nvalue')), min_size=2, max_size=3),
        min_size=1,
        max_size=12,
    ),
    endings=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=3),
    encoding=st.sampled_from(["utf-8", "gbk"]),
    block=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]),
)
def test_lines_read_in_blocks_as_a_text_file_reads_them(tmp_path_factory, monkeypatch, rows, endings, encoding, block):
    """Whatever the line ends (LF, CRLF, a lone CR, mixed) and wherever a block of bytes ends, the
    records are those Python's csv module reads from the text file."""
    monkeypatch.setattr(csvio, "BLOCK_BYTES", block)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["a", "b", "c"][: len(rows[0])])
    writer.writerows(rows)
    lines = out.getvalue().split("\n")
    text = "".join(line + endings[i % len(endings)] for i, line in enumerate(lines[:-1]))
    path = tmp_path_factory.mktemp("blocks") / "f.csv"
    path.write_bytes(text.encode(encoding))
    with open(path, encoding="gb18030" if encoding == "gbk" else "utf-8", newline="") as f:
        expected = [r for r in csv.reader(f) if r and not (len(r) == 1 and not r[0].strip())]
    _, read = read_all(path, encoding="gb18030" if encoding == "gbk" else None)
    assert read == expected
