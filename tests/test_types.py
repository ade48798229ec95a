"""The type checker over the packages that are clean: mypy with the repository's configuration."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["encoder", "rtf_client", "app", "indexing"]
# in progress elsewhere, not yet typed: left out until they are
EXCLUDE = r"app/(distributed|reencode)\.py|indexing/shards\.py"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install -e '.[dev]')")
def test_mypy_is_clean() -> None:
    cmd = [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--exclude", EXCLUDE, *PACKAGES]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd[1:])} exited {result.returncode}:\n{result.stdout}{result.stderr}"
