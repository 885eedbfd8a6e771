"""SPEC 9.7: `export events` writes the orders' audit trail as OCEL 2.0 JSON, XES and CSV that
PM4Py loads, with the store's counts, on SQLite and PostgreSQL (pm4py is imported inside the
tests: it takes seconds)."""

from __future__ import annotations

import csv
import json

import pytest
import sqlalchemy as sa

from tests.helpers import cli_ok, flow_at, flow_history, import_csv

NOW = "2026-12-04T00:00:00+08:00"


def store_counts(ws, since: str | None = None) -> dict:
    """What the log must hold, counted in the store: order events, orders, lines, SKUs, shipments."""
    where = "1 = 1" if since is None else f"o.created_at >= '{since}'"
    with ws.store().engine.connect() as conn:

        def one(sql: str) -> int:
            return conn.execute(sa.text(sql)).scalar()

        return {
            "events": one(f"SELECT COUNT(*) FROM event e JOIN orders o ON o.order_id = e.order_id WHERE {where}"),
            "order": one(f"SELECT COUNT(*) FROM orders o WHERE {where}"),
            "order_line": one(
                f"SELECT COUNT(*) FROM order_line l JOIN orders o ON o.order_id = l.order_id WHERE {where}"
            ),
            "sku": one(
                f"SELECT COUNT(DISTINCT l.sku) FROM order_line l JOIN orders o ON o.order_id = l.order_id WHERE {where}"
            ),
            "shipment": one(f"SELECT COUNT(*) FROM shipment s JOIN orders o ON o.order_id = s.order_id WHERE {where}"),
        }


def export(ws, fmt: str, *options: str) -> tuple:
    out = ws.path / f"events.{fmt}"
    r = cli_ok(ws, "export", "events", "--format", fmt, "--out", out, *options, now=NOW)
    return out, r


@pytest.fixture
def history(workspace):
    flow_history(workspace)
    return workspace


def test_every_format_loads_in_pm4py_with_the_stores_counts(history):
    import pandas as pd
    import pm4py

    ws = history
    want = store_counts(ws)
    assert want == {"events": want["events"], "order": 4, "order_line": 5, "sku": 2, "shipment": 2}

    out, r = export(ws, "csv")
    assert f"Wrote {out}: {want['events']} events of 4 orders (csv)." in r.stderr
    df = pm4py.format_dataframe(pd.read_csv(out), case_id="case_id", activity_key="activity", timestamp_key="timestamp")
    assert len(df) == want["events"] and df["case:concept:name"].nunique() == 4
    assert str(df["time:timestamp"].dt.tz) == "UTC"

    out, r = export(ws, "xes")
    log = pm4py.read_xes(str(out))
    assert len(log) == want["events"] and log["case:concept:name"].nunique() == 4
    assert f"Wrote {out}: {want['events']} events of 4 orders (xes)." in r.stderr

    out, r = export(ws, "ocel")
    ocel = pm4py.read_ocel2_json(str(out))
    assert len(ocel.events) == want["events"]
    types = ocel.objects["ocel:type"].value_counts().to_dict()
    assert types == {k: v for k, v in want.items() if k != "events"}
    assert f"Wrote {out}: {want['events']} events of 4 orders (ocel)." in r.stderr


def test_the_csv_is_the_trail_with_explicit_offsets(history):
    out, _ = export(history, "csv")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == ["case_id", "activity", "timestamp", "resource", "node", "detail"]
    ch1 = [r for r in rows if r["case_id"] == "CH1"]
    assert ch1[0] == {
        "case_id": "CH1",
        "activity": "created",
        "timestamp": "2026-12-02T09:01:00.000+08:00",
        "resource": ch1[0]["resource"],
        "node": "",
        "detail": "workflow standard",
    }
    reject = next(r for r in ch1 if r["activity"] == "rejected pack_check")
    # a cell a spreadsheet would run as a formula is quoted; the rest is as recorded
    assert reject == {
        "case_id": "CH1",
        "activity": "rejected pack_check",
        "timestamp": "2026-12-02T10:30:00.000+08:00",
        "resource": "judy",
        "node": "pack_check",
        "detail": '\'=short "2" <box> & tape',
    }
    assert [r["activity"] for r in ch1 if r["node"] in ("wave_pick", "pack_check")] == [
        "entered wave_pick",
        "completed wave_pick",
        "entered pack_check",
        "rejected pack_check",
        "entered wave_pick",
        "completed wave_pick",
        "entered pack_check",
        "completed pack_check",
    ]


