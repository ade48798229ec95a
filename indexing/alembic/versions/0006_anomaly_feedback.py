"""anomaly_feedback (experts' answers) and fingerprints.model_score (the checkpoint's own score)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 00:00:00

``fingerprints.anomaly_score`` becomes the catalogue-relative ranking's score (``encoder.rarity``);
the score a row held until now is the checkpoint's, so it moves to ``model_score``, and the service ranks
the catalogue at its next start (it finds unranked rows) and writes ``anomaly_score``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("fingerprints", sa.Column("model_score", sa.Float(), nullable=True))
    op.execute("UPDATE fingerprints SET model_score = anomaly_score, anomaly_score = NULL")
    op.create_table(
        "anomaly_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["objects.object_id"],
            name=op.f("fk_anomaly_feedback_object_id_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anomaly_feedback")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_anomaly_feedback_object_id"), "anomaly_feedback", ["object_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_anomaly_feedback_object_id"), table_name="anomaly_feedback")
    op.drop_table("anomaly_feedback")
    op.execute("UPDATE fingerprints SET anomaly_score = model_score")
    op.drop_column("fingerprints", "model_score")  # ALTER TABLE DROP COLUMN: no batch rebuild (see 0002)
