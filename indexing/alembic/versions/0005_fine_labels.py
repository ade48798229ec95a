"""fingerprints.fine_label: the model's fine class beside the coarse one, for fine-class filters

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 00:00:00

Rows written before it have no fine label (NULL) until their object is re-encoded; a coarse
filter still finds them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("fingerprints", sa.Column("fine_label", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("fingerprints", "fine_label")  # ALTER TABLE DROP COLUMN: no batch rebuild (see 0002)
