"""ffctl requisition list / approve / reject: purchase requisitions drafted by the rules."""

from __future__ import annotations

from enum import Enum

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _

app = typer.Typer(help=_("Purchase requisitions drafted by the rules."), no_args_is_help=True)


class Status(str, Enum):
    draft = "draft"
    approved = "approved"
    rejected = "rejected"


@app.command("list", help=_("Requisitions, oldest first, with the numbers that caused each one."))
def list_(
    ctx: typer.Context,
    status: Status | None = typer.Option(
        None, "--status", help=_("Only draft, approved or rejected ones."), case_sensitive=False
    ),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, render
    from ffctl.core.requisitions import list_requisitions

    st = AppState.of(ctx)
    with st.store().session() as s:
        rows = list_requisitions(s, status=status.value if status else None)
    columns = [
        Column("id", justify="right"),
        Column("sku"),
        Column("qty", justify="right"),
        Column("supplier"),
        Column("status"),
        Column("created_at", N_("created")),
        Column("reason"),
        Column("decided_by", N_("decided by")),
        Column("decided_at", N_("decided")),
    ]
    render(
        rows,
        columns,
        fmt,
        tz=st.tz,
        empty=_("No requisitions") + (_(" with status {value}.").format(value=status.value) if status else "."),
    )


def _decide(ctx: typer.Context, req_id: int, approve: bool, reason: str | None) -> None:
    from ffctl.commands._output import message
    from ffctl.core.requisitions import decide_requisition

    st = AppState.of(ctx)
    with st.store().session(write=True) as s:
        row = decide_requisition(s, req_id, approve=approve, at=st.now(), actor=st.user, reason=reason)
    supplier = _(" from {supplier}").format(supplier=row["supplier"]) if row["supplier"] else ""
    message(
        _("Requisition #{id} {status}: {qty} x {sku}{supplier}.").format(
            id=row["id"], status=row["status"], qty=row["qty"], sku=row["sku"], supplier=supplier
        )
    )


@app.command(help=_("Approve a draft requisition (only drafts can be decided)."))
def approve(ctx: typer.Context, req_id: int = typer.Argument(..., metavar="ID", help=_("The requisition id."))) -> None:
    _decide(ctx, req_id, True, None)


@app.command(
    help=_(
        "Reject a draft requisition.\n"
        "\n"
        "While the SKU stays below safety stock the rule drafts a new one at its next run; set the\n"
        "product's safety_stock to 0 to stop reordering it."
    )
)
def reject(
    ctx: typer.Context,
    req_id: int = typer.Argument(..., metavar="ID", help=_("The requisition id.")),
    reason: str | None = typer.Option(None, "--reason", help=_("Why (kept in the audit trail).")),
) -> None:
    _decide(ctx, req_id, False, reason)
