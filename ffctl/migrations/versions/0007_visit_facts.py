"""Node-visit facts: ``visit_fact``, one row per node visit that was not skipped, indexed by
(node, time), so ``report sla``, ``report kpi --by node`` and the dashboard read them instead of
sorting the task history; ``node_fact`` keeps each visit's owner (breaches per owner). Derived
data, kept by core/kpi.py's refresh_facts: the facts' version changes with this schema, so the
first report after the upgrade rebuilds them.

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SUMS = ("decided", "within", "auto", "first", "escalations", "reminders",
         "shipped", "on_time", "delivered", "perfect", "picked", "picked_right", "units", "units_on_time")


def upgrade() -> None:
    op.create_table(
        "visit_fact",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in _SUMS[:6]),
        sa.Column("conf", sa.Float(), nullable=True),
        sa.Column("alloc", sa.Float(), nullable=True),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in _SUMS[6:]),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index("ix_visit_fact_order", "visit_fact", ["order_id"], unique=False)
    op.create_index("ix_visit_fact_seconds", "visit_fact", ["node", "seconds", "created_at"], unique=False)
    op.create_index("ix_visit_fact_sums", "visit_fact", ["node", "created_at", "seconds", "conf", "alloc", *_SUMS],
                    unique=False)
    op.create_index("ix_visit_fact_conf", "visit_fact", ["node", "conf", "created_at"], unique=False)
    op.create_index("ix_visit_fact_alloc", "visit_fact", ["node", "alloc", "created_at"], unique=False)
    with op.batch_alter_table("node_fact") as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(), nullable=True))
    # the facts' definitions grew: the next refresh rebuilds every fact (FACTS_VERSION changed too)
    op.execute("UPDATE fact_state SET event_id = NULL")


def downgrade() -> None:
    with op.batch_alter_table("node_fact") as batch_op:
        batch_op.drop_column("owner")
    op.drop_index("ix_visit_fact_alloc", table_name="visit_fact")
    op.drop_index("ix_visit_fact_conf", table_name="visit_fact")
    op.drop_index("ix_visit_fact_sums", table_name="visit_fact")
    op.drop_index("ix_visit_fact_seconds", table_name="visit_fact")
    op.drop_index("ix_visit_fact_order", table_name="visit_fact")
    op.drop_table("visit_fact")
    op.execute("UPDATE fact_state SET event_id = NULL")
