"""access_log without the foreign key to insured: every lookup's entry took a row lock
(``FOR KEY SHARE``) on the person's ``insured`` row — a write to that row's page and the WAL on a
read path — and cost about as much PostgreSQL CPU as the entry itself (bench/README.md, issue
11). The log stays append-only (its triggers); its ``insured_id`` is always the id of a person
the server has just read, and no code deletes persons.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = 'fk_access_log_insured_id_insured'


def _sqlite_append_only() -> None:
    """The append-only triggers again after SQLite's table copy (a copy drops a table's triggers)."""
    for event in ("UPDATE", "DELETE"):
        op.execute(f"DROP TRIGGER IF EXISTS access_log_no_{event.lower()}")
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER access_log_no_{event.lower()} BEFORE {event} ON access_log "
            "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END"
        )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(_FK, 'access_log', type_='foreignkey')
        return
    with op.batch_alter_table('access_log', recreate='always') as batch:
        batch.drop_constraint(_FK, type_='foreignkey')
    _sqlite_append_only()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(_FK, 'access_log', 'insured', ['insured_id'], ['id'])
        return
    with op.batch_alter_table('access_log', recreate='always') as batch:
        batch.create_foreign_key(_FK, 'insured', ['insured_id'], ['id'])
    _sqlite_append_only()
