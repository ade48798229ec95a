#!/usr/bin/env bash
# The seed's linear-probe grid (photometry only): AE / VAE / VQ-VAE x latent 8 / 64 / 256, plus the
# seed's position decoder at AE-64 for the decoder comparison. Small, equal budgets for every cell.
#   bash benchmarks/sweep_bottlenecks.sh ../shared/data runs/sweep
set -euo pipefail
DATA=${1:-../shared/data}; OUT=${2:-runs/sweep}; EPOCHS=${EPOCHS:-6}
COMMON=(--data synthetic:ztf:6000:3 "$DATA/ztf_bts_dev.parquet" --unlabelled "$DATA/ztf_bts_dev.parquet"
        --cls-weight 0.5 --random-truncate --epochs "$EPOCHS" --d-model 64 --n-layers 3 --n-heads 4 --d-ff 128
        --dropout 0.1 --max-len 128 --workers 1 --threads 1)
for mode in ae vae vqvae; do
  rtf-train "${COMMON[@]}" --mode "$mode" --latent-dims 8 64 256 --out "$OUT/$mode"
done
rtf-train "${COMMON[@]}" --mode ae --latent-dims 64 --decoder position --out "$OUT/position/ae64"