def test_the_csv_is_the_same_whatever_the_database_had_to_quote(history, monkeypatch):
    """The database writes the lines in chunks; a chunk with a cell to quote or a formula to
    defuse is written row by row: the file is the same either way, and reads back as recorded."""
    from ffctl.core import export as core_export

    reason = 'customer call, see "notes"\nthen\x1fcall back'
    cli_ok(history, "order", "hold", "X1", "--reason", reason, now="2026-12-03T10:00:00+08:00", user="judy")
    whole, _ = export(history, "csv")
    expected = whole.read_bytes()
    monkeypatch.setattr(core_export, "CHUNK", 3)  # many chunks: some plain, some read row by row
    small, _ = export(history, "csv")
    assert small.read_bytes() == expected
    rows = list(csv.DictReader(small.open(encoding="utf-8", newline="")))
    assert next(r for r in rows if r["activity"].startswith("held"))["detail"].endswith(reason)
    assert sum(1 for r in rows if r["detail"] == '\'=short "2" <box> & tape') == 1


def test_xes_traces_are_orders_in_time_order_with_lifecycle(history):
    import pm4py

    out, _ = export(history, "xes")
    log = pm4py.read_xes(str(out))
    ch1 = log[log["case:concept:name"] == "CH1"]
    assert list(ch1["time:timestamp"]) == sorted(ch1["time:timestamp"])
    reject = ch1[ch1["concept:name"] == "rejected pack_check"].iloc[0]
    assert reject["detail"] == '=short "2" <box> & tape'  # XML carries it exactly
    assert reject["lifecycle:transition"] == "ate_abort" and reject["org:resource"] == "judy"
    assert reject["time:timestamp"].isoformat() == "2026-12-02T02:30:00+00:00"
    entered = ch1[ch1["concept:name"] == "entered credit_review"].iloc[0]
    assert entered["lifecycle:transition"] == "start" and entered["node"] == "credit_review"
    assert set(ch1[ch1["concept:name"] == "created"]["lifecycle:transition"].isna()) == {True}
    assert 'value="2026-12-02T09:01:00.000+08:00"' in out.read_text(encoding="utf-8")


def test_ocel_events_link_to_the_objects_they_are_about(history):
    import pm4py

    out, _ = export(history, "ocel")
    raw = json.loads(out.read_text(encoding="utf-8"))
    assert {t["name"] for t in raw["objectTypes"]} == {"order", "order_line", "sku", "shipment"}
    events = {
        (e["type"], next(r["objectId"] for r in e["relationships"] if r["qualifier"] == "order")): e
        for e in raw["events"]
    }
    created = events[("created", "order:CH2")]
    assert sorted((r["objectId"], r["qualifier"]) for r in created["relationships"]) == [
        ("line:CH2/1", "line"),
        ("line:CH2/2", "line"),
        ("order:CH2", "order"),
        ("sku:A", "sku"),
        ("sku:B", "sku"),
    ]
    assert {(r["objectId"], r["qualifier"]) for r in events[("shipped dispatch", "order:P1")]["relationships"]} == {
        ("order:P1", "order"),
        ("line:P1/1", "line"),
        ("sku:A", "sku"),
        ("shipment:P1/1", "shipment"),
    }
    assert [r["objectId"] for r in events[("delivered", "order:P1")]["relationships"]] == ["order:P1", "shipment:P1/1"]
    assert [r["objectId"] for r in events[("entered wave_pick", "order:CH1")]["relationships"]] == ["order:CH1"]
    attrs = {a["name"]: a["value"] for a in events[("rejected pack_check", "order:CH1")]["attributes"]}
    assert attrs == {"event": "rejected", "node": "pack_check", "actor": "judy", "detail": '=short "2" <box> & tape'}
    assert events[("rejected pack_check", "order:CH1")]["time"] == "2026-12-02T10:30:00.000+08:00"
    objects = {o["id"]: o for o in raw["objects"]}
    assert {r["objectId"] for r in objects["line:CH2/2"]["relationships"]} == {"order:CH2", "sku:B"}
    assert {a["name"]: a["value"] for a in objects["sku:B"]["attributes"]} == {"name": "Bolt <M8>", "category": "parts"}

    ocel = pm4py.read_ocel2_json(str(out))
    per_type = ocel.relations.groupby("ocel:type")["ocel:eid"].nunique().to_dict()
    assert per_type["shipment"] == 3  # shipped and delivered of P1, shipped of CH1
    assert per_type["order"] == len(ocel.events)


