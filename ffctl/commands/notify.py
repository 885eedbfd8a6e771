"""ffctl notify send / list."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(help=_("Deliver queued notifications; see what went where."), no_args_is_help=True)


@app.command(
    help=_(
        "Deliver pending notifications whose time has come: email, webhook, group chats, the log file.\n"
        "\n"
        "Group chats (wecom, dingtalk, feishu, slack) get their vendor's message format; a vendor's\n"
        "error inside an HTTP 200 is retried like any failure, and a robot's rate limit (DingTalk\n"
        "and WeCom: 20 a minute) holds the rest back for the next run, never dropping them.\n"
        "\n"
        "Failures are retried later with exponential backoff (2, 4, 8, ... minutes), up to\n"
        "[notify] max_attempts, then marked failed. Exit code 1 if any notification failed for good."
    )
)
def send(
    ctx: typer.Context,
    limit: int | None = typer.Option(None, "--limit", min=1, help=_("Send at most this many [default: all due].")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, dumps, message, render, resolve_format
    from ffctl.core import notify

    st = AppState.of(ctx)
    cfg = st.config()
    report = notify.send(st.store(), cfg, now=st.now(), limit=limit)
    kind = resolve_format(fmt)
    if kind == "json":
        print(dumps(report.as_dict(), st.tz))
    else:
        columns = [
            Column("id", justify="right"),
            Column("recipient"),
            Column("channel"),
            Column("status", show=_status_text),
            Column("attempts", justify="right"),
            Column("next_attempt_at", N_("next try")),
            Column("error"),
        ]
        render(report.items, columns, kind, tz=st.tz, empty=_("Nothing to send."))
    if report.items:
        deferred = (
            _(", {count} held back by a chat's rate limit").format(count=report.deferred) if report.deferred else ""
        )
        message(
            _("{sent} sent, {retrying} to retry later, {failed} failed for good{deferred}.").format(
                sent=report.sent, retrying=report.retrying, failed=report.failed, deferred=deferred
            )
        )
    if report.failed:
        message(_("Hint: `ffctl notify list --failed` shows them with the last error."))
        raise typer.Exit(1)


def _status_text(value: str) -> str:
    return {"sent": "[green]sent[/]", "failed": "[red]failed[/]", "pending": "[yellow]pending[/]"}.get(value, value)


@app.command("list", help=_("Notifications, newest first: who, on which channel, what, and whether it went out."))
def list_(
    ctx: typer.Context,
    failed: bool = typer.Option(False, "--failed", help=_("Only notifications that failed for good.")),
    status: str | None = typer.Option(
        None, "--status", metavar="STATUS", help=_("Only this status: pending, sent or failed.")
    ),
    limit: int = typer.Option(100, "--limit", min=0, help=_("Show at most this many, newest first (0: all).")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, render, say_cut
    from ffctl.core import notify
    from ffctl.core.errors import UsageError

    if failed:
        if status not in (None, "failed"):
            raise UsageError(_("--failed and --status {status} contradict each other").format(status=status))
        status = "failed"
    if status is not None and status not in notify.STATUSES:
        raise UsageError(
            _("--status {status!r}: use one of {names}").format(status=status, names=", ".join(notify.STATUSES))
        )
    st = AppState.of(ctx)
    with st.store().session() as s:
        rows, total = notify.list_notifications(s, status=status, limit=limit)
    columns = [
        Column("id", justify="right"),
        Column("created_at", N_("created")),
        Column("recipient"),
        Column("channel"),
        Column("subject"),
        Column("status", show=_status_text),
        Column("attempts", justify="right"),
        Column("sent_at", N_("sent")),
        Column("last_error", N_("last error")),
    ]
    render(rows, columns, fmt, tz=st.tz, empty=_("No notifications match."))
    say_cut(len(rows), total, ngettext("notification", "notifications", total))
