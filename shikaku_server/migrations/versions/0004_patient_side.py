"""patient side: card suspensions, emergency hospitals and reads, the access log's emergency marker

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shikaku_server.database

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('card_suspension',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('issuer', sa.String(length=500), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('insured_id', sa.Integer(), nullable=False),
    sa.Column('suspended_at', shikaku_server.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('suspended_by', sa.String(length=200), nullable=False),
    sa.Column('resumed_at', shikaku_server.database.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resumed_by', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['insured_id'], ['insured.id'], name=op.f('fk_card_suspension_insured_id_insured')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_suspension'))
    )
    op.create_index('ix_card_suspension_card', 'card_suspension', ['issuer', 'serial', 'resumed_at'], unique=False)
    op.create_table('emergency_read',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', shikaku_server.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('facility_code', sa.String(length=10), nullable=False),
    sa.Column('token_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('insured_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.ForeignKeyConstraint(['facility_code'], ['facility.code'], name=op.f('fk_emergency_read_facility_code_facility')),
    sa.ForeignKeyConstraint(['insured_id'], ['insured.id'], name=op.f('fk_emergency_read_insured_id_insured')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_emergency_read'))
    )
    # plain ADD COLUMN (no batch copy on SQLite: that would drop access_log's append-only triggers)
    op.add_column('facility', sa.Column('emergency', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('access_log', sa.Column('emergency', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('facility', schema=None) as batch_op:
        batch_op.drop_column('emergency')
    op.drop_column('access_log', 'emergency')
    op.drop_table('emergency_read')
    op.drop_index('ix_card_suspension_card', table_name='card_suspension')
    op.drop_table('card_suspension')
