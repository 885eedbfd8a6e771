"""The foundation as a user meets it: help, init, migrations, errors, masking."""

from __future__ import annotations

import gc

import pytest

from tests.helpers import python_c


def test_help_does_not_import_sqlalchemy():
    code = (
        "import sys\n"
        "from ffctl.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('sqlalchemy', 'sqlmodel', 'alembic', 'psycopg', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = python_c(code, check=True).stdout
    assert "HEAVY []" in out, out
    assert "init" in out and "Commands" in out


def test_config_check_does_not_import_sqlalchemy(tmp_path):
    from tests.conftest import EXAMPLE_CONFIG

    code = (
        "import sys\n"
        "from ffctl.cli import app\n"
        f"try:\n    app(['--config', {str(EXAMPLE_CONFIG)!r}, 'config', 'check'])\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
        "print('HEAVY', [m for m in ('sqlalchemy', 'sqlmodel', 'alembic') if m in sys.modules])\n"
    )
    out = python_c(code, cwd=tmp_path).stdout
    assert "EXIT 0" in out and "HEAVY []" in out, out


def test_init_then_upgrade_and_current(workspace, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    ws_config = fresh / "ffctl.toml"
    from typer.testing import CliRunner

    from ffctl.cli import app

    # init on an empty database: writes the config and creates the store
    empty_url = workspace.db_url
    with workspace.store().engine.begin() as conn:  # empty the copied template
        from sqlmodel import SQLModel

        import ffctl.core.models

        ffctl.core.models.load_all()
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS event_append_only ON event")
        SQLModel.metadata.drop_all(conn)
    env = {"FFCTL_CONFIG": str(ws_config), "FFCTL_DB": empty_url}
    r = CliRunner().invoke(app, ["db", "current"], env=env)
    assert r.exit_code == 1 and r.stdout.strip() == "empty"
    r = CliRunner().invoke(app, ["init"], env=env)
    assert r.exit_code == 0, r.output
    assert ws_config.exists() and "Store ready" in r.stderr
    r = CliRunner().invoke(app, ["init"], env=env)
    assert r.exit_code == 0 and "leaving it as it is" in r.stderr
    r = CliRunner().invoke(app, ["db", "upgrade"], env=env)
    assert r.exit_code == 0 and "up to date" in r.stderr
    r = CliRunner().invoke(app, ["db", "current"], env=env)
    from ffctl.migrations import HEAD

    assert r.exit_code == 0 and r.stdout.strip() == HEAD == "0018"


def test_commands_refuse_an_empty_store(tmp_path):
    from typer.testing import CliRunner

    from ffctl.cli import app
    from tests.conftest import EXAMPLE_CONFIG

    env = {"FFCTL_CONFIG": str(EXAMPLE_CONFIG), "FFCTL_DB": f"sqlite:///{tmp_path / 'none.db'}"}
    r = CliRunner().invoke(app, ["stock", "show"], env=env)
    if "No such command" in r.output:
        pytest.skip("stock command not built yet")
    assert r.exit_code == 1
    assert "there is no store at sqlite:///" in r.stderr and "ffctl init" in r.stderr
    assert "Traceback" not in r.output
    assert not (tmp_path / "none.db").exists()  # a read command creates nothing


def test_audit_trail_refuses_update_and_delete(store):
    from datetime import datetime, timezone

    import sqlalchemy as sa

    from ffctl.core import audit

    with store.session(write=True) as s:
        audit.record(s, event="stock_adjusted", at=datetime.now(timezone.utc), actor="t", subject="sku:X")
    for sql in ("UPDATE event SET actor = 'x'", "DELETE FROM event"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with store.session(write=True) as s:
                s.execute(sa.text(sql))


def test_password_in_url_is_masked(tmp_path):
    from typer.testing import CliRunner

    from ffctl.cli import app

    url = "postgresql+psycopg://ops:s3cret-pw@127.0.0.1:1/nope"
    r = CliRunner().invoke(app, ["--db", url, "db", "current"], env={"FFCTL_CONFIG": str(tmp_path / "none.toml")})
    assert r.exit_code == 1
    assert "s3cret-pw" not in r.output and "***" in r.output
    assert "Traceback" not in r.output


def test_bad_now_is_a_usage_error(workspace):
    r = workspace.run("--now", "yesterday-ish", "db", "current")
    # db current does not need the clock; a command that does must refuse with exit 2
    from ffctl.commands._common import AppState

    st = AppState(config_path=str(workspace.config_path), db_url=workspace.db_url, now_text="nope", user=None)
    from ffctl.core.errors import UsageError

    with pytest.raises(UsageError, match="--now 'nope'"):
        st.now()
    assert r.exit_code == 0


def test_unknown_command_suggests(workspace):
    r = workspace.run("confg", "check")
    assert r.exit_code == 2
    assert "Did you mean 'config'" in r.output


def test_models_match_migrations(store):
    """models.py and the migrations describe the same schema (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import ffctl.core.models

    ffctl.core.models.load_all()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_partial_indexes_have_the_store_s_predicate(store):
    """Every partial index says its predicate for the store's backend (PostgreSQL's copy is added
    when a PostgreSQL store opens), and a SQLite command does not load the PostgreSQL dialect nor
    build the report facts' tables."""
    from sqlalchemy.schema import CreateIndex
    from sqlmodel import SQLModel

    import ffctl.core.models  # noqa: F401

    tables = SQLModel.metadata.tables.values()
    partial = [ix for t in tables for ix in t.indexes if ix.dialect_options["sqlite"]["where"] is not None]
    assert len(partial) >= 8
    with store.engine.connect() as conn:
        for ix in partial:
            ddl = str(CreateIndex(ix).compile(dialect=conn.dialect))
            assert " WHERE " in ddl, ddl
    code = (
        "import sys\n"
        "from ffctl.core.store import Store\n"
        "import ffctl.core.models\n"
        "Store('sqlite://').check_schema\n"
        "print('PG', 'sqlalchemy.dialects.postgresql' in sys.modules)\n"
        "from sqlmodel import SQLModel\n"
        "print('FACTS', 'order_fact' in SQLModel.metadata.tables)\n"
        "print('FACT', ffctl.core.models.OrderFact.__tablename__, 'order_fact' in SQLModel.metadata.tables)\n"
    )
    out = python_c(code, check=True).stdout
    assert "PG False" in out, out
    # the report facts' tables are built when first named (core/factmodels.py), not by every command
    assert "FACTS False" in out and "FACT order_fact True" in out, out


def test_a_command_collects_no_garbage_while_it_starts(tmp_path):
    """ffctl's process runs no cyclic collection while it imports (start-up's objects live as long
    as the process), sets them aside when the store opens, and collects as usual from there; a
    process that only uses the library (tests) keeps Python's collector as it was."""
    db = tmp_path / "s.db"
    code = (
        "import gc, sys\n"
        "from ffctl.commands import _common\n"
        "from ffctl.cli import main\n"
        "early = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and early.append(1))\n"
        "end = _common.end_startup\n"
        "def ended():\n"
        "    print('BEFORE STORE', len(early), gc.isenabled(), flush=True)\n"
        "    end()\n"
        "    print('AFTER STORE', gc.isenabled(), gc.get_freeze_count() > 10000, flush=True)\n"
        "_common.end_startup = ended\n"
        f"sys.argv = ['ffctl', '--db', 'sqlite:///{db}', 'init']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
    )
    out = python_c(code, cwd=tmp_path).stdout
    assert "BEFORE STORE 0 False" in out and "AFTER STORE True True" in out, out
    from ffctl.commands._common import AppState

    frozen = gc.get_freeze_count()
    st = AppState(config_path=None, db_url=f"sqlite:///{db}", now_text=None, user="t")
    st.store()
    st.close()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_json_and_messages_do_not_load_rich(tmp_path):
    """Rich draws tables; a command asked for JSON, and its messages on stderr, do without it
    (its import is ~5% of a single-order command)."""
    db = tmp_path / "s.db"
    code = (
        "import sys\n"
        "from ffctl.cli import app\n"
        f"for args in (['--db', 'sqlite:///{db}', 'init'], ['--db', 'sqlite:///{db}', 'task', 'list', '--format', 'json']):\n"
        "    try:\n        app(args)\n    except SystemExit as e:\n        print('EXIT', e.code)\n"
        "print('RICH', [m for m in sys.modules if m.startswith('rich')][:3])\n"
    )
    r = python_c(code, cwd=tmp_path)
    assert r.stdout.count("EXIT 0") == 2 and "[]" in r.stdout and "RICH []" in r.stdout, (r.stdout, r.stderr)
    assert "no task is theirs" in r.stderr, r.stderr  # the messages arrive, as plain lines


def test_head_constant_matches_the_migration_scripts():
    from alembic.script import ScriptDirectory

    from ffctl.core.store import Store
    from ffctl.migrations import HEAD

    store = Store("sqlite://")
    assert ScriptDirectory.from_config(store._alembic_config()).get_current_head() == HEAD
