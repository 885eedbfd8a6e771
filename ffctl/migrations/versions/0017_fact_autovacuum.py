"""PostgreSQL: autovacuum visits the report facts after 0.5% of their rows changed, not 20%.
Both backends: group_fact gets a narrow (cut, g, conf, created_at) index and node_fact a
covering one of the per-node breach sums.

Reports step to each percentile's rank through index-only scans of the facts' indexes; a page
changed since its last vacuum makes every index entry on it a heap fetch too (after 1% of a
million orders changed, 451,101 heap fetches in one line cut's 1.2M steps). With the default
scale factors (20% of a table's rows updated, 20% inserted) autovacuum would never come for
a 1% change, so the facts' pages stayed not all-visible until the next full rebuild.

The line cuts' confirmation-time percentiles stepped through group_fact's covering index of
every sum (24 columns); the narrow one has a tenth of its width (PostgreSQL, product cut at
1M: 0.80 -> 0.51 s). The bottleneck's per-node sums over node_fact, which every KPI report
reads, sorted the table by node on SQLite (200k orders: 0.113 -> 0.068 s by the index); with the
owner in it, the dashboard's breaches per owner come from the same pass.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

FACTS = ("order_fact", "node_fact", "visit_fact", "visit_day", "group_fact", "flow_edge", "flow_path", "work_fact")
SETTINGS = (
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_analyze_scale_factor",
)


def upgrade() -> None:
    op.create_index("ix_group_fact_conf", "group_fact", ["cut", "g", "conf", "created_at"])
    op.create_index(
        "ix_node_fact_sums", "node_fact", ["node", "owner", "created_at", "deadline", "completed_at", "late"]
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FACTS:
        op.execute(f"ALTER TABLE {table} SET ({', '.join(f'{s} = 0.005' for s in SETTINGS)})")


def downgrade() -> None:
    op.drop_index("ix_node_fact_sums", table_name="node_fact")
    op.drop_index("ix_group_fact_conf", table_name="group_fact")
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FACTS:
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(SETTINGS)})")
