"""group_day and order_day: the report facts' sums per local day (issue 25).

``report kpi --by product`` and ``--by category`` summed every group_fact row of the period
(2M member rows a cut at 1M orders), and ``report kpi`` over the whole store, ``--by week`` and
the dashboard's KPI and weekly panels every order_fact row: the sums are now kept per group
and day (group_day) and per week and day (order_day), as visit_day does for the node cut, and a
report reads the facts themselves only for a period's partial first and last days. The tables
start empty; the next refresh fills them from the facts (one pass each, no rebuild of the facts:
the day is the configured time zone's, which the migration does not know).

Revision ID: 0018
Revises: 0017
"""

from alembic import op
import sqlalchemy as sa

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_COUNTERS = ("shipped", "on_time", "delivered", "perfect", "picked", "picked_right", "decided", "within",
             "units", "units_on_time", "units_shipped", "units_returned")
_KEYS = ("day", "key_units", "key_shipped", "key_due")
_AUTOVACUUM = ("autovacuum_vacuum_scale_factor", "autovacuum_vacuum_insert_scale_factor",
               "autovacuum_analyze_scale_factor")


def _day_table(name: str, groups: list, sums: tuple) -> None:
    op.create_table(
        name,
        *groups,
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key_units", sa.Integer(), nullable=False),
        sa.Column("key_shipped", sa.Integer(), nullable=False),
        sa.Column("key_due", sa.Date(), nullable=False),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in sums),
        sa.PrimaryKeyConstraint(*(g.name for g in groups), *_KEYS),
    )
    if op.get_bind().dialect.name == "postgresql":  # as 0017 set for the other facts
        op.execute(f"ALTER TABLE {name} SET ({', '.join(f'{s} = 0.005' for s in _AUTOVACUUM)})")


def upgrade() -> None:
    counts = ("n_rows", "n_conf", "n_alloc", "n_cycle")
    _day_table(
        "group_day",
        [sa.Column("cut", sa.String(), nullable=False), sa.Column("g", sa.String(), nullable=False)],
        (*counts, "member", *_COUNTERS, "line_picked", "line_picked_right", "line_shipped", "line_returned"),
    )
    _day_table("order_day", [sa.Column("week", sa.Date(), nullable=False)], (*counts, *_COUNTERS))


def downgrade() -> None:
    op.drop_table("order_day")
    op.drop_table("group_day")
