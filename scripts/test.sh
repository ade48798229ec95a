#!/usr/bin/env bash
# Runs the whole test suite (lint + pytest). PostgreSQL tests use RTF_TEST_POSTGRES_URL
# (default: the local server) and skip with a reason when no server answers.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ruff check .
exec python -m pytest -n 2 "$@"
