"""The ``ffctl`` entry point: a lazy command registry, global options, one error handler.

Sub-apps are imported only when invoked, so ``ffctl --help`` and cron's light commands start
fast (no SQLAlchemy at import). Each registry row is: name -> ("module:attr", summary).

The language (SPEC 9.6) is chosen in ``LazyGroup.main``, before any command module is imported,
so the help= strings that modules evaluate at import are already in it; the texts defined here at
import (summaries, the root's help) are translated again when shown.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from ffctl import i18n
from ffctl.i18n import _

COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("ffctl.commands.init:app", _("Write ffctl.toml from the example and create the store.")),
    "db": ("ffctl.commands.db:app", _("Create or upgrade the store's schema; show its revision.")),
    "config": ("ffctl.commands.config:app", _("Validate the config and print the workflows.")),
    "import": ("ffctl.commands.imports:app", _("Import a CSV file: products, customers, stock, orders, ...")),
    "stock": ("ffctl.commands.stock:app", _("Stock per warehouse, available-to-promise, receipts, counts.")),
    "allocate": ("ffctl.commands.allocate:app", _("Reserve stock for orders waiting at the allocation node.")),
    "order": ("ffctl.commands.order:app", _("Find orders and see where each one is; hold, release, cancel.")),
    "task": ("ffctl.commands.task:app", _("The inbox: open node tasks with owner, deadline and time left.")),
    "advance": ("ffctl.commands.advance:app", _("Complete (or reject) an order's current manual node.")),
    "ship": ("ffctl.commands.ship:ship_app", _("Record that an order has shipped.")),
    "deliver": ("ffctl.commands.ship:deliver_app", _("Record that an order was delivered, with any issue.")),
    "return": ("ffctl.commands.returns:app", _("Record units of a shipped order that came back, with the reason.")),
    "sla": ("ffctl.commands.sla:app", _("The SLA sweep (cron), the SLA status board and the breach forecast.")),
    "rules": ("ffctl.commands.rules:app", _("Run or list the rules: low stock, dwelling orders, suppliers.")),
    "requisition": ("ffctl.commands.requisition:app", _("Purchase requisitions drafted by the rules.")),
    "supplier": ("ffctl.commands.supplier:app", _("Supplier QC pass rates, delays and inspection exemption.")),
    "notify": ("ffctl.commands.notify:app", _("Deliver queued notifications; see what went where.")),
    "report": (
        "ffctl.commands.report:app",
        _("KPIs against targets, workload per role, the paths orders take, the dashboard."),
    ),
    "export": ("ffctl.commands.export:app", _("Export the audit trail as a process-mining event log.")),
    "schedule": ("ffctl.commands.schedule:app", _("Run due scheduled jobs (one cron line); show next runs.")),
    "demo": ("ffctl.commands.demo:app", _("Build a realistic demo store and run it end to end.")),
}


def _available(name: str) -> bool:
    module = COMMANDS[name][0].split(":", 1)[0]
    return importlib.util.find_spec(module) is not None


class _Formatter(typer._click.formatting.HelpFormatter):
    """Click's help formatter with "Usage:" in the current language: Typer's copy of Click writes
    that prefix without gettext (the other words of its help frame go through click.po)."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, _("Usage:") + " " if prefix is None else prefix)


typer._click.core.Context.formatter_class = _Formatter


class LazyGroup(TyperGroup):
    """Imports a sub-app on first use and renders every ffctl error the same way."""

    def main(self, args=None, *rest, **kwargs):
        argv = list(sys.argv[1:] if args is None else args)
        i18n.choose(_config_path(argv))
        if i18n.missing_catalog is not None:
            _stderr(
                f"Warning: the {i18n.current()} catalog {i18n.missing_catalog} is not built; messages "
                "stay in English (pip install -e . or python hatch_build.py builds it)."
            )
        elif i18n.stale_fragments:  # a checkout where a fragment was edited (or pulled) after the build
            _stderr(
                _(
                    "Warning: {fragments} changed after the catalog was compiled; run `python hatch_build.py` "
                    "in the checkout to see the new translations."
                ).format(fragments=", ".join(i18n.stale_fragments))
            )
        _translate_help(self)
        return super().main(args, *rest, **kwargs)

    def list_commands(self, ctx) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in COMMANDS or not _available(cmd_name):
            return None
        module_name, attr = COMMANDS[cmd_name][0].split(":", 1)
        sub_app = getattr(importlib.import_module(module_name), attr)
        sub_app._add_completion = False  # completion belongs to the root only
        # plain help, as the root's: Rich markup would eat "[schedule]" and show flags as "<bool>"
        sub_app.rich_markup_mode = None
        command = typer.main.get_command(sub_app)
        command.name = cmd_name
        _translate_help(command)
        return command

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, _(COMMANDS[name][1])) for name in self.list_commands(ctx)]
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)

    def resolve_command(self, ctx, args):
        self.commands = {name: None for name in COMMANDS}  # for did-you-mean suggestions only
        try:
            return super().resolve_command(ctx, args)
        finally:
            self.commands = {}

    def invoke(self, ctx) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - the one place errors become messages
            _report(exc)


