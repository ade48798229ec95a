"""The type checker over the service's packages and the client: mypy with the repository's configuration."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["encoder", "rtf_client", "app", "indexing"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install -e '.[dev]')")
def test_mypy_is_clean() -> None:
    cmd = [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", *PACKAGES]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd[1:])} exited {result.returncode}:\n{result.stdout}{result.stderr}"
