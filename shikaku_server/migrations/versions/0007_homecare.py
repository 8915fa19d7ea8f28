"""homecare: 目視確認 on the visit (who looked at the card, with which token) and the extent of a
home-care consent (home visits / online care)

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('visit') as batch:
        batch.add_column(sa.Column('confirmed_by', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('confirmed_token_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('consent') as batch:
        batch.add_column(sa.Column('home_visit', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column('online_care', sa.Boolean(), server_default=sa.false(), nullable=False))
    # home-care consents given before this revision covered every kind of care
    op.execute("UPDATE consent SET home_visit = true, online_care = true WHERE setting = 'home'")


def downgrade() -> None:
    with op.batch_alter_table('consent') as batch:
        batch.drop_column('online_care')
        batch.drop_column('home_visit')
    with op.batch_alter_table('visit') as batch:
        batch.drop_column('confirmed_token_id')
        batch.drop_column('confirmed_by')
