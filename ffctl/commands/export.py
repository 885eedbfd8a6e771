"""ffctl export events: the audit trail as a process-mining event log (SPEC 9.7)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from ffctl.commands._common import AppState
from ffctl.i18n import _, ngettext

app = typer.Typer(
    help=_("Export the audit trail as a process-mining event log (OCEL 2.0, XES, CSV)."), no_args_is_help=True
)


@app.callback(help=_("Export the audit trail as a process-mining event log (OCEL 2.0, XES, CSV)."))
def main() -> None:
    pass


class LogFormat(str, Enum):
    ocel = "ocel"
    xes = "xes"
    csv = "csv"


FROM_HELP = _("Orders created from this date or time on (a date means its start, in the configured zone).")
TO_HELP = _("Orders created up to this date (inclusive) or before this time.")


@app.command(
    help=_(
        "Write the orders' audit trail as an event log that PM4Py, Celonis or Disco load.\n"
        "\n"
        "Case = order; activity = the event and its node (`entered credit_review`); resource = the\n"
        "actor. csv: case_id, activity, timestamp, resource, node, detail. xes: one trace per order,\n"
        "with lifecycle:transition where the event is one. ocel: OCEL 2.0 JSON with objects order,\n"
        "order_line, sku and shipment; each event links to its order and to the lines, SKUs or\n"
        "shipment it is about. --from/--to pick the orders created in the period, with their whole\n"
        "trail. Times are ISO 8601 in the configured zone, with the offset. Written as it is read:\n"
        "memory stays small whatever the size of the store."
    )
)
def events(
    ctx: typer.Context,
    fmt: LogFormat = typer.Option(
        ..., "--format", "-f", help=_("ocel (OCEL 2.0 JSON), xes or csv."), case_sensitive=False
    ),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE", help=_("Where to write the log ('-': stdout).")),
    start: str | None = typer.Option(None, "--from", metavar="DATE|TIME", help=FROM_HELP),
    end: str | None = typer.Option(None, "--to", metavar="DATE|TIME", help=TO_HELP),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core.errors import FfctlError, UsageError
    from ffctl.core.export import export_events
    from ffctl.core.kpi import parse_period

    st = AppState.of(ctx)
    cfg = st.config()
    try:
        period = parse_period(start, end, st.tz)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if str(out) != "-" and out.is_dir():
        raise UsageError(
            _("--out {path} is a folder; give a file name, e.g. {path}/events.{ext}").format(
                path=out, ext="json" if fmt.value == "ocel" else fmt.value
            )
        )
    try:
        with st.store().session() as s:
            done = export_events(s, fmt.value, out, tz=cfg.timezone, now=st.now(), period=period)
    except OSError as exc:
        raise FfctlError(
            _("cannot write {path}: {reason}").format(path=out, reason=exc.strerror or exc),
            hint=_("Check that the folder exists and that you may write to it."),
        ) from None
    if str(out) == "-":
        return
    cases = ngettext("{n} order", "{n} orders", done["cases"]).format(n=f"{done['cases']:,}")
    message(
        _("Wrote {path}: {events} events of {cases} ({fmt}).").format(
            path=out, events=f"{done['events']:,}", cases=cases, fmt=fmt.value
        )
    )
