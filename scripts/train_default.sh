#!/usr/bin/env bash
# Train the default checkpoint (docs/model_card.md) from scratch, in four resumable stages:
#   ./scripts/train_default.sh ../shared/data [runs/default]
# then: cp runs/default/4-film-long/model.pt encoder/checkpoints/rtf-default.pt
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
# 1. the encoder, heads and plain query decoder; 2. a fine-tune at a lower peak learning rate
rtf-train "${COMMON[@]}" --epochs 12 --out "$OUT/1-base"
rtf-train "${COMMON[@]}" --epochs 4 --lr 1e-3 --init-from "$OUT/1-base/model.pt" --out "$OUT/2-finetune"
# 3. grow the decoder into a FiLM decoder (starts as the same function), 4. train it longer, gently
rtf-train "${COMMON[@]}" --decoder-film --epochs 8 --lr 1e-3 --init-from "$OUT/2-finetune/model.pt" \
  --out "$OUT/3-film"
rtf-train "${COMMON[@]}" --decoder-film --epochs 10 --lr 5e-4 --init-from "$OUT/3-film/model.pt" \
  --out "$OUT/4-film-long"
echo "done: $OUT/4-film-long/model.pt"