def test_an_order_shipped_in_two_parts_is_two_shipments_each_linked_to_its_own_event(history):
    ws = history
    import_csv(
        ws,
        "orders",
        "order_id,line_no,customer,sku,qty,channel,created_at\n"
        "P2,1,C1,A,2,b2b,2026-12-02 09:00\nP2,2,C1,A,3,b2b,2026-12-02 09:00\n",
        now=flow_at("09:06"),
    )
    cli_ok(ws, "advance", "P2", now=flow_at("09:11"), user="judy")
    cli_ok(ws, "allocate", "P2", now=flow_at("09:31"), user="judy")
    cli_ok(ws, "ship", "P2", "--line", "1:2", "--carrier", "SF", "--tracking", "T2a", now=flow_at("12:10"), user="judy")
    cli_ok(ws, "ship", "P2", "--line", "2:3", "--carrier", "SF", "--tracking", "T2b", now=flow_at("12:20"), user="judy")

    out, _ = export(ws, "ocel")
    raw = json.loads(out.read_text(encoding="utf-8"))
    shipments = {
        o["id"]: {a["name"]: a["value"] for a in o["attributes"]}
        for o in raw["objects"]
        if o["type"] == "shipment" and o["id"].startswith("shipment:P2/")
    }
    assert {s["tracking"] for s in shipments.values()} == {"T2a", "T2b"}
    shipped = [
        e
        for e in raw["events"]
        if e["type"].startswith("shipped") and any(r["objectId"] == "order:P2" for r in e["relationships"])
    ]
    assert len(shipped) == 2
    linked = [[r["objectId"] for r in e["relationships"] if r["qualifier"] == "shipment"] for e in shipped]
    assert all(len(ids) == 1 for ids in linked) and len({ids[0] for ids in linked}) == 2


def test_a_period_exports_the_orders_created_in_it_with_their_whole_trail(history):
    import pm4py

    ws = history
    want = store_counts(ws, since="2026-12-03 00:00:00")
    assert want["order"] == 1
    for fmt in ("csv", "xes", "ocel"):
        out, r = export(ws, fmt, "--from", "2026-12-03", "--to", "2026-12-03")
        assert f"{want['events']} events of 1 order ({fmt})" in r.stderr
    ocel = pm4py.read_ocel2_json(str(ws.path / "events.ocel"))
    assert set(ocel.objects["ocel:oid"]) == {"order:X1", "line:X1/1", "sku:A"}
    assert len(pm4py.read_xes(str(ws.path / "events.xes"))) == want["events"]


