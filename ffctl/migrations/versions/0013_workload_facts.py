"""Workload facts (SPEC 9.3, issue 25): ``report workload`` and the dashboard's workload panel read
``work_fact`` instead of counting the business time of every decided visit of the task history.

- work_fact: one row per node visit that was not skipped: owner role, who closed it, when it
  entered, closed and was decided, its deadline and when its clock stopped (the breach rule's
  inputs), and its handling time in business seconds less holds. Indexed by entry and decision
  time (arrivals and completions are range reads), by (group, handling) (the p50/p90 step to
  their ranks) and by completion (the visits open at the report's clock).
- work_day: those visits counted per UTC day, group and node (arrivals by entry, decisions by
  decision): a period's whole days are summed there, its two edge days read from work_fact.

Derived data, kept by core/kpi.py's refresh_facts (core/workload.py writes it): the next refresh
rebuilds every fact.

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_fact",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("completed_by", sa.String(), nullable=True),
        sa.Column("entered_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("deadline", sa.DateTime(), nullable=True),
        sa.Column("handling", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index("ix_work_fact_order", "work_fact", ["order_id"], unique=False)
    op.create_index(
        "ix_work_fact_arrived", "work_fact", ["entered_at", "owner", "node", "deadline", "stopped_at"], unique=False
    )
    op.create_index(
        "ix_work_fact_done",
        "work_fact",
        ["done_at", "owner", "completed_by", "node", "deadline", "stopped_at", "entered_at", "handling"],
        unique=False,
    )
    op.create_index("ix_work_fact_role", "work_fact", ["owner", "handling", "done_at"], unique=False)
    op.create_index("ix_work_fact_person", "work_fact", ["completed_by", "handling", "done_at"], unique=False)
    op.create_index("ix_work_fact_open", "work_fact", ["completed_at"], unique=False)
    op.create_table(
        "work_day",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("null_g", sa.Integer(), nullable=False),
        sa.Column("g", sa.String(), nullable=False),
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("breached", sa.Integer(), nullable=False),
        sa.Column("handled", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "null_g", "g", "node", "day"),
    )
    # a new fact: the next refresh rebuilds every fact
    op.execute("UPDATE fact_state SET event_id = NULL")


def downgrade() -> None:
    op.drop_table("work_day")
    for name in (
        "ix_work_fact_open",
        "ix_work_fact_person",
        "ix_work_fact_role",
        "ix_work_fact_done",
        "ix_work_fact_arrived",
        "ix_work_fact_order",
    ):
        op.drop_index(name, table_name="work_fact")
    op.drop_table("work_fact")
    op.execute("UPDATE fact_state SET event_id = NULL")
