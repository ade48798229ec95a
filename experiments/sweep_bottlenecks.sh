#!/usr/bin/env bash
# The seed's linear-probe grid (photometry only): AE / VAE / VQ-VAE x latent 8 / 64 / 256, plus the
# seed's position decoder at AE-64 for the decoder comparison: the stages of training/recipes/sweep.toml.
#   bash experiments/sweep_bottlenecks.sh ../shared/data runs/sweep
set -euo pipefail
DATA=${1:-../shared/data}; OUT=${2:-runs/sweep}; EPOCHS=${EPOCHS:-6}
python -m training.recipe training/recipes/sweep.toml --data-dir "$DATA" --out "$OUT" -- --epochs "$EPOCHS"
