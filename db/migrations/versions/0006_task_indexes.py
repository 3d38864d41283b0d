"""indexes for the push and sync paths: a queue's open tasks, a Label Studio project's tasks (found by
benchmarks/scale_bench.py's EXPLAIN check once it pushed and synced a round)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:00:00.000000
"""
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

INDEXES = (('ix_tasks_queue_status', ('queue', 'status')), ('ix_tasks_project_queue', ('ls_project_id', 'queue')))


def upgrade() -> None:
    for name, columns in INDEXES:
        op.create_index(name, 'tasks', list(columns), unique=False)


def downgrade() -> None:
    for name, _ in INDEXES:
        op.drop_index(name, table_name='tasks')
