"""group_day: group_fact's sums per line cut, group and local day (issue 25).

``report kpi --by product`` and ``--by category`` summed every group_fact row of the period
(2M member rows a cut at 1M orders): the table now keeps those sums per group and day, as
visit_day does for the node cut, and a report reads group_fact only for a period's partial first
and last days. The table starts empty; the next refresh fills it from group_fact (one pass, no
rebuild of the facts: the day is the configured time zone's, which the migration does not know).

Revision ID: 0018
Revises: 0017
"""

from alembic import op
import sqlalchemy as sa

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_SUMS = ("n_rows", "n_conf", "n_alloc", "n_cycle", "member", "shipped", "on_time", "delivered", "perfect",
         "picked", "picked_right", "decided", "within", "units", "units_on_time", "units_shipped",
         "units_returned", "line_picked", "line_picked_right", "line_shipped", "line_returned")
_AUTOVACUUM = ("autovacuum_vacuum_scale_factor", "autovacuum_vacuum_insert_scale_factor",
               "autovacuum_analyze_scale_factor")


def upgrade() -> None:
    op.create_table(
        "group_day",
        sa.Column("cut", sa.String(), nullable=False),
        sa.Column("g", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key_units", sa.Integer(), nullable=False),
        sa.Column("key_shipped", sa.Integer(), nullable=False),
        sa.Column("key_due", sa.Date(), nullable=False),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in _SUMS),
        sa.PrimaryKeyConstraint("cut", "g", "day", "key_units", "key_shipped", "key_due"),
    )
    if op.get_bind().dialect.name == "postgresql":  # as 0017 set for the other facts
        op.execute(f"ALTER TABLE group_day SET ({', '.join(f'{s} = 0.005' for s in _AUTOVACUUM)})")


def downgrade() -> None:
    op.drop_table("group_day")
