#!/usr/bin/env bash
# Train the default checkpoint (docs/model_card.md) from scratch: the eight resumable rtf-train stages
# of training/recipes/default.toml.
#   ./scripts/train_default.sh ../shared/data [runs/default] [--stage N ...] [--dry-run]
# then: cp runs/default/8-film/model.pt encoder/checkpoints/rtf-default.pt
#       python -m encoder.export encoder/checkpoints/rtf-default.pt   # its serving export, beside it
set -euo pipefail
DATA=${1:?usage: train_default.sh DATA_DIR [OUT] [--stage N ...] [--dry-run]}
OUT=${2:-runs/default}
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
exec python -m training.recipe training/recipes/default.toml --data-dir "$DATA" --out "$OUT" "${@:3}"
