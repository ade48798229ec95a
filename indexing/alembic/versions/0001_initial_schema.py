"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2025-01-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "models",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("class_names", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_models")),
    )
    op.create_table(
        "objects",
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("survey", sa.String(length=32), nullable=True),
        sa.Column("ra", sa.Float(), nullable=True),
        sa.Column("dec", sa.Float(), nullable=True),
        sa.Column("first_jd", sa.Float(), nullable=True),
        sa.Column("last_jd", sa.Float(), nullable=True),
        sa.Column("n_detections", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("anomaly_score", sa.Float(), nullable=True),
        sa.Column("known_label", sa.String(length=64), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_objects")),
    )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.create_index("ix_objects_anomaly_score_object_id", ["anomaly_score", "object_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_objects_label"), ["label"], unique=False)
        batch_op.create_index(batch_op.f("ix_objects_last_jd"), ["last_jd"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_key", sa.String(length=192), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("jd", sa.Float(), nullable=False),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.Column("mag", sa.Float(), nullable=True),
        sa.Column("mag_err", sa.Float(), nullable=True),
        sa.Column("flux", sa.Float(), nullable=False),
        sa.Column("flux_err", sa.Float(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["object_id"], ["objects.object_id"], name=op.f("fk_alerts_object_id_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("alert_key", name=op.f("uq_alerts_alert_key")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_object_id"), ["object_id"], unique=False)

    op.create_table(
        "fingerprints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"], ["objects.object_id"], name=op.f("fk_fingerprints_object_id_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fingerprints")),
        sa.UniqueConstraint("object_id", "model_version", name=op.f("uq_fingerprints_object_id_model_version")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("fingerprints", schema=None) as batch_op:
        batch_op.create_index("ix_fingerprints_model_version_id", ["model_version", "id"], unique=False)

    op.create_table(
        "upper_limits",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("jd", sa.Float(), nullable=False),
        sa.Column("band", sa.String(length=16), nullable=False),
        sa.Column("mag", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["object_id"], ["objects.object_id"], name=op.f("fk_upper_limits_object_id_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upper_limits")),
        sa.UniqueConstraint("object_id", "jd", "band", name=op.f("uq_upper_limits_object_id_jd_band")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:

    op.drop_table("upper_limits")
    with op.batch_alter_table("fingerprints", schema=None) as batch_op:
        batch_op.drop_index("ix_fingerprints_model_version_id")

    op.drop_table("fingerprints")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_object_id"))

    op.drop_table("alerts")
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_objects_last_jd"))
        batch_op.drop_index(batch_op.f("ix_objects_label"))
        batch_op.drop_index("ix_objects_anomaly_score_object_id")

    op.drop_table("objects")
    op.drop_table("models")
