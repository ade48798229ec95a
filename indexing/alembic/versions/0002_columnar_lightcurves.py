"""light curves stored per object in columns; predictions per model version

Detections and upper limits move from one row per point (``alerts``, ``upper_limits``) to one
columnar value per object (``lightcurves``, see :mod:`indexing.history`); the predicted class,
probabilities and anomaly score move from ``objects`` to ``fingerprints``, one set per model
version. Existing data is carried: each object's points become its history; its predictions
go to the fingerprint of the version that wrote them (the active model's). Where a restart with
another checkpoint had made an empty version active, the version holding the most fingerprints
becomes active again, so the catalogue is visible.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 00:00:00
"""

import json
import math
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

from indexing.history import History

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000  # objects per step of the data copy

objects = sa.table(
    "objects",
    sa.column("object_id", sa.String),
    sa.column("label", sa.String),
    sa.column("probabilities", sa.JSON),
    sa.column("anomaly_score", sa.Float),
    sa.column("revision", sa.Integer),
)
alerts = sa.table(
    "alerts",
    sa.column("id", sa.Integer),
    sa.column("alert_key", sa.String),
    sa.column("object_id", sa.String),
    sa.column("jd", sa.Float),
    sa.column("band", sa.String),
    sa.column("mag", sa.Float),
    sa.column("mag_err", sa.Float),
    sa.column("flux", sa.Float),
    sa.column("flux_err", sa.Float),
    sa.column("meta", sa.JSON),
)
limits = sa.table(
    "upper_limits",
    sa.column("object_id", sa.String),
    sa.column("jd", sa.Float),
    sa.column("band", sa.String),
    sa.column("mag", sa.Float),
)
lightcurves = sa.table(
    "lightcurves",
    sa.column("object_id", sa.String),
    sa.column("n_detections", sa.Integer),
    sa.column("n_upper_limits", sa.Integer),
    sa.column("data", sa.LargeBinary),
)
fingerprints = sa.table(
    "fingerprints",
    sa.column("object_id", sa.String),
    sa.column("model_version", sa.String),
    sa.column("label", sa.String),
    sa.column("probabilities", sa.JSON),
    sa.column("anomaly_score", sa.Float),
    sa.column("source_revision", sa.Integer),
)
models = sa.table("models", sa.column("version", sa.String), sa.column("active", sa.Boolean))


