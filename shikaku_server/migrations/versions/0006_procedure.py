"""procedures: 診療・手術 information from claims, read under the clinical consent

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('procedure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('insured_id', sa.Integer(), nullable=False),
    sa.Column('upload_id', sa.String(length=36), nullable=False),
    sa.Column('performed_on', sa.Date(), nullable=False),
    sa.Column('facility_code', sa.String(length=10), nullable=False),
    sa.Column('procedure_code', sa.String(length=9), nullable=False),
    sa.Column('procedure_name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=4), nullable=False),
    sa.Column('inpatient', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['insured_id'], ['insured.id'], name=op.f('fk_procedure_insured_id_insured')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_procedure')),
    sa.UniqueConstraint('insured_id', 'performed_on', 'facility_code', 'procedure_code',
                        name=op.f('uq_procedure_insured_id_performed_on_facility_code_procedure_code'))
    )


def downgrade() -> None:
    op.drop_table('procedure')
