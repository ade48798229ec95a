#!/usr/bin/env bash
# Starts the RTF service on the embedded default: SQLite + local FAISS index under ./var,
# the bundled checkpoint, and a demo catalogue seeded on first start.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
export RTF_DEMO="${RTF_DEMO:-1}"
exec uvicorn app.main:app --host "${RTF_HOST:-127.0.0.1}" --port "${RTF_PORT:-8000}" "$@"
