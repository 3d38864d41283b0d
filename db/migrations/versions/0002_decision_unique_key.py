"""a decision is recorded once: unique (ls_annotation_id, ls_updated_at)

Rows recorded twice before the key existed (two syncs at once) stay as the audit trail has them, but the
later copies are marked invalid and their key is suffixed with their own id, so the first copy is the
decision and the index can be built.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 23:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

decisions = sa.table('decisions', sa.column('id', sa.Integer), sa.column('ls_annotation_id', sa.Integer),
                     sa.column('ls_updated_at', sa.String), sa.column('valid', sa.Boolean),
                     sa.column('message', sa.Text))


def _mark_duplicates() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(decisions.c.id, decisions.c.ls_annotation_id, decisions.c.ls_updated_at)
                        .where(decisions.c.ls_annotation_id.is_not(None)).order_by(decisions.c.id)).all()
    first: dict[tuple, int] = {}
    for row_id, annotation_id, updated_at in rows:
        key = (annotation_id, updated_at)
        if key not in first:
            first[key] = row_id
            continue
        bind.execute(decisions.update().where(decisions.c.id == row_id).values(
            ls_updated_at=f"{updated_at or ''}"[:48] + f" dup#{row_id}", valid=False,
            message=f"recorded twice: a copy of decision {first[key]} (marked by migration 0002)"))


def upgrade() -> None:
    _mark_duplicates()
    op.create_index('uq_decisions_annotation_version', 'decisions', ['ls_annotation_id', 'ls_updated_at'],
                    unique=True)


def downgrade() -> None:
    op.drop_index('uq_decisions_annotation_version', table_name='decisions')
