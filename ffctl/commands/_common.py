"""What every command shares: the global options resolved lazily, and the --format option.

A command gets everything through ``AppState.of(ctx)``:
    st = AppState.of(ctx)
    cfg = st.config()           # validated Config (exit 2 on problems)
    with st.store().session(write=True) as s: ...
    st.now(), st.user, st.tz
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ffctl.core.errors import UsageError
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config
    from ffctl.core.store import Store

DEFAULT_CONFIG = "ffctl.toml"
FUTURE_NOW = timedelta(days=1)  # a --now further ahead of the wall clock than this is warned about (SPEC 9.1)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


FORMAT_HELP = _("Output format: table, json or csv [default: table on a terminal, csv when piped].")


def format_option() -> Format | None:
    """The shared ``--format`` option (use as a parameter default)."""
    return typer.Option(None, "--format", "-f", help=FORMAT_HELP, case_sensitive=False)


class AppState:
    """The global options, resolved on first use."""

    def __init__(self, *, config_path: str | None, db_url: str | None, now_text: str | None, user: str | None):
        self.config_given = config_path is not None
        self.config_path = Path(config_path or DEFAULT_CONFIG)
        self.db_url_option = db_url
        self.now_text = now_text
        self.user = user or _login()
        self._config: Config | None = None
        self._store: Store | None = None
        self._now: datetime | None = None

    @staticmethod
    def of(ctx: typer.Context) -> AppState:
        root = ctx.find_root()
        if root.obj is None:  # a sub-app invoked on its own (tests)
            root.obj = AppState(config_path=None, db_url=None, now_text=None, user=None)
        return root.obj

    # --- config ------------------------------------------------------------------------------
    def config(self) -> Config:
        if self._config is None:
            from ffctl.core.config import load_config

            self._config = load_config(self.config_path)  # a missing file: one message, one hint
        return self._config

    def config_if_present(self) -> Config | None:
        """The config when there is one (explicit paths must exist); None for the default path."""
        if not self.config_given and not self.config_path.exists():
            return None
        return self.config()

    @property
    def tz(self) -> str:
        cfg = self.config_if_present()
        return cfg.timezone if cfg else "UTC"

    # --- store -------------------------------------------------------------------------------
    def db_url(self) -> str:
        if self.db_url_option:
            return self.db_url_option
        cfg = self.config_if_present()
        if cfg and cfg.database_url:
            return cfg.database_url
        return f"sqlite:///{(self.config_path.resolve().parent / 'ffctl.db')}"

    def store(self, *, check: bool = True, create: bool = False) -> Store:
        """The store; ``create`` only for the commands that make one (init, db upgrade)."""
        if self._store is None:
            from ffctl.core.store import Store

            self._store = Store(self.db_url(), create=create)
            if check:
                self._store.check_schema()
            end_startup()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    # --- clock -------------------------------------------------------------------------------
    def now(self) -> datetime:
        if self._now is None:
            if self.now_text:
                from ffctl.core.clock import parse_time

                try:
                    self._now = parse_time(self.now_text, self.tz)
                except ValueError as exc:
                    raise UsageError(_("--now {now_text!r}: {exc}").format(now_text=self.now_text, exc=exc)) from None
                if self._now - datetime.now(timezone.utc) > FUTURE_NOW:
                    from ffctl.commands._output import warn

                    # what a command records at a future clock stays ahead of everything done after it
                    warn(
                        _(
                            "--now {now} is more than a day ahead of this machine's clock; what this command "
                            "records happens at that time, and the orders it changes cannot be changed at an "
                            "earlier clock afterwards."
                        ).format(now=self.now_text)
                    )
            else:
                self._now = datetime.now(timezone.utc)
        return self._now


_STARTUP: dict[str, bool] = {}


def begin_startup() -> None:
    """The command line's process only (``ffctl.cli.main``): no cyclic collection while it starts.

    Start-up builds SQLAlchemy's, pydantic's and the models' objects, which live as long as the
    process; the collector's ~200 passes over them free nothing and cost a single-order command
    60-80 ms (docs/performance.md, "Interactive latency"). ``end_startup`` turns it back on.
    """
    import gc

    _STARTUP["began"] = True
    gc.disable()


def end_startup() -> None:
    """When the command opens its store: set what start-up built aside (``gc.freeze``: later
    collections skip it) and collect as usual from here on. Commands that open no store are the
    light ones (help, config); the demo calls this itself. Does nothing unless ``begin_startup``
    ran (tests, library use)."""
    import gc

    if _STARTUP.pop("began", False):
        gc.freeze()
        gc.enable()


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return os.environ.get("USER", "unknown")


def parse_user_time(text: str | None, st: AppState, option: str) -> datetime | None:
    """A time given in an option, in the config's zone when it has no offset."""
    if text is None:
        return None
    from ffctl.core.clock import parse_time

    try:
        return parse_time(text, st.tz)
    except ValueError as exc:
        raise UsageError(_("{option} {text!r}: {exc}").format(option=option, text=text, exc=exc)) from None
