"""医療扶助 tickets and their reads, 公費負担医療 certificates

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shikaku_server.database

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('assistance_ticket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.String(length=36), nullable=False),
    sa.Column('office_code', sa.String(length=6), nullable=False),
    sa.Column('payer_number', sa.String(length=8), nullable=False),
    sa.Column('recipient_number', sa.String(length=7), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('name_kana', sa.String(length=200), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('sex', sa.String(length=1), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('ticket_kind', sa.String(length=1), nullable=False),
    sa.Column('facility_code', sa.String(length=10), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('self_pay', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assistance_ticket')),
    sa.UniqueConstraint('payer_number', 'recipient_number', 'month', 'ticket_kind', 'facility_code',
                        name=op.f('uq_assistance_ticket_payer_number_recipient_number_month_ticket_kind_facility_code'))
    )
    op.create_index('ix_assistance_ticket_office_month', 'assistance_ticket', ['office_code', 'month'])
    op.create_table('assistance_read',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', shikaku_server.database.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payer_number', sa.String(length=8), nullable=False),
    sa.Column('recipient_number', sa.String(length=7), nullable=False),
    sa.Column('facility_code', sa.String(length=10), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('what', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assistance_read'))
    )
    op.create_index('ix_assistance_read_recipient', 'assistance_read', ['payer_number', 'recipient_number', 'at'])
    op.create_table('public_expense',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('insured_id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.String(length=36), nullable=False),
    sa.Column('payer_number', sa.String(length=8), nullable=False),
    sa.Column('recipient_number', sa.String(length=7), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('monthly_cap', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['insured_id'], ['insured.id'], name=op.f('fk_public_expense_insured_id_insured')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_public_expense')),
    sa.UniqueConstraint('insured_id', 'payer_number', 'recipient_number', 'valid_from',
                        name=op.f('uq_public_expense_insured_id_payer_number_recipient_number_valid_from'))
    )
    op.create_index(op.f('ix_public_expense_insured_id'), 'public_expense', ['insured_id'])


def downgrade() -> None:
    op.drop_table('public_expense')
    op.drop_table('assistance_read')
    op.drop_table('assistance_ticket')
