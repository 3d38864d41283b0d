"""people: the team's RAs and MDs, each with a Label Studio account of their own; decisions name the
Label Studio user who made them and whether they were refused (author without the queue's role)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:50:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('people',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=True),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('ls_user_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email'),
    sa.UniqueConstraint('ls_user_id')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ls_user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('refused', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('pair_dsc', sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f('ix_decisions_refused'), ['refused'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decisions_refused'))
        batch_op.drop_column('pair_dsc')
        batch_op.drop_column('refused')
        batch_op.drop_column('ls_user_id')
    op.drop_table('people')
