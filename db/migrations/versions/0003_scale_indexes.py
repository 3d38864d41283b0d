"""indexes for the reads that grow with the pool: status by resolution and by decision, the working
network, the open round (found by benchmarks/scale_bench.py's EXPLAIN QUERY PLAN check)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 02:00:00.000000
"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

INDEXES = (('ix_images_resolution_bin', 'images', 'resolution_bin'), ('ix_decisions_decision', 'decisions', 'decision'),
           ('ix_models_is_working', 'models', 'is_working'), ('ix_rounds_status', 'rounds', 'status'))


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column], unique=False)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
