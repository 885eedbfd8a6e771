"""The one renderer: tables keep data as typed (CJK aligned), CSV is formula-safe, JSON has offsets."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from ffctl.commands._output import Column, render

ROWS = [
    {"sku": "[b2b]", "name": "六角螺栓 M8", "qty": 3, "at": datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)},
    {"sku": '=HYPERLINK("x")', "name": "Hex bolt", "qty": -2, "at": None},
]
COLUMNS = [Column("sku"), Column("name"), Column("qty", justify="right"), Column("at")]


def test_table_prints_cells_as_data_and_aligns_cjk(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    render(ROWS, COLUMNS, "table", tz="Asia/Shanghai")
    out = capsys.readouterr().out
    assert "[b2b]" in out
    assert "2026-11-25 09:00" in out  # shown in the configured zone
    lines = [line for line in out.splitlines() if "│" in line]
    from rich.cells import cell_len

    assert len({cell_len(line) for line in lines}) == 1  # every row as wide as the header: CJK aligned


def test_a_narrow_terminal_wraps_words_whole_and_keeps_ids_whole(capsys, monkeypatch):
    rows = [
        {
            "order_id": f"SO{i:06d}",
            "node": "credit_review",
            "customer": "马超静机械厂有限公司",
            "qty": 12345,
            "at": datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc),
            "note": "waiting for the customer's answer",
        }
        for i in range(3)
    ]
    columns = [
        Column("order_id", "order"),
        Column("node"),
        Column("customer"),
        Column("qty", "qty ordered", justify="right"),
        Column("at", "entered"),
        Column("note"),
    ]
    monkeypatch.setenv("COLUMNS", "200")
    render(rows, columns, "table", tz="Asia/Shanghai")
    assert "│" in capsys.readouterr().out  # wide enough: the ruled table

    monkeypatch.setenv("COLUMNS", "72")
    render(rows, columns, "table", tz="Asia/Shanghai")
    out = capsys.readouterr().out
    from rich.cells import cell_len

    assert max(cell_len(line) for line in out.splitlines()) <= 72
    words = out.split()
    for whole in ("SO000000", "SO000002", "credit_review", "2026-11-25", "09:00", "12345", "customer's"):
        assert whole in words, out  # every word on one line, none cut at the column's edge (Chinese may
        # break between any two characters, as it does in print)


def test_a_terminal_too_narrow_for_every_word_leaves_out_the_columns_marked_to_go_first(capsys, monkeypatch):
    rows = [
        {
            "order_id": "SO000001",
            "node": "credit_review",
            "owner": "finance_reviewer",
            "assignees": "finance_reviewer, finance_manager",
            "deadline": "2026-11-25 09:30",
            "state": "breached",
        }
    ]
    columns = [
        Column("order_id", "order"),
        Column("node"),
        Column("owner", narrow_drop=1),
        Column("assignees"),
        Column("deadline", narrow_drop=2),
        Column("state"),
    ]
    monkeypatch.setenv("COLUMNS", "66")  # the longest words of all but owner, two spaces apart
    render(rows, columns, "table", tz="UTC")
    out, err = capsys.readouterr()
    words = out.split()
    assert "finance_reviewer," in words and "credit_review" in words and "deadline" in words
    assert "owner" not in words
    assert err.startswith("Not shown, for the terminal's width: owner (")
    monkeypatch.setenv("COLUMNS", "200")
    render(rows, columns, "table", tz="UTC")
    out, err = capsys.readouterr()
    assert "owner" in out and err == ""
    render(rows, columns, "csv", tz="UTC")
    assert capsys.readouterr().out.startswith("order_id,node,owner,assignees,deadline,state")


def test_csv_neutralises_formulas_but_not_numbers(capsys):
    render(ROWS, COLUMNS, "csv", tz="Asia/Shanghai")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "sku,name,qty,at"
    assert out[1].startswith("[b2b],六角螺栓 M8,3,2026-11-25T09:00:00+08:00")
    assert out[2].startswith('"\'=HYPERLINK(""x"")",Hex bolt,-2,')


def test_json_has_offsets_and_keeps_chinese(capsys):
    render(ROWS, COLUMNS, "json", tz="Asia/Shanghai")
    data = json.loads(capsys.readouterr().out)
    assert data[0]["at"] == "2026-11-25T09:00:00+08:00" and data[0]["name"] == "六角螺栓 M8"
    assert data[1]["at"] is None


def test_json_and_csv_stream_an_iterator_with_the_bytes_of_the_whole_list(capsys):
    """render takes a generator: each row is out before the next is made, and the text is what
    the list at once would give (json.dumps(indent=2); CSV with its header, even when empty)."""
    from ffctl.commands._output import dumps

    def rows(out: list[str]):
        for row in ROWS * 3:
            out.append(capsys.readouterr().out)  # what was printed before this row was made
            yield row

    for kind in ("json", "csv"):
        render(ROWS * 3, COLUMNS, kind, tz="Asia/Shanghai")
        whole = capsys.readouterr().out
        seen: list[str] = []
        render(rows(seen), COLUMNS, kind, tz="Asia/Shanghai")
        streamed = "".join(seen) + capsys.readouterr().out
        assert streamed == whole
        assert all(seen[1:]), kind  # every row after the first found the one before it already printed
    assert whole.startswith("sku,name,qty,at\n")
    render([], COLUMNS, "json")
    render(iter([]), COLUMNS, "csv")
    assert capsys.readouterr().out == "[]\nsku,name,qty,at\n"
    render(iter(ROWS), COLUMNS, "json", tz="Asia/Shanghai")
    assert capsys.readouterr().out == dumps(ROWS, "Asia/Shanghai") + "\n"


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.dates(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.text(min_size=1, max_size=8),
            st.one_of(
                _SCALARS, st.lists(_SCALARS, max_size=3), st.dictionaries(st.text(max_size=4), _SCALARS, max_size=2)
            ),
            max_size=6,
        ),
        max_size=7,
    ),
    st.sampled_from([None, 1, 2, 3]),
)
def test_json_rows_are_byte_for_byte_what_json_dumps_indent_2_gives(rows, batch):
    """A plain row is laid out without json's indenting encoder, alone (``write``) or a batch at a
    time (``write_many``, here batches of 1-3 rows); nested values fall back to it. Either way the
    text is json.dumps(indent=2) of the whole list."""
    import io

    from ffctl.commands._output import Column, RowStream, dumps

    keys = sorted({k for row in rows for k in row})
    out = io.StringIO()
    stream = RowStream([Column(k) for k in keys], "json", tz="Asia/Shanghai", out=out)
    if batch is None:
        for row in rows:
            stream.write(row)
    else:
        stream.batch = batch
        stream.write_many(rows)
    stream.close()
    assert out.getvalue() == dumps(rows, "Asia/Shanghai") + "\n"
