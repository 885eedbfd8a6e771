"""The one renderer: tables keep data as typed (CJK aligned), CSV is formula-safe, JSON has offsets."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ffctl.commands._output import Column, render

ROWS = [
    {"sku": "[b2b]", "name": "六角螺栓 M8", "qty": 3, "at": datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)},
    {"sku": "=HYPERLINK(\"x\")", "name": "Hex bolt", "qty": -2, "at": None},
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


def test_csv_neutralises_formulas_but_not_numbers(capsys):
    render(ROWS, COLUMNS, "csv", tz="Asia/Shanghai")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "sku,name,qty,at"
    assert out[1].startswith("[b2b],六角螺栓 M8,3,2026-11-25T09:00:00+08:00")
    assert out[2].startswith("\"'=HYPERLINK(\"\"x\"\")\",Hex bolt,-2,")


def test_json_has_offsets_and_keeps_chinese(capsys):
    render(ROWS, COLUMNS, "json", tz="Asia/Shanghai")
    data = json.loads(capsys.readouterr().out)
    assert data[0]["at"] == "2026-11-25T09:00:00+08:00" and data[0]["name"] == "六角螺栓 M8"
    assert data[1]["at"] is None
