"""What the anomaly ranking puts on top of the demo catalogue, as the service ranks it.

The demo catalogue of ``scripts/serve.sh`` (``rtf-synth --survey ztf --n 3000 --seed 2026``) is ingested
into a fresh SQLite catalogue the way the service seeds it (``app.catalog.seed_demo``), then
``Catalog.anomalies`` is read like ``GET /v1/anomalies``: the kinds in the top 50 (from the synthetic
truth), how many are of kinds that make up < 2 % of the catalogue, the best rank of each rare kind, and
the scores' resolution (distinct values, the top ones).

    python experiments/demo_ranking.py [--checkpoint encoder/checkpoints/rtf-default.pt] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from app.catalog import Catalog, seed_demo
from app.settings import Settings
from encoder.readers import read_lightcurves_parquet
from training.synthetic import SurveyConfig, generate_survey, write_parquet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, help="default: the bundled one")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo.parquet"
        write_parquet(generate_survey(SurveyConfig(survey="ztf", n_objects=a.n, seed=a.seed, min_detections=3)), demo)
        truth = {lc.object_id: lc.label for lc in read_lightcurves_parquet(demo)}
        settings = Settings(
            database_url=f"sqlite:///{tmp}/rtf.db", index_dir=Path(tmp) / "index", checkpoint=a.checkpoint,
            cache_dir=Path(tmp) / "cache", sync_interval=0, threads=2,
        )  # fmt: skip
        catalog = Catalog.open(settings)
        try:
            seed_demo(catalog, demo)
            ranked, cursor = [], None
            while True:
                page, cursor = catalog.anomalies(500, cursor, {})
                ranked += page
                if cursor is None:
                    break
            version = catalog.version
        finally:
            catalog.close()
    n = len(truth)
    share = Counter(truth.values())
    rare = {k for k, c in share.items() if c / n < 0.02}
    top50 = [truth[s.object_id] for s in ranked[:50]]
    best = {k: next(i + 1 for i, s in enumerate(ranked) if truth[s.object_id] == k) for k in sorted(rare)}
    scores = [s.anomaly_score for s in ranked]
    res = {
        "model": version,
        "objects": n,
        "rare kinds (< 2 %)": {k: share[k] for k in sorted(rare)},
        "rare in the top 50": sum(k in rare for k in top50),
        "top 50 by kind": dict(Counter(top50).most_common()),
        "best rank of each rare kind": best,
        "distinct scores": len(set(scores)),
        "top 5 scores": scores[:5],
    }
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
