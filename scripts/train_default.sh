#!/usr/bin/env bash
# Train the default checkpoint (docs/model_card.md) from scratch, in five resumable stages:
#   ./scripts/train_default.sh ../shared/data [runs/default]
# then: cp runs/default/5-film/model.pt encoder/checkpoints/rtf-default.pt
# BTS light curves are used without their labels (--unlabelled), so BTS stays a fair test set.
set -euo pipefail
DATA=${1:?usage: train_default.sh DATA_DIR [OUT]}
OUT=${2:-runs/default}
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"

COMMON=(
  --data synthetic:ztf:16000:1 synthetic:lsst:3000:2 "$DATA/ztf_alerts/alerts.parquet"
  "$DATA/alerce_lc_classifier.parquet" "$DATA/plasticc_train.parquet" "$DATA/ztf_bts_dev.parquet"
  --unlabelled "$DATA/ztf_bts_dev.parquet"
  --mode ae --latent-dims 64 --use-metadata --use-gp --no-gp-fit --cls-weight 0.5 --num-classes 7
  --random-truncate --min-detections 3 --d-model 64 --n-layers 3 --n-heads 4 --d-ff 128 --dropout 0.1
  --max-len 128
)
# 1. the encoder, heads and plain query decoder; 2.-3. fine-tunes at lower peak learning rates
rtf-train "${COMMON[@]}" --epochs 12 --out "$OUT/1-base"
rtf-train "${COMMON[@]}" --epochs 4 --lr 1e-3 --init-from "$OUT/1-base/model.pt" --out "$OUT/2-finetune"
rtf-train "${COMMON[@]}" --epochs 8 --lr 5e-4 --init-from "$OUT/2-finetune/model.pt" --out "$OUT/3-finetune"
# 4.-5. grow the decoder into a FiLM decoder (it starts as the same function) and train it alone: the
# fingerprints, heads and everything the probes and neighbours see stay those of stage 3
rtf-train "${COMMON[@]}" --decoder-film --train-only decoder --epochs 10 --lr 1e-3 \
  --init-from "$OUT/3-finetune/model.pt" --out "$OUT/4-film"
rtf-train "${COMMON[@]}" --decoder-film --train-only decoder --epochs 12 --lr 2e-3 \
  --init-from "$OUT/4-film/model.pt" --out "$OUT/5-film"
echo "done: $OUT/5-film/model.pt"
