"""The audit trail holds against the database's own tools, and names the OS login beside the
acting user; schema 0005 upgrades and downgrades; a least-privilege PostgreSQL role runs ffctl."""

from __future__ import annotations

import getpass
import re
import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from ffctl.migrations import HEAD
from tests.conftest import REPO, Workspace, _pg_admin, require_pg

NOW = "2026-11-23T09:25:00+08:00"

# every order enters an auto-allocate node: `allocate --all` and the sweep write hundreds of
# events at once (the bulk paths), `ship` and `order hold` write one each
CONFIG = """
[defaults]
timezone = "Asia/Shanghai"
[roles.warehouse]
members = ["wang"]
[roles.admin]
members = ["judy"]
[workflows.main]
match = {}
nodes = ["allocation", "dispatch"]
[nodes.allocation]
sla = "10m"
auto = "allocate"
[nodes.dispatch]
owner = "warehouse"
sla = "1h"
auto = "ship"
"""


def seed(ws: Workspace, orders: int = 240) -> None:
    files = {
        "products.csv": "sku,name\nSKU-1,screwdriver\n",
        "customers.csv": "customer,name\nC1,Acme\n",
        "stock.csv": f"sku,warehouse,on_hand\nSKU-1,SH,{orders * 2}\n",
        "orders.csv": "order_id,line_no,customer,sku,qty,created_at\n"
        + "".join(f"SO-{i:04d},1,C1,SKU-1,1,2026-11-23 09:00\n" for i in range(orders)),
    }
    for name, text in files.items():
        r = ws.run("import", name.removesuffix(".csv"), ws.write(name, text), now=NOW, user="judy")
        assert r.exit_code == 0, r.output


def work(ws: Workspace) -> None:
    """Normal commands, each writing events through a different path."""
    steps = [
        (["allocate", "--all"], "2026-11-23T09:26:00+08:00"),
        (["sla", "sweep"], "2026-11-23T11:00:00+08:00"),  # 240 dispatch tasks breached at once
        (["ship", "SO-0001"], "2026-11-23T11:05:00+08:00"),
        (["order", "hold", "SO-0002", "--reason", "customer call"], "2026-11-23T11:06:00+08:00"),
        (["rules", "run"], "2026-11-23T11:07:00+08:00"),
        (["report", "kpi"], "2026-11-23T11:08:00+08:00"),
        (["notify", "send"], "2026-11-23T11:09:00+08:00"),
    ]
    for args, at in steps:
        r = ws.run(*args, now=at, user="judy")
        assert r.exit_code == 0, (args, r.output)


@pytest.fixture
def ws(workspace_with_config) -> Workspace:
    return workspace_with_config(CONFIG)


def test_every_event_records_the_os_login_beside_the_acting_user(ws):
    seed(ws)
    work(ws)
    with ws.store().session() as s:
        rows = s.execute(sa.text("SELECT event, actor, login, COUNT(*) FROM event GROUP BY event, actor, login")).all()
    counts = {r[0]: r[3] for r in rows}
    assert counts["created"] == counts["allocated"] == 240 and counts["entered"] == 480 and counts["breached"] >= 200
    assert {"shipped", "held"} <= set(counts)
    # --as judy (the sweep acts as sla-sweep), all run by this OS login
    assert {(r.actor, r.login) for r in rows} == {("judy", getpass.getuser()), ("sla-sweep", getpass.getuser())}


def test_schema_0005_upgrades_and_downgrades_keeping_the_trail(ws):
    from alembic import command

    seed(ws, orders=3)
    store = ws.store()
    try:
        command.downgrade(store._alembic_config(), "0004")
        with store.session() as s:
            assert "login" not in {c["name"] for c in sa.inspect(s.connection()).get_columns("event")}
            before = s.execute(sa.text("SELECT COUNT(*) FROM event")).scalar_one()
        with store.session(write=True) as s:  # 0004's trail: REPLACE / TRUNCATE were not refused yet
            s.execute(
                sa.text("INSERT INTO event (at, wall_at, actor, event) VALUES (:t, :t, 'old', 'created')"),
                {"t": datetime(2026, 11, 1, tzinfo=timezone.utc)},
            )
        store.upgrade()
        assert store.current_revision() == store.head_revision() == HEAD
        assert ws.run("order", "hold", "SO-0001", "--reason", "call", now=NOW, user="judy").exit_code == 0
        with store.session() as s:
            logins = s.execute(sa.text("SELECT event, login FROM event ORDER BY id")).all()
        assert len(logins) == before + 2
        assert {login for _, login in logins[:-1]} == {None}  # written before 0005: no login known
        assert logins[-1] == ("held", getpass.getuser())
        for sql in ("UPDATE event SET actor = 'x'", "DELETE FROM event"):  # 0002's triggers are still there
            with pytest.raises(sa.exc.DatabaseError, match="append-only"):
                with store.session(write=True) as s:
                    s.execute(sa.text(sql))
    finally:
        store.dispose()


