"""Shared fixtures: a fresh store on SQLite and on PostgreSQL for every store test, and a CLI runner
that works in a temp dir through FFCTL_CONFIG / FFCTL_DB like a user's shell would.

PostgreSQL: 127.0.0.1:5432, trust auth, database ``test`` (override with FFCTL_TEST_PG). Each
test gets its own database, copied from a template migrated once per test process, and dropped
after. Outside CI a test skips PostgreSQL with the reason when the server is unreachable; under
CI=true that is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("FFCTL_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "config.example.toml"
BACKENDS = ["sqlite", "postgresql"]
# the validated-config cache (ffctl/core/configcache.py) goes to a folder of this test process, not ~/.cache
if "FFCTL_CACHE_DIR" not in os.environ:
    _CACHE = __import__("tempfile").mkdtemp(prefix="ffctl-test-cache-")
    __import__("atexit").register(shutil.rmtree, _CACHE, True)
    os.environ["FFCTL_CACHE_DIR"] = os.path.join(_CACHE, "ffctl")


def _pg_conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _pg_url_for(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{dbname}"


_pg_reason: list[str | None] = []


def pg_unavailable_reason() -> str | None:
    """None when PostgreSQL answers; otherwise why not (cached per process)."""
    if not _pg_reason:
        import psycopg

        try:
            with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), connect_timeout=3):
                _pg_reason.append(None)
        except Exception as exc:  # noqa: BLE001
            _pg_reason.append(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {str(exc).splitlines()[0]}")
    return _pg_reason[0]


def require_pg() -> None:
    reason = pg_unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests may not skip)")
        pytest.skip(reason)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    from ffctl.core.store import Store

    path = tmp_path_factory.mktemp("template") / "template.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template():
    """Name of a migrated template database for this test process (None if no PostgreSQL)."""
    if pg_unavailable_reason():
        yield None
        return
    from ffctl.core.store import Store

    name = f"ffctl_tpl_{uuid.uuid4().hex[:10]}"
    _pg_admin(f"CREATE DATABASE {name}")
    store = Store(_pg_url_for(name))
    store.upgrade()
    store.dispose()
    yield name
    _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def make_db_url(request, tmp_path, sqlite_template, pg_template):
    """Factory: a fresh, migrated database URL for a backend; dropped after the test."""
    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            target = tmp_path / f"ffctl-{uuid.uuid4().hex[:6]}.db"
            shutil.copy(sqlite_template, target)
            return f"sqlite:///{target}"
        require_pg()
        name = f"ffctl_t_{uuid.uuid4().hex[:12]}"
        _pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
        created.append(name)
        return _pg_url_for(name)

    yield make
    for name in created:
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(backend, make_db_url) -> str:
    """A fresh migrated database on each backend (the test runs twice)."""
    return make_db_url(backend)


@pytest.fixture
def store(db_url):
    from ffctl.core.store import Store

    s = Store(db_url)
    yield s
    s.dispose()


@pytest.fixture(autouse=True)
def english_between_tests(monkeypatch):
    """Each test starts in English and leaves nothing of another language behind: the language is
    process state (ffctl/i18n.py), and a command module imported while Chinese was on keeps its
    help= texts in Chinese, so the command modules first imported by such a test are dropped after it."""
    import sys

    from ffctl import i18n

    i18n.use("en")
    before = set(sys.modules)
    spoken = []
    use = i18n.use

    def recording_use(language):
        spoken.append(use(language))
        return spoken[-1]

    monkeypatch.setattr(i18n, "use", recording_use)
    yield
    monkeypatch.undo()
    if any(language != "en" for language in spoken):
        for name in set(sys.modules) - before:
            if name.startswith("ffctl.commands."):
                del sys.modules[name]
    i18n.use("en")


@pytest.fixture
def example_config():
    from ffctl.core.config import load_config

    return load_config(EXAMPLE_CONFIG)


@dataclass
class Workspace:
    """A user's working folder: ffctl.toml and a store, driven through the CLI."""

    path: Path
    db_url: str
    config_path: Path

    def run(
        self,
        *args: str,
        now: str | None = None,
        user: str | None = None,
        input: str | None = None,
        columns: int = 200,
        lang: str = "C.UTF-8",
    ):
        """Run ffctl; ``lang`` is the LANG it sees (LC_ALL and LC_MESSAGES unset): English unless a
        test asks for, e.g., zh_CN.UTF-8, whatever the developer's own locale."""
        from typer.testing import CliRunner

        from ffctl.cli import app

        env = {
            "FFCTL_CONFIG": str(self.config_path),
            "FFCTL_DB": self.db_url,
            "FFCTL_NOW": now,
            "FFCTL_USER": user or "admin_user",
            "FFCTL_DEBUG": None,
            "COLUMNS": str(columns),
            "LANG": lang,
            "LC_ALL": None,
            "LC_MESSAGES": None,
        }
        return CliRunner().invoke(app, [str(a) for a in args], env=env, input=input)

    def write(self, name: str, text: str, encoding: str = "utf-8") -> Path:
        target = self.path / name
        target.write_bytes(text.encode(encoding))
        return target

    def store(self):
        from ffctl.core.store import Store

        return Store(self.db_url)


@pytest.fixture
def workspace(tmp_path, db_url) -> Workspace:
    """A temp folder with the example config and a fresh store on each backend."""
    config_path = tmp_path / "ffctl.toml"
    shutil.copy(EXAMPLE_CONFIG, config_path)
    return Workspace(path=tmp_path, db_url=db_url, config_path=config_path)


@pytest.fixture
def workspace_with_config(tmp_path, db_url):
    """Factory: a workspace whose config is the given TOML text."""

    def make(text: str) -> Workspace:
        config_path = tmp_path / "ffctl.toml"
        config_path.write_text(text, encoding="utf-8")
        return Workspace(path=tmp_path, db_url=db_url, config_path=config_path)

    return make
