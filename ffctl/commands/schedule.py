"""ffctl schedule tick / show."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _

app = typer.Typer(help=_("Run due scheduled jobs (one cron line); show next runs."), no_args_is_help=True)


@app.command(
    help=_(
        "Run each [schedule] job whose cron time has come since its last run, once.\n"
        "\n"
        "Meant for cron every minute:\n"
        "\n"
        "\b\n"
        "    * * * * *  ffctl --config /path/ffctl.toml schedule tick\n"
        "\n"
        "Missed runs coalesce into one; overlapping ticks never run a job twice for one cron time.\n"
        "Exit code 1 if a job failed (the others still run)."
    )
)
def tick(
    ctx: typer.Context,
    job: str | None = typer.Option(None, "--job", metavar="JOB", help=_("Consider only this job.")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, message, render
    from ffctl.core import schedule
    from ffctl.core.errors import UsageError

    st = AppState.of(ctx)
    cfg = st.config()
    if job is not None and job not in cfg.schedule:
        raise UsageError(
            _("--job {job!r} is not in [schedule]; scheduled jobs: {value}").format(
                job=job, value=", ".join(cfg.schedule) or _("none")
            )
        )
    if not cfg.schedule:
        message(_("No jobs in [schedule] of {config_path}; nothing to run.").format(config_path=st.config_path))
    rows = schedule.tick(st.store(), cfg, now=st.now(), only=job)
    for row in rows:
        if row["note"]:
            message(
                _("{job}: {note}; ran it for the clock's cron time.").format(job=row["job"], note=row["note"])
                if row["ran"]
                else _("{job}: {note}.").format(job=row["job"], note=row["note"])
            )
    columns = [Column("job"), Column("cron"), Column("due_at", N_("cron time")), Column("ran"), Column("result")]
    render(rows, columns, fmt, tz=st.tz, empty=_("No scheduled jobs."))
    failed = [r["job"] for r in rows if not r["ok"]]
    if failed:
        message(_("Failed: {jobs} (recorded; see `ffctl schedule show`).").format(jobs=", ".join(failed)))
        raise typer.Exit(1)


@app.command(help=_("Each scheduled job: cron, last run and its result, and the next run (local time)."))
def show(ctx: typer.Context, fmt=format_option()) -> None:
    from ffctl.commands._output import Column, message, render, table_cell
    from ffctl.core import schedule

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        rows = schedule.show(s, cfg, now=st.now())
    columns = [
        Column("job"),
        Column("cron"),
        Column("last_due_at", N_("last cron time")),
        Column("last_ran_at", N_("last ran")),
        Column("last_result", N_("result")),
        Column("next_run_at", N_("next run"), show=lambda v: _("never") if v is None else table_cell(v, st.tz)),
    ]
    render(rows, columns, fmt, tz=st.tz, empty=_("No jobs in [schedule]."))
    for row in rows:
        if row["note"]:
            message(
                _("{job}: {note}.").format(job=row["job"], note=row["note"])
                + (" " + _("The next tick runs it.") if row["due_now"] else "")
            )
