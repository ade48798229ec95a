#!/usr/bin/env bash
# Every evaluation table of docs/evaluation.md for a checkpoint (default: the bundled one).
#   bash experiments/evaluate_default.sh ../shared/data [CHECKPOINT] [OUT]
# BTS labels were hidden from training (--unlabelled), so every BTS object counts (--holdout none);
# PLAsTiCC labels were used for the training split, so only its validation split counts (--holdout val).
set -euo pipefail
DATA=${1:-../shared/data}; CKPT=${2:-encoder/checkpoints/rtf-default.pt}; OUT=${3:-docs/eval}
rtf-evaluate all --checkpoint "$CKPT" --data "$DATA/ztf_bts_dev.parquet" --holdout none --out "$OUT/bts"
rtf-evaluate all --checkpoint "$CKPT" --data "$DATA/plasticc_train.parquet" --holdout val --limit 1200 --out "$OUT/plasticc"
rtf-evaluate anomaly --checkpoint "$CKPT" --data synthetic:ztf:3000:4242 --holdout none --level fine --out "$OUT/synthetic"
