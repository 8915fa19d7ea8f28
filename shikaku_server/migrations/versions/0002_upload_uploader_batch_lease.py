"""uploads: re-sends recognised per uploader; batches: a lease so another process can take over

Revision ID: 0002
Revises: 0001
"""

import base64
import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shikaku_server.database

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _uploader(numbers: list[str]) -> str:
    # as shikaku_server.upload.models.uploader_of at the time of this revision
    digest = hashlib.sha256(",".join(sorted(numbers)).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def upgrade() -> None:
    with op.batch_alter_table('upload', schema=None) as batch_op:
        batch_op.add_column(sa.Column('uploader', sa.String(length=43), nullable=True))
    # the uploads so far: their sender is their token's set of insurer numbers
    upload = sa.table('upload', sa.column('id', sa.String), sa.column('token_id', sa.Integer),
                      sa.column('uploader', sa.String))
    token = sa.table('api_token', sa.column('id', sa.Integer), sa.column('insurer_numbers', sa.JSON))
    conn = op.get_bind()
    rows = conn.execute(sa.select(upload.c.id, token.c.insurer_numbers).join(token, token.c.id == upload.c.token_id))
    for upload_id, numbers in rows.all():
        conn.execute(upload.update().where(upload.c.id == upload_id).values(uploader=_uploader(numbers or [])))
    with op.batch_alter_table('upload', schema=None) as batch_op:
        batch_op.alter_column('uploader', existing_type=sa.String(length=43), nullable=False)
        batch_op.drop_constraint('uq_upload_kind_sha256', type_='unique')
        batch_op.create_unique_constraint(op.f('uq_upload_kind_uploader_sha256'), ['kind', 'uploader', 'sha256'])

    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column('lease_until', shikaku_server.database.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f('ix_batch_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batch_status'))
        batch_op.drop_column('lease_until')
        batch_op.drop_column('owner')
    with op.batch_alter_table('upload', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_upload_kind_uploader_sha256'), type_='unique')
        batch_op.create_unique_constraint('uq_upload_kind_sha256', ['kind', 'sha256'])
        batch_op.drop_column('uploader')
