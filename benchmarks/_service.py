"""The real service as a subprocess for benchmarks: ``python -m app.server`` on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_service(env: dict[str, str], log_path: Path, ready_timeout: float = 600) -> Iterator[str]:
    """Start the service with ``RTF_*`` settings in ``env``, wait for ``/readyz``, yield its base
    URL; terminate it afterwards. Its output goes to ``log_path``."""
    with service_process(env, log_path, ready_timeout) as (base, _):
        yield base


@contextmanager
def service_process(
    env: dict[str, str], log_path: Path, ready_timeout: float = 600
) -> Iterator[tuple[str, subprocess.Popen]]:
    """:func:`running_service`, yielding the process too (its pid, for memory readings)."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.server", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=os.environ | env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                try:
                    if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the service did not start: see {log_path}")
                time.sleep(0.5)
            yield base, proc
        finally:
            proc.terminate()
            proc.wait(60)
