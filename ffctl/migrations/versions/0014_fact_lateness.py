"""node_fact.late: a stopped breached visit's business seconds past its deadline (issue 25).

``report sla``'s lateness p50/p90 counted the business time of every breached visit at report
time; the refresh now stores it for the visits whose clock stopped, indexed by (node, late,
created_at), so a percentile is rank steps through the index and only the still-running breached
visits are counted when reporting.

visit_day: visit_fact's per-node sums by local day (and fill rate's keys), so ``report sla`` and
``report kpi --by node`` sum a period's whole days from a few rows per node and day instead of
every visit.

Derived data: the upgrade forgets the last refresh, so the first report after it rebuilds every
fact (FACTS_VERSION changed too).

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_SUMS = ("visits", "n_seconds", "n_conf", "n_alloc", "decided", "within", "auto", "first", "escalations", "reminders",
         "shipped", "on_time", "delivered", "perfect", "picked", "picked_right", "units", "units_on_time",
         "units_shipped", "units_returned")


def upgrade() -> None:
    op.add_column("node_fact", sa.Column("late", sa.Float(), nullable=True))
    op.create_index("ix_node_fact_late", "node_fact", ["node", "late", "created_at"])
    op.create_table(
        "visit_day",
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key_units", sa.Integer(), nullable=False),
        sa.Column("key_shipped", sa.Integer(), nullable=False),
        sa.Column("key_due", sa.Date(), nullable=False),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in _SUMS),
        sa.PrimaryKeyConstraint("node", "day", "key_units", "key_shipped", "key_due"),
    )
    op.execute("UPDATE fact_state SET event_id = NULL")


def downgrade() -> None:
    op.drop_table("visit_day")
    op.drop_index("ix_node_fact_late", table_name="node_fact")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE node_fact DROP COLUMN late")
    else:
        op.drop_column("node_fact", "late")
    op.execute("UPDATE fact_state SET event_id = NULL")