def test_the_trail_cannot_be_replaced_or_truncated(store, backend):
    from ffctl.core import audit

    with store.session(write=True) as s:
        audit.record(s, event="stock_adjusted", at=datetime.now(timezone.utc), actor="t", subject="sku:X", detail="+1")
    with store.session() as s:
        (first,) = s.execute(sa.text("SELECT id FROM event")).scalars().all()
    attacks = (
        ["TRUNCATE event"]
        if backend == "postgresql"
        else [
            f"REPLACE INTO event (id, at, wall_at, actor, event, detail) VALUES ({first}, '2026-01-01', '2026-01-01', 'x', 'stock_adjusted', 'rewritten')",
            f"INSERT OR REPLACE INTO event (id, at, wall_at, actor, event) VALUES ({first}, '2026-01-01', '2026-01-01', 'x', 'created')",
        ]
    )
    for sql in attacks:
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with store.session(write=True) as s:
                s.execute(sa.text(sql))
    with store.session() as s:
        assert s.execute(sa.text("SELECT actor, detail FROM event")).all() == [("t", "+1")]


def _least_privilege_sql(database: str, role: str) -> list[str]:
    """The SQL that docs/operations.md gives for ffctl's role, for this database and role name."""
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    block = re.search(r"```sql\n(.*?)```", text[text.index("## Security") :], re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("--")]
    return [re.sub(r"\bffctl_app\b", role, re.sub(r"DATABASE ffctl\b", f"DATABASE {database}", line)) for line in lines]


def test_a_least_privilege_role_runs_ffctl_but_cannot_rewrite_the_trail(workspace_with_config, make_db_url, tmp_path):
    """PostgreSQL only: SQLite has no roles. The role is made exactly as docs/operations.md says."""
    require_pg()
    owner_url = make_db_url("postgresql")
    database = owner_url.rsplit("/", 1)[1]
    role = f"ffctl_app_{uuid.uuid4().hex[:8]}"
    import psycopg

    def as_owner(statements: list[str]) -> None:
        with psycopg.connect(owner_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)

    as_owner(_least_privilege_sql(database, role))
    try:
        app_url = owner_url.replace("postgresql+psycopg://root@", f"postgresql+psycopg://{role}@")
        (tmp_path / "ffctl.toml").write_text(CONFIG, encoding="utf-8")
        ws = Workspace(path=tmp_path, db_url=app_url, config_path=tmp_path / "ffctl.toml")
        seed(ws)
        work(ws)
        r = ws.run("order", "show", "SO-0001", "-f", "json", now=NOW)
        assert r.exit_code == 0 and '"shipped"' in r.stdout
        store = ws.store()
        try:
            for sql in (
                "UPDATE event SET actor = 'x'",
                "DELETE FROM event",
                "TRUNCATE event",
                "ALTER TABLE event DISABLE TRIGGER USER",
                "DROP TRIGGER event_append_only ON event",
            ):
                with pytest.raises(sa.exc.DatabaseError, match="permission denied|must be owner"):
                    with store.session(write=True) as s:
                        s.execute(sa.text(sql))
            with store.session() as s:
                assert s.execute(sa.text("SELECT COUNT(*) FROM event WHERE actor = 'x'")).scalar_one() == 0
        finally:
            store.dispose()
    finally:
        as_owner([f"DROP OWNED BY {role}"])
        _pg_admin(f"DROP ROLE IF EXISTS {role}")