def upgrade() -> None:
    op.create_table(
        "lightcurves",
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("n_detections", sa.Integer(), nullable=False),
        sa.Column("n_upper_limits", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"], ["objects.object_id"], name=op.f("fk_lightcurves_object_id_objects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_lightcurves")),
    )
    with op.batch_alter_table("fingerprints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("probabilities", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("anomaly_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("source_revision", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_fingerprints_model_version_anomaly_score_object_id",
            ["model_version", "anomaly_score", "object_id"],
            unique=False,
        )

    conn = op.get_bind()
    _activate_the_populated_version(conn)
    _copy_histories_and_predictions(conn)

    # not batch mode: on SQLite a batch would re-create ``objects``, and dropping the old table
    # cascades its deletes into ``lightcurves`` and ``fingerprints`` (ALTER TABLE DROP COLUMN: 3.35+)
    op.drop_index("ix_objects_anomaly_score_object_id", table_name="objects")
    op.drop_index(op.f("ix_objects_label"), table_name="objects")
    for column in ("label", "probabilities", "anomaly_score"):
        op.drop_column("objects", column)
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_object_id"))
    op.drop_table("alerts")
    op.drop_table("upper_limits")


def _activate_the_populated_version(conn) -> None:
    counts = dict(
        conn.execute(
            sa.select(fingerprints.c.model_version, sa.func.count()).group_by(fingerprints.c.model_version)
        ).all()
    )
    if not counts:
        return
    active = conn.execute(sa.select(models.c.version).where(models.c.active == sa.true())).scalar()
    best = max(counts, key=lambda v: (counts[v], v == active))
    if counts.get(active, 0) < counts[best]:
        conn.execute(sa.update(models).values(active=models.c.version == best))


def _copy_histories_and_predictions(conn) -> None:
    active = conn.execute(sa.select(models.c.version).where(models.c.active == sa.true())).scalar()
    last = ""
    while True:
        rows = conn.execute(
            sa.select(
                objects.c.object_id,
                objects.c.label,
                objects.c.probabilities,
                objects.c.anomaly_score,
                objects.c.revision,
            )
            .where(objects.c.object_id > last)
            .order_by(objects.c.object_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        ids = [r[0] for r in rows]
        last = ids[-1]
        points: dict[str, list] = {i: [] for i in ids}
        for a in conn.execute(
            sa.select(alerts.c.object_id, alerts.c.jd, alerts.c.band, alerts.c.flux, alerts.c.flux_err, alerts.c.meta)
            .where(alerts.c.object_id.in_(ids))
            .order_by(alerts.c.object_id, alerts.c.jd, alerts.c.band, alerts.c.id)
        ):
            points[a[0]].append(a[1:])
        uls: dict[str, list] = {i: [] for i in ids}
        for u in conn.execute(
            sa.select(limits.c.object_id, limits.c.jd, limits.c.band, limits.c.mag)
            .where(limits.c.object_id.in_(ids))
            .order_by(limits.c.object_id, limits.c.jd)
        ):
            uls[u[0]].append(u[1:])
        values = []
        for oid in ids:
            if points[oid] or uls[oid]:
                h = _history(points[oid], uls[oid])
                values.append(
                    {"object_id": oid, "n_detections": len(h), "n_upper_limits": len(h.ul_jd), "data": h.to_bytes()}
                )
        if values:
            conn.execute(lightcurves.insert(), values)
        if active is not None:
            conn.execute(
                sa.update(fingerprints)
                .where(fingerprints.c.object_id == sa.bindparam("oid"), fingerprints.c.model_version == active)
                .values(
                    label=sa.bindparam("lab"),
                    probabilities=sa.bindparam("probs"),
                    anomaly_score=sa.bindparam("score"),
                    source_revision=sa.bindparam("rev"),
                ),
                [{"oid": r[0], "lab": r[1], "probs": r[2], "score": r[3], "rev": r[4]} for r in rows],
            )


def _history(points: list, uls: list) -> History:
    bands = tuple(dict.fromkeys([p[1] for p in points] + [u[1] for u in uls]))
    code = {b: i for i, b in enumerate(bands)}
    metas = [p[4] if isinstance(p[4], dict) else json.loads(p[4]) if p[4] else {} for p in points]
    fields = tuple(dict.fromkeys(k for m in metas for k in m))
    meta = None
    if fields:
        meta = np.full((len(points), len(fields)), np.nan, dtype=np.float32)
        for i, m in enumerate(metas):
            for j, f in enumerate(fields):
                if m.get(f) is not None:
                    meta[i, j] = m[f]
    uls = [u for u in uls if u[2] is not None]
    return History(
        jd=np.array([p[0] for p in points], dtype=np.float64),
        band=np.array([code[p[1]] for p in points], dtype=np.uint8),
        flux=np.array([p[2] for p in points], dtype=np.float64),
        flux_err=np.array([p[3] for p in points], dtype=np.float64),
        bands=bands,
        meta=meta,
        meta_fields=fields,
        ul_jd=np.array([u[0] for u in uls], dtype=np.float64),
        ul_band=np.array([code[u[1]] for u in uls], dtype=np.uint8),
        ul_mag=np.array([u[2] for u in uls], dtype=np.float64),
    )


def downgrade() -> None:
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
    op.add_column("objects", sa.Column("label", sa.String(length=64), nullable=True))
    op.add_column("objects", sa.Column("probabilities", sa.JSON(), nullable=True))
    op.add_column("objects", sa.Column("anomaly_score", sa.Float(), nullable=True))
    op.create_index(op.f("ix_objects_label"), "objects", ["label"], unique=False)
    op.create_index("ix_objects_anomaly_score_object_id", "objects", ["anomaly_score", "object_id"], unique=False)

    conn = op.get_bind()
    active = conn.execute(sa.select(models.c.version).where(models.c.active == sa.true())).scalar()
    if active is not None:
        f = fingerprints.c

        def of_active(column: sa.ColumnClause) -> sa.ScalarSelect:
            """The object's value of ``column`` in its fingerprint of the active version."""
            return (
                sa.select(column).where(f.object_id == objects.c.object_id, f.model_version == active).scalar_subquery()
            )

        conn.execute(
            sa.update(objects).values(
                label=of_active(f.label),
                probabilities=of_active(f.probabilities),
                anomaly_score=of_active(f.anomaly_score),
            )
        )
    for oid, data in conn.execute(sa.select(lightcurves.c.object_id, lightcurves.c.data)).all():
        h = History.from_bytes(data)
        rows = []
        for i in range(len(h)):
            band, flux, err = h.bands[h.band[i]], float(h.flux[i]), float(h.flux_err[i])
            mag = 31.4 - 2.5 * math.log10(flux) if flux > 0 else None
            meta = None
            if h.meta is not None:
                meta = {k: float(v) for k, v in zip(h.meta_fields, h.meta[i].tolist(), strict=True) if v == v} or None
            rows.append(
                {
                    "alert_key": f"{oid}:{float(h.jd[i])!r}:{band}",
                    "object_id": oid,
                    "jd": float(h.jd[i]),
                    "band": band,
                    "mag": mag,
                    "mag_err": 1.0857362047581294 * err / flux if flux > 0 else None,
                    "flux": flux,
                    "flux_err": err,
                    "meta": meta,
                }
            )
        if rows:
            conn.execute(alerts.insert(), rows)
        ul = [
            {"object_id": oid, "jd": float(t), "band": h.bands[b], "mag": float(m)}
            for t, b, m in zip(h.ul_jd.tolist(), h.ul_band.tolist(), h.ul_mag.tolist(), strict=True)
        ]
        if ul:
            conn.execute(limits.insert(), ul)

    with op.batch_alter_table("fingerprints", schema=None) as batch_op:
        batch_op.drop_index("ix_fingerprints_model_version_anomaly_score_object_id")
        batch_op.drop_column("source_revision")
        batch_op.drop_column("anomaly_score")
        batch_op.drop_column("probabilities")
        batch_op.drop_column("label")
    op.drop_table("lightcurves")
