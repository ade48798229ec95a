"""experiments/finetune_knn_cv.py refuses a checkpoint that saw the labels it cross-validates on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from encoder.checkpoint import DEFAULT_CHECKPOINT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import finetune_knn_cv  # noqa: E402  (a script, beside its siblings)


def test_a_checkpoint_trained_on_the_labels_is_refused():
    bts = "../shared/data/ztf_bts_dev.parquet"
    unlabelled = {"config": {"data": ["synthetic:ztf:100:1", bts], "unlabelled": [bts]}}
    labelled = {"config": {"data": ["/elsewhere/ztf_bts_dev.parquet"], "unlabelled": []}}
    assert not finetune_knn_cv.saw_labels_of(unlabelled, "/data/ztf_bts_dev.parquet")
    assert finetune_knn_cv.saw_labels_of(labelled, "/data/ztf_bts_dev.parquet")
    assert not finetune_knn_cv.saw_labels_of({}, bts)
    # the bundled checkpoint (recipe stage 6) saw every BTS label: the folds would leak
    with pytest.raises(SystemExit, match="folds would leak"):
        finetune_knn_cv.main(["--data", bts, "--out", "unused", "--checkpoint", str(DEFAULT_CHECKPOINT)])
    with pytest.raises(SystemExit, match="not found"):
        finetune_knn_cv.main(["--data", bts, "--out", "unused", "--checkpoint", "no/such/model.pt"])