def _config_path(argv: list[str]) -> str:
    """The config the global options name (``--config PATH`` before the command), as AppState
    resolves it, read before Click parses anything: the language must be set before help is built."""
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            return next(it, "") or "ffctl.toml"
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg in ("--db", "--now", "--as"):
            next(it, None)
        elif not arg.startswith("-"):
            break  # the command: its own options are not global ones
    return os.environ.get("FFCTL_CONFIG") or "ffctl.toml"


#: Click's own help option, worded here so that it is translated with the rest
HELP_OPTION = _("Show this message and exit.")


def _translate_help(command) -> None:
    """Put a command's help texts (its own, its options', its sub-commands') in the current language.

    Texts marked with ``_()`` where a module defines them were translated when it was imported;
    this covers the ones evaluated before the language was chosen (this module's) and a module
    imported earlier in the process (tests)."""
    for item in [command, *getattr(command, "params", ())]:
        for attr in ("help", "short_help"):
            text = getattr(item, attr, None)
            if text:
                setattr(item, attr, _(text))
    made = command.get_help_option  # Click makes -h/--help per command on first use, worded in English

    def get_help_option(ctx):
        option = made(ctx)
        if option is not None and option.help:
            option.help = _(option.help)
        return option

    command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        if sub is not None:
            _translate_help(sub)


def _report(exc: Exception) -> None:
    from ffctl.core.errors import FfctlError

    if os.environ.get("FFCTL_DEBUG") == "1" or isinstance(exc, (typer.Exit, typer.Abort)):
        raise exc
    if exc.__class__.__module__.startswith("typer._click") or exc.__class__.__module__.startswith("click"):
        raise exc
    if isinstance(exc, FfctlError):
        _stderr(_("Error: {message}").format(message=exc.message))
        if exc.hint:
            _stderr(_("Hint: {hint}").format(hint=exc.hint))
        raise typer.Exit(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        raise typer.Exit(130)
    if isinstance(exc, BrokenPipeError):
        # the reader stopped reading (`ffctl order list | head`): end quietly, as cat and grep do;
        # stdout goes to /dev/null so that Python's own flush at exit does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(1)
    from ffctl.core.secrets import mask_urls_in

    _stderr(
        _("Error: unexpected {error}: {message}").format(
            error=exc.__class__.__name__, message=mask_urls_in(str(exc)).splitlines()[0] if str(exc) else ""
        )
    )
    _stderr(_("Hint: this is a bug in ffctl; run again with FFCTL_DEBUG=1 for the traceback and report it."))
    raise typer.Exit(1)


def _stderr(text: str) -> None:
    from ffctl.core.text import printable

    typer.echo(printable(text, keep_newlines=True), err=True)  # an id from data must not drive the terminal


app = typer.Typer(
    cls=LazyGroup,
    name="ffctl",
    help=_("Fulfillment operations: orders, stock and suppliers through SLA-timed workflows."),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None, "--config", metavar="PATH", envvar="FFCTL_CONFIG", help=_("Config file [default: ./ffctl.toml].")
    ),
    db: str | None = typer.Option(
        None, "--db", metavar="URL", envvar="FFCTL_DB", help=_("Database URL (overrides [database] url).")
    ),
    now: str | None = typer.Option(
        None,
        "--now",
        metavar="ISO",
        envvar="FFCTL_NOW",
        help=_("The command clock: ISO time to act at [default: now]."),
    ),
    as_user: str | None = typer.Option(
        None, "--as", metavar="USER", envvar="FFCTL_USER", help=_("Acting user [default: your login].")
    ),
) -> None:
    from ffctl.commands._common import AppState

    if as_user is not None and not as_user.strip():
        _refuse_blank_user(from_env=getattr(ctx.get_parameter_source("as_user"), "name", None) == "ENVIRONMENT")
    if as_user is None and os.environ.get("FFCTL_USER", "x").strip() == "":  # set but empty: Click ignores it
        _refuse_blank_user(from_env=True)
    ctx.obj = AppState(config_path=config, db_url=db, now_text=now, user=as_user)
    ctx.call_on_close(ctx.obj.close)


def _refuse_blank_user(*, from_env: bool) -> None:
    """A blank acting user would silently become the OS login: say so instead (exit 2)."""
    from ffctl.core.errors import UsageError
    from ffctl.i18n import _

    if from_env:
        raise UsageError(_("FFCTL_USER is blank; set it to a user name, or unset it to act as your login"))
    raise UsageError(_("--as needs a user name; leave --as out to act as your login"))


def main() -> None:
    import gc

    from ffctl.commands._common import begin_startup

    begin_startup()
    try:
        app()
    finally:
        # what is left at exit goes with the process: Python's last collections over the start-up
        # heap (SQLAlchemy's and pydantic's objects) cost more CPU than a single-order command's work
        gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
