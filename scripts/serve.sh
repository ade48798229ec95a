#!/usr/bin/env bash
# Starts the RTF service on the embedded default: SQLite + local FAISS index under ./var,
# the bundled checkpoint, and a demo catalogue (synthetic survey) seeded on first start.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
mkdir -p var
export RTF_DEMO="${RTF_DEMO:-1}"
export RTF_DEMO_FILE="${RTF_DEMO_FILE:-$ROOT/var/demo.parquet}"
if [[ "$RTF_DEMO" == "1" && ! -f "$RTF_DEMO_FILE" ]]; then
  rtf-synth --survey ztf --n 3000 --seed 2026 --min-detections 3 --out "$RTF_DEMO_FILE"
fi
exec python -m app.server --host "${RTF_HOST:-127.0.0.1}" --port "${RTF_PORT:-8000}" "$@"
