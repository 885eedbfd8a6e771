"""ffctl config check."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import _, ngettext

app = typer.Typer(help=_("Validate the config and print the workflows; compare two configs."), no_args_is_help=True)


@app.command(help=_("Validate the config: list every problem (exit 2), or print the workflows as a tree."))
def check(ctx: typer.Context) -> None:
    from ffctl.commands._config_view import describe_workflows

    st = AppState.of(ctx)
    cfg = st.config()
    from ffctl.core.text import printable

    typer.echo(printable(describe_workflows(cfg), keep_newlines=True))  # names in the file are data too
    for warning in cfg.warnings:
        typer.echo(_("Warning: {warning}").format(warning=warning), err=True)
    if cfg.warnings:
        count = len(cfg.warnings)
        typer.echo(
            ngettext("{path}: OK, with {n} warning", "{path}: OK, with {n} warnings", count).format(
                path=st.config_path, n=count
            ),
            err=True,
        )
    else:
        typer.echo(_("{config_path}: OK").format(config_path=st.config_path), err=True)


@app.command(help=_("Print which config file and database this invocation would use (password masked)."))
def show_path(ctx: typer.Context) -> None:
    from ffctl.core.errors import mask_url

    st = AppState.of(ctx)
    typer.echo(
        _("config: {resolve}{value}").format(
            resolve=st.config_path.resolve(), value="" if st.config_path.exists() else _(" (missing)")
        )
    )
    typer.echo(_("database: {mask_url}").format(mask_url=mask_url(st.db_url())))


@app.command(
    help=_(
        "What changed from OLD.toml to NEW.toml, in the config's terms.\n"
        "\n"
        'One line per change: "node review: SLA 30m → 45m", "calendar office: holiday 2026-10-08\n'
        'added", "role lead: members +carol". Both files are validated first (exit 2 with the\n'
        "problems, as `config check`). JSON/CSV rows: section, name, field, old, new, text."
    )
)
def diff(
    ctx: typer.Context,
    old: str = typer.Argument(..., metavar="OLD.toml", help=_("The config as it is.")),
    new: str = typer.Argument(..., metavar="NEW.toml", help=_("The config as proposed.")),
    exit_code: bool = typer.Option(
        False, "--exit-code", help=_("Exit 1 when the configs differ, 0 when they are the same.")
    ),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, message, render
    from ffctl.core.config import load_config
    from ffctl.core.configdiff import diff as config_diff

    changes = config_diff(load_config(old), load_config(new))
    columns = [Column("section"), Column("name"), Column("field"), Column("old"), Column("new"), Column("text")]
    if not changes:
        message(_("No differences between {old} and {new}.").format(old=old, new=new))
    if changes or not _is_table(fmt):  # JSON and CSV print an empty list: a script reads "no changes"
        render(changes, [Column("text", _("change"))] if _is_table(fmt) else columns, fmt)
    if exit_code and changes:
        raise typer.Exit(1)


def _is_table(fmt) -> bool:
    from ffctl.commands._output import resolve_format

    return resolve_format(fmt) == "table"
