"""bulk.insert_rows on both backends: what it writes is exactly the rows it was given, whether a
value is bound in each row, shared by every row, or given once as ``fixed``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ffctl.core import bulk


def _events(store) -> list[tuple]:
    with store.session() as s:
        return [
            tuple(r)
            for r in s.execute(
                sa.text("SELECT actor, event, order_id, task_id, node, subject, detail FROM event ORDER BY id")
            )
        ]


@pytest.mark.parametrize("one_statement", [False, True], ids=["per-row", "one-statement"])
def test_insert_rows_writes_the_rows_it_is_given(store, one_statement):
    # one_statement: as an import's writer thread sends them on SQLite (bulk.sqlite_inserts_in_one_statement)
    at = "2026-11-25 01:00:00.000000"
    columns = ("at", "wall_at", "actor", "event", "order_id", "task_id", "node", "subject", "detail")
    rows = [
        (at, at, "O'Brien \u738b", "created", f"O{i}", None, None if i % 2 else "pick", None, f"line {i}\twith a tab")
        for i in range(5)
    ]
    if store.dialect == "sqlite":  # SQLite keeps a NUL in text (PostgreSQL refuses it)
        rows += [
            (at, at, "O'Brien \u738b", "created", "NUL", None, None, None, "a\x00b"),
            (at, at, "O'Brien \u738b", "created", "NUL2", None, None, None, "a\x00b"),
        ]
    with store.session(write=True) as s:
        if one_statement:
            bulk.sqlite_inserts_in_one_statement(s)
        bulk.insert_rows(s, "event", columns, rows)
        if store.dialect == "sqlite":  # a shared value with no SQL literal is bound after all
            bulk.insert_rows(
                s, "event", columns[:5], [(at, at, "a\x00b", "created", "N3"), (at, at, "a\x00b", "created", "N4")]
            )
    expected = [r[2:] for r in rows]
    if store.dialect == "sqlite":
        expected += [
            ("a\x00b", "created", "N3", None, None, None, None),
            ("a\x00b", "created", "N4", None, None, None, None),
        ]
    assert _events(store) == expected


def test_fixed_values_and_shared_columns_are_written_to_every_row(store):
    at = "2026-11-25 01:00:00.000000"
    rows = bulk.Rows(
        "event",
        ("at", "event", "order_id", "detail"),
        {"wall_at": at, "actor": "it's me", "task_id": None, "node": None, "subject": None},
    )
    rows.rows += [(at, "created", "A", "same"), (at, "created", "B", "same")]
    with store.session(write=True) as s:
        rows.write(s)
        # one row alone, and rows that differ in nothing, are written as they are too
        bulk.insert_rows(s, "event", ("at", "wall_at", "actor", "event"), [(at, at, "x", "updated")])
        bulk.insert_rows(s, "event", ("at", "wall_at", "actor", "event"), [(at, at, "y", "updated")] * 2)
    assert _events(store) == [
        ("it's me", "created", "A", None, None, None, "same"),
        ("it's me", "created", "B", None, None, None, "same"),
        ("x", "updated", None, None, None, None, None),
        ("y", "updated", None, None, None, None, None),
        ("y", "updated", None, None, None, None, None),
    ]


def test_shared_columns_keep_values_of_other_types_apart():
    columns, rows, shared = bulk._shared_columns(("a", "b", "c"), [(1, 0, None), (True, 0, None), (1, 0.0, None)])
    assert shared == {"c": None} and columns == ["a", "b"]
    assert rows == [(1, 0), (True, 0), (1, 0.0)]


def test_among_finds_exactly_the_given_keys(store):
    at = "2026-11-25 01:00:00.000000"
    rows = [(at, at, "me", kind, f"O{i}") for i in range(30) for kind in ("created", "updated")]
    with store.session(write=True) as s:
        bulk.insert_rows(s, "event", ("at", "wall_at", "actor", "event", "order_id"), rows)
    from ffctl.core.models import Event

    table = Event.__table__
    with store.session() as s:
        one = s.execute(
            sa.select(table.c.order_id).distinct().where(bulk.among(s, table.c.order_id, ["O1", "O7", "nope", "O'x"]))
        ).scalars()
        assert sorted(one) == ["O1", "O7"]
        pairs = s.execute(
            sa.select(table.c.order_id, table.c.event).where(
                bulk.among(s, (table.c.order_id, table.c.event), [("O1", "updated"), ("O2", "created"), ("O3", "nope")])
            )
        ).all()
        assert sorted(map(tuple, pairs)) == [("O1", "updated"), ("O2", "created")]
        first = s.execute(sa.select(sa.func.min(table.c.id))).scalar_one()
        ids = s.execute(sa.select(table.c.id).where(bulk.among(s, table.c.id, [first, first + 1, 10**9]))).scalars()
        assert sorted(ids) == [first, first + 1]


def test_shared_columns_look_at_every_row():
    rows = [("a", None, 1), ("a", None, 2), ("b", None, 1), ("a", None, 9), ("a", None, 1)]
    columns, kept, shared = bulk._shared_columns(("x", "y", "z"), rows)
    assert shared == {"y": None} and columns == ["x", "z"]
    assert kept == [(r[0], r[2]) for r in rows]
    columns, kept, shared = bulk._shared_columns(("x", "y"), [("a", None), ("b", None)])
    assert (columns, kept, shared) == (["x"], [("a",), ("b",)], {"y": None})


def test_rows_sent_in_one_statement_keep_their_order_values_and_types(store):
    at = "2026-11-25 01:00:00.000000"
    rows = [(at, at, f"actor {i % 3}", "created", f"O{i:05d}", i, "x" if i % 2 else None) for i in range(4500)]
    rows[7] = (at, at, '\u738b "quoted" \\ \n', "created", "O00007", 2**31 - 1, "1.5")
    with store.session(write=True) as s:
        bulk.sqlite_inserts_in_one_statement(s)
        bulk.insert_rows(s, "event", ("at", "wall_at", "actor", "event", "order_id", "task_id", "detail"), rows)
    with store.session() as s:
        got = s.execute(sa.text("SELECT actor, order_id, task_id, detail FROM event ORDER BY id")).all()
    assert [tuple(r) for r in got] == [(r[2], r[4], r[5], r[6]) for r in rows]


def test_sqlite_statistics_are_renewed_when_a_table_outgrows_them_not_when_rows_come_and_go(tmp_path):
    """SQLite only (PostgreSQL gathers its own): a table analysed at 2,000 rows is analysed again
    once it holds more than twice that, not when rows are deleted and added (its largest rowid
    then grows while its size does not: allocations come and go as orders ship)."""
    from sqlalchemy.orm import Session

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")

    def stat(s) -> str:  # rows, then rows per key of the index, when last analysed
        return s.execute(sa.text("SELECT stat FROM sqlite_stat1 WHERE tbl = 't'")).scalar_one()

    def add(s, n: int, keys: int) -> None:
        s.execute(sa.text("INSERT INTO t (k) VALUES (:k)"), [{"k": i % keys} for i in range(n)])

    with Session(engine) as s, s.begin():
        s.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER)"))
        s.execute(sa.text("CREATE INDEX ix_t_k ON t (k)"))
        add(s, 2000, keys=100)
        bulk.sqlite_analyze_stale(s, ["t"], min_rows=1000)
        assert stat(s) == "2000 20"
        for _ in range(3):  # rows come and go: the largest rowid passes 4,000, the table stays at 2,000
            s.execute(sa.text("DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY id LIMIT 1000)"))
            add(s, 1000, keys=10)
        assert s.execute(sa.text("SELECT max(rowid), count(*) FROM t")).one() == (5000, 2000)
        bulk.sqlite_analyze_stale(s, ["t"], min_rows=1000)
        assert stat(s) == "2000 20"  # not analysed again
        add(s, 2500, keys=10)
        bulk.sqlite_analyze_stale(s, ["t"], min_rows=1000)
        assert stat(s) == "4500 450"
    engine.dispose()
