"""an index on objects.dec for cone searches

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_objects_dec"), "objects", ["dec"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_objects_dec"), table_name="objects")
