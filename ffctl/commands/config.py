"""ffctl config check."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState

app = typer.Typer(help="Validate the config and print the workflows.", no_args_is_help=True)


@app.command()
def check(ctx: typer.Context) -> None:
    """Validate the config: list every problem (exit 2), or print the workflows as a tree."""
    from ffctl.core.config import describe_workflows

    from ffctl.i18n import ngettext

    st = AppState.of(ctx)
    cfg = st.config()
    from ffctl.core.text import printable

    typer.echo(printable(describe_workflows(cfg), keep_newlines=True))  # names in the file are data too
    for warning in cfg.warnings:
        typer.echo(f"Warning: {warning}", err=True)
    if cfg.warnings:
        count = len(cfg.warnings)
        typer.echo(ngettext("{path}: OK, with {n} warning", "{path}: OK, with {n} warnings", count).format(
            path=st.config_path, n=count), err=True)
    else:
        typer.echo(f"{st.config_path}: OK", err=True)


@app.command()
def show_path(ctx: typer.Context) -> None:
    """Print which config file and database this invocation would use (password masked)."""
    from ffctl.core.errors import mask_url

    st = AppState.of(ctx)
    typer.echo(f"config: {st.config_path.resolve()}{'' if st.config_path.exists() else ' (missing)'}")
    typer.echo(f"database: {mask_url(st.db_url())}")
