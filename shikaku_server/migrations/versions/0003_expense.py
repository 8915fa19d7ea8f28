"""expenses: 医療費通知情報 per person, month, facility and kind of care

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('expense',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('insured_id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.String(length=36), nullable=False),
    sa.Column('service_month', sa.Date(), nullable=False),
    sa.Column('facility_code', sa.String(length=10), nullable=False),
    sa.Column('facility_name', sa.String(length=200), nullable=False),
    sa.Column('care_kind', sa.String(length=1), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('total_cost', sa.Integer(), nullable=False),
    sa.Column('patient_paid', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['insured_id'], ['insured.id'], name=op.f('fk_expense_insured_id_insured')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_expense')),
    sa.UniqueConstraint('insured_id', 'service_month', 'facility_code', 'care_kind',
                        name=op.f('uq_expense_insured_id_service_month_facility_code_care_kind'))
    )


def downgrade() -> None:
    op.drop_table('expense')
