"""ffctl init: write ffctl.toml from the example (never overwrite) and create the store."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState
from ffctl.i18n import _

app = typer.Typer()


@app.command(help=_("Write ffctl.toml from the example (never overwrites) and create or upgrade the store."))
def init(ctx: typer.Context) -> None:
    from ffctl.core.config import example_config_text
    from ffctl.core.errors import FfctlError
    from ffctl.core.files import write_private
    from ffctl.core.secrets import mask_url

    st = AppState.of(ctx)
    path = st.config_path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # never overwrite, never through a symlink (a dangling one would create its target)
        write_private(path, example_config_text(), exclusive=True)
    except FileExistsError:
        if path.is_symlink() and not path.exists():
            raise FfctlError(
                _(
                    "{path} is a symbolic link to a file that does not exist; init writes a config "
                    "only as a new file, never through a link"
                ).format(path=path),
                hint=_("Remove the link, or point --config / FFCTL_CONFIG where the config should be."),
            ) from None
        typer.echo(_("{path} exists; leaving it as it is.").format(path=path), err=True)
    else:
        typer.echo(
            _("Wrote {path} from the example; edit it, then run `ffctl config check`.").format(path=path), err=True
        )
    st.config()  # refuse an invalid config before touching the store
    store = st.store(check=False, create=True)
    store.upgrade()
    typer.echo(
        _("Store ready: {mask_url} (revision {current_revision}).").format(
            mask_url=mask_url(store.url), current_revision=store.current_revision()
        ),
        err=True,
    )