def test_an_empty_period_gives_valid_empty_logs(history):
    import pandas as pd
    import pm4py

    ws = history
    for fmt in ("csv", "xes", "ocel"):
        out, r = export(ws, fmt, "--from", "2030-01-01")
        assert "0 events of 0 orders" in r.stderr
    assert pd.read_csv(ws.path / "events.csv").empty
    assert len(pm4py.read_xes(str(ws.path / "events.xes"))) == 0
    raw = json.loads((ws.path / "events.ocel").read_text(encoding="utf-8"))
    assert {k: v for k, v in raw.items() if k != "objectTypes"} == {"objects": [], "events": [], "eventTypes": []}
    assert [t["name"] for t in raw["objectTypes"]] == ["order", "order_line", "sku", "shipment"]
    # pm4py 2.7's OCEL 2.0 JSON importer cannot load a log without events, whatever else the file
    # holds: it builds its events table from the events list alone and sorts it by ocel:timestamp,
    # a column an empty table does not have (the format allows empty lists); a log with one event
    # loads (the period test). If this starts passing, pm4py fixed it: assert the load instead.
    with pytest.raises(KeyError, match="ocel:timestamp"):
        pm4py.read_ocel2_json(str(ws.path / "events.ocel"))


def test_export_to_stdout_and_mistakes_users_can_fix(history):
    ws = history
    r = cli_ok(ws, "export", "events", "-f", "csv", "-o", "-", "--from", "2026-12-03", now=NOW)
    assert r.stdout.startswith(
        "case_id,activity,timestamp,resource,node,detail\nX1,created,2026-12-03T09:00:00.000+08:00,"
    )
    r = ws.run("export", "events", "-f", "xes", "-o", ws.path, now=NOW)
    assert r.exit_code == 2 and f"--out {ws.path} is a folder" in r.stderr
    r = ws.run("export", "events", "-f", "xes", "-o", ws.path / "missing" / "log.xes", now=NOW)
    assert r.exit_code == 1 and "cannot write" in r.stderr and "Traceback" not in r.output
    r = ws.run("export", "events", "-f", "csv", "-o", ws.path / "x.csv", "--from", "2026-12-03", "--to", "2026-12-01")
    assert r.exit_code == 2 and "--to '2026-12-01' is not after --from '2026-12-03'" in r.stderr
    r = ws.run("export", "events", "-f", "parquet", "-o", ws.path / "x.csv")
    assert r.exit_code == 2
    assert not (ws.path / "x.csv").exists() and not list(ws.path.glob(".*.part"))


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"])
def test_times_carry_the_offset_in_force_at_each_instant(store, tz):
    """The database formats every time of an export (kpi._Sql.local_iso): across daylight-saving
    changes it gives what Python's zoneinfo gives, to the millisecond."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from ffctl.core.kpi import _Sql
    from ffctl.core.models import UTCDateTime

    instants = [
        datetime(2026, 3, 8, 6, 59, 59, 123456, tzinfo=timezone.utc),  # New York's spring change is 07:00 UTC
        datetime(2026, 3, 8, 7, 0, tzinfo=timezone.utc),
        datetime(2026, 3, 29, 0, 59, 59, tzinfo=timezone.utc),  # Berlin's is 01:00 UTC
        datetime(2026, 3, 29, 1, 0, 0, 500000, tzinfo=timezone.utc),
        datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc),
        datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc),
        datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc),
        datetime(2026, 11, 1, 6, 30, tzinfo=timezone.utc),
    ]
    with store.session() as s:
        sql = _Sql(s, tz, datetime(2026, 1, 1, tzinfo=timezone.utc))
        stmt = sa.text(f"SELECT {sql.local_iso('x.t')} FROM (SELECT :t AS t) x").bindparams(
            sa.bindparam("t", type_=UTCDateTime)
        )
        for instant in instants:
            got = s.execute(stmt, {"t": instant, "tz": tz}).scalar()
            local = instant.astimezone(ZoneInfo(tz))
            want = local.isoformat(timespec="milliseconds")
            assert got == want, (instant, got, want)
            assert datetime.fromisoformat(got) == instant - timedelta(microseconds=instant.microsecond % 1000)
