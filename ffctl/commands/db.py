"""ffctl db upgrade / current."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState

app = typer.Typer(help="Create or upgrade the store's schema; show its revision.", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context) -> None:
    """Create the store, or upgrade it to this ffctl's schema (safe to run again)."""
    from ffctl.core.errors import mask_url

    store = AppState.of(ctx).store(check=False, create=True)
    before = store.current_revision()
    store.upgrade()
    after = store.current_revision()
    where = mask_url(store.url)
    if before == after:
        typer.echo(f"{where} is up to date (revision {after}).", err=True)
    else:
        typer.echo(f"{where} upgraded from {before or 'empty'} to revision {after}.", err=True)


@app.command()
def current(ctx: typer.Context) -> None:
    """Print the store's schema revision and whether it is up to date."""
    from ffctl.core.errors import mask_url

    store = AppState.of(ctx).store(check=False)
    rev, head = store.current_revision(), store.head_revision()
    typer.echo(rev or "empty")
    state = "up to date" if rev == head else f"behind: this ffctl needs {head}; run `ffctl db upgrade`"
    typer.echo(f"{mask_url(store.url)}: {state}", err=True)
    if rev != head:
        raise typer.Exit(1)
