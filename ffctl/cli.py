"""The ``ffctl`` entry point: a lazy command registry, global options, one error handler.

Sub-apps are imported only when invoked, so ``ffctl --help`` and cron's light commands start
fast (no SQLAlchemy at import). Each registry row is: name -> ("module:attr", summary).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Optional

import typer
from typer.core import TyperGroup

COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("ffctl.commands.init:app", "Write ffctl.toml from the example and create the store."),
    "db": ("ffctl.commands.db:app", "Create or upgrade the store's schema; show its revision."),
    "config": ("ffctl.commands.config:app", "Validate the config and print the workflows."),
    "import": ("ffctl.commands.imports:app", "Import a CSV file: products, customers, stock, orders, ..."),
    "stock": ("ffctl.commands.stock:app", "Stock per warehouse, available-to-promise, receipts, counts."),
    "allocate": ("ffctl.commands.allocate:app", "Reserve stock for orders waiting at the allocation node."),
    "order": ("ffctl.commands.order:app", "Find orders and see where each one is; hold, release, cancel."),
    "task": ("ffctl.commands.task:app", "The inbox: open node tasks with owner, deadline and time left."),
    "advance": ("ffctl.commands.advance:app", "Complete (or reject) an order's current manual node."),
    "ship": ("ffctl.commands.ship:ship_app", "Record that an order has shipped."),
    "deliver": ("ffctl.commands.ship:deliver_app", "Record that an order was delivered, with any issue."),
    "return": ("ffctl.commands.returns:app", "Record units of a shipped order that came back, with the reason."),
    "sla": ("ffctl.commands.sla:app", "The SLA sweep (cron), the SLA status board and the breach forecast."),
    "rules": ("ffctl.commands.rules:app", "Run or list the rules: low stock, dwelling orders, suppliers."),
    "requisition": ("ffctl.commands.requisition:app", "Purchase requisitions drafted by the rules."),
    "supplier": ("ffctl.commands.supplier:app", "Supplier QC pass rates, delays and inspection exemption."),
    "notify": ("ffctl.commands.notify:app", "Deliver queued notifications; see what went where."),
    "report": ("ffctl.commands.report:app", "KPIs against targets, workload per role, the paths orders take, the dashboard."),
    "export": ("ffctl.commands.export:app", "Export the audit trail as a process-mining event log."),
    "schedule": ("ffctl.commands.schedule:app", "Run due scheduled jobs (one cron line); show next runs."),
    "demo": ("ffctl.commands.demo:app", "Build a realistic demo store and run it end to end."),
}


def _available(name: str) -> bool:
    module = COMMANDS[name][0].split(":", 1)[0]
    return importlib.util.find_spec(module) is not None


class LazyGroup(TyperGroup):
    """Imports a sub-app on first use and renders every ffctl error the same way."""

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
        return command

    def format_commands(self, ctx, formatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
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


def _report(exc: Exception) -> None:
    from ffctl.core.errors import FfctlError

    if os.environ.get("FFCTL_DEBUG") == "1" or isinstance(exc, (typer.Exit, typer.Abort)):
        raise exc
    if exc.__class__.__module__.startswith("typer._click") or exc.__class__.__module__.startswith("click"):
        raise exc
    if isinstance(exc, FfctlError):
        _stderr(f"Error: {exc.message}")
        if exc.hint:
            _stderr(f"Hint: {exc.hint}")
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

    _stderr(f"Error: unexpected {exc.__class__.__name__}: {mask_urls_in(str(exc)).splitlines()[0] if str(exc) else ''}")
    _stderr("Hint: this is a bug in ffctl; run again with FFCTL_DEBUG=1 for the traceback and report it.")
    raise typer.Exit(1)


def _stderr(text: str) -> None:
    from ffctl.core.text import printable

    typer.echo(printable(text, keep_newlines=True), err=True)  # an id from data must not drive the terminal


app = typer.Typer(
    cls=LazyGroup,
    name="ffctl",
    help="Fulfillment operations: orders, stock and suppliers through SLA-timed workflows.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Optional[str] = typer.Option(
        None, "--config", metavar="PATH", envvar="FFCTL_CONFIG", help="Config file [default: ./ffctl.toml]."
    ),
    db: Optional[str] = typer.Option(
        None, "--db", metavar="URL", envvar="FFCTL_DB", help="Database URL (overrides [database] url)."
    ),
    now: Optional[str] = typer.Option(
        None, "--now", metavar="ISO", envvar="FFCTL_NOW", help="The command clock: ISO time to act at [default: now]."
    ),
    as_user: Optional[str] = typer.Option(
        None, "--as", metavar="USER", envvar="FFCTL_USER", help="Acting user [default: your login]."
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
    app()


if __name__ == "__main__":
    sys.exit(main())
