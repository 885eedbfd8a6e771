"""ffctl db upgrade / current."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState
from ffctl.i18n import _

app = typer.Typer(help=_("Create or upgrade the store's schema; show its revision."), no_args_is_help=True)


@app.command(help=_("Create the store, or upgrade it to this ffctl's schema (safe to run again)."))
def upgrade(ctx: typer.Context) -> None:
    from ffctl.core.errors import mask_url

    store = AppState.of(ctx).store(check=False, create=True)
    before = store.current_revision()
    store.upgrade()
    after = store.current_revision()
    where = mask_url(store.url)
    if before == after:
        typer.echo(_("{where} is up to date (revision {after}).").format(where=where, after=after), err=True)
    else:
        typer.echo(
            _("{where} upgraded from {value} to revision {after}.").format(
                where=where, value=before or _("empty"), after=after
            ),
            err=True,
        )


@app.command(help=_("Print the store's schema revision and whether it is up to date."))
def current(ctx: typer.Context) -> None:
    from ffctl.core.errors import mask_url

    store = AppState.of(ctx).store(check=False)
    rev, head = store.current_revision(), store.head_revision()
    typer.echo(rev or "empty")
    state = (
        _("up to date")
        if rev == head
        else _("behind: this ffctl needs {head}; run `ffctl db upgrade`").format(head=head)
    )
    typer.echo(_("{mask_url}: {state}").format(mask_url=mask_url(store.url), state=state), err=True)
    if rev != head:
        raise typer.Exit(1)
