"""Stores that are read-only, missing, or deleted under a running import; the messages around them
(no config, times in the configured zone). Both backends where a store is involved."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_CONFIG, Workspace, _pg_admin

NOW = "2026-11-23T09:25:00+08:00"  # a Monday; the example config's zone is Asia/Shanghai
NOBODY = 65534


def seed(ws) -> None:
    """A few products, customers, stock and orders, imported through the CLI."""
    files = {
        "products.csv": "sku,name\nSKU-1,螺丝刀\nSKU-2,扳手\n",
        "customers.csv": "customer,name,region\nC1,华东商贸,east\n",
        "stock.csv": "sku,warehouse,on_hand\nSKU-1,SH,100\nSKU-2,SH,100\n",
        "orders.csv": "order_id,line_no,customer,sku,qty,created_at\nSO-1,1,C1,SKU-1,2,2026-11-23 09:00\n"
        "SO-2,1,C1,SKU-2,1,2026-11-23 09:05\n",
    }
    for name, text in files.items():
        r = ws.run("import", name.removesuffix(".csv"), ws.write(name, text), now=NOW)
        assert r.exit_code == 0, r.output


def run_cli(args, *, env, cwd, as_nobody=False):
    """ffctl in its own process, as cron or a colleague would run it; as ``nobody`` when asked
    (root writes through any file mode, so a read-only file needs another user)."""
    full = {**os.environ, "FFCTL_DEBUG": "", "COLUMNS": "200", **env}
    command = [sys.executable, "-m", "ffctl", *args]
    if as_nobody and os.geteuid() == 0:
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    return subprocess.run(command, env=full, cwd=cwd, capture_output=True, text=True, timeout=120)


READS = [
    ["order", "list"],
    ["order", "show", "SO-1", "-f", "json"],
    ["task", "list", "--all"],
    ["stock", "show"],
    ["sla", "status"],
    ["report", "kpi", "--by", "region"],
]
WRITES = [["order", "hold", "SO-1", "--reason", "call"], ["sla", "sweep"], ["import", "products", "more.csv"]]


@pytest.fixture
def read_only_store(workspace, backend):
    """The workspace's store, seeded, then made read-only the way a user meets it: a SQLite file
    without write permission (read by another user), a PostgreSQL database that takes no writes."""
    seed(workspace)
    for cut in ("region", None):  # as the daily report job does where the store takes writes
        assert workspace.run("report", "kpi", *(["--by", cut] if cut else []), now=NOW).exit_code == 0
    folder = Path(tempfile.mkdtemp(prefix="ffctl-ro-"))
    folder.chmod(0o777)
    shutil.copy(workspace.config_path, folder / "ffctl.toml")
    (folder / "more.csv").write_text("sku,name\nSKU-3,锤子\n", encoding="utf-8")
    (folder / "ffctl.toml").chmod(0o644)
    (folder / "more.csv").chmod(0o644)
    url, dbname = workspace.db_url, None
    if backend == "sqlite":
        source = Path(url.split("///", 1)[1])
        with sqlite3.connect(source) as conn:  # fold the WAL into the file before copying it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copy(source, folder / "ffctl.db")
        (folder / "ffctl.db").chmod(0o444)
        url = f"sqlite:///{folder / 'ffctl.db'}"
    else:
        dbname = url.rsplit("/", 1)[1]
        _pg_admin(f"ALTER DATABASE {dbname} SET default_transaction_read_only = on")
    yield {"FFCTL_CONFIG": str(folder / "ffctl.toml"), "FFCTL_DB": url, "FFCTL_NOW": NOW, "FFCTL_USER": "judy"}, folder
    if dbname:
        _pg_admin(f"ALTER DATABASE {dbname} RESET default_transaction_read_only")
    shutil.rmtree(folder, ignore_errors=True)


def test_a_read_only_store_answers_reads_and_refuses_writes_plainly(read_only_store, backend):
    env, folder = read_only_store
    nobody = backend == "sqlite"
    for args in READS:
        r = run_cli(args, env=env, cwd=folder, as_nobody=nobody)
        assert r.returncode == 0, (args, r.stderr)
        assert "SO-1" in r.stdout or args[0] in ("stock", "sla", "report"), (args, r.stdout)
    for args in WRITES:
        r = run_cli(args, env=env, cwd=folder, as_nobody=nobody)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "is read-only: this command writes to it" in r.stderr, (args, r.stderr)
        assert "bug" not in r.stderr and "Traceback" not in r.stderr


def test_a_read_command_on_a_missing_sqlite_file_creates_nothing(tmp_path):
    from typer.testing import CliRunner

    from ffctl.cli import app

    for args in (["order", "list"], ["db", "current"], ["report", "kpi"], ["task", "list"]):
        r = CliRunner().invoke(
            app, ["--db", "sqlite:///nowhere.db", *args], env={"FFCTL_CONFIG": str(EXAMPLE_CONFIG), "FFCTL_DEBUG": None}
        )
        assert r.exit_code == 1, r.output
        assert "there is no store at sqlite:///nowhere.db" in r.stderr and "ffctl init" in r.stderr
        assert not Path("nowhere.db").exists() and not list(tmp_path.iterdir())


def orders_csv(path: Path, n: int) -> None:
    lines = ["order_id,line_no,customer,sku,qty,created_at"]
    lines += [f"SO-{i:06d},1,C1,SKU-{1 + i % 2},1,2026-11-23 0{i % 9}:00" for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def sqlite_workspace(tmp_path, make_db_url) -> Workspace:
    """SQLite only: a PostgreSQL database is not a file a person can delete under a running ffctl."""
    shutil.copy(EXAMPLE_CONFIG, tmp_path / "ffctl.toml")
    return Workspace(path=tmp_path, db_url=make_db_url("sqlite"), config_path=tmp_path / "ffctl.toml")


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sqlite_store_deleted_or_replaced_during_an_import_fails_the_import(sqlite_workspace, how, tmp_path):
    workspace = sqlite_workspace
    seed(workspace)
    path = Path(workspace.db_url.split("///", 1)[1])
    other = tmp_path / "other.db"
    shutil.copy(path, other)
    orders_csv(tmp_path / "big.csv", 60_000)
    env = {"FFCTL_CONFIG": str(workspace.config_path), "FFCTL_DB": workspace.db_url, "FFCTL_NOW": NOW}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ffctl", "import", "orders", str(tmp_path / "big.csv")],
        env={**os.environ, "FFCTL_DEBUG": "", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # wait for the first batch to be committed
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            if conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0] > 2:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the import ended before the store could be removed; make the file bigger"
    if how == "deleted":
        path.unlink()
    else:
        os.replace(other, path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, (out, err)
    assert "was deleted or replaced while this command was writing to it" in err, err
    assert "bug" not in err


def test_no_config_gives_one_message_and_one_hint(tmp_path):
    from typer.testing import CliRunner

    from ffctl.cli import app

    r = CliRunner().invoke(app, ["--config", str(tmp_path / "ffctl.toml"), "order", "list"], env={"FFCTL_DEBUG": None})
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        f"Error: no config file at {tmp_path / 'ffctl.toml'}",
        "Hint: Run `ffctl init` to write one from the example, or point --config / FFCTL_CONFIG at your config.",
    ]


def test_times_in_messages_are_in_the_configured_zone(workspace):
    seed(workspace)
    ws = workspace
    steps = [("advance", "09:30"), ("allocate", "09:31"), ("advance", "09:40"), ("advance", "09:50")]
    for command, at in steps:  # credit_review, allocation, wave_pick, pack_check: at dispatch
        r = ws.run(command, "SO-1", now=f"2026-11-23T{at}:00+08:00", user="judy")
        assert r.exit_code == 0, r.output
    r = ws.run("ship", "SO-1", now="2026-11-23T17:00:00+08:00", user="judy")
    assert r.exit_code == 0, r.output
    r = ws.run("ship", "SO-1", "--carrier", "SF", now="2026-11-23T18:00:00+08:00", user="judy")
    assert r.exit_code == 1 and "already shipped (at 2026-11-23 17:00+08:00" in r.stderr, r.output
    r = ws.run("deliver", "SO-1", now="2026-11-23T16:00:00+08:00")
    assert r.exit_code == 1 and "shipped at 2026-11-23 17:00+08:00" in r.stderr, r.output
    assert ws.run("deliver", "SO-1", now="2026-11-24T10:00:00+08:00").exit_code == 0
    r = ws.run("deliver", "SO-1", "--issue", "damaged", now="2026-11-24T11:00:00+08:00")
    assert r.exit_code == 1 and "already delivered (at 2026-11-24 10:00+08:00)" in r.stderr, r.output
