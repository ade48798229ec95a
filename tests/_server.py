"""Run the real service as a uvicorn subprocess on a free loopback port (crash, concurrency and
load tests). Settings travel as ``RTF_*`` environment variables, as in production.

    with Server(env={"RTF_DATABASE_URL": url, "RTF_INDEX_DIR": str(d)}) as srv:
        httpx.get(srv.url + "/readyz")
        srv.kill()  # SIGKILL, no shutdown hooks: a crash
        srv.start()  # the same port, database and index dir

The server's stdout and stderr go to ``log_path`` (read it with :meth:`Server.log`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(Path(sys.executable))


def bundled_dim() -> int:
    """Length of the bundled checkpoint's served fingerprints (its serving export's record of it)."""
    from encoder.checkpoint import DEFAULT_CHECKPOINT
    from encoder.inference import describe

    return describe(DEFAULT_CHECKPOINT).dim


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synth_lightcurves(n: int, seed: int, survey: str = "ztf", min_detections: int = 3):
    from training.synthetic import SurveyConfig, generate_survey

    return generate_survey(SurveyConfig(survey=survey, n_objects=n, seed=seed, min_detections=min_detections))


def as_json(lcs) -> dict:
    """``{"lightcurves": [...]}`` of LightCurve objects, as posted to the service."""
    from app.jsonform import LightCurveIn

    return {"lightcurves": [LightCurveIn.from_lightcurve(lc).model_dump(mode="json", exclude_none=True) for lc in lcs]}


class Server:
    def __init__(
        self,
        env: dict[str, str],
        *,
        port: int | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 180.0,
        cwd: Path = ROOT,
        script: str | None = None,
    ):
        self.env = {k: str(v) for k, v in env.items()}
        self.script = script  # e.g. "scripts/serve.sh": run it (with RTF_HOST/RTF_PORT) instead of app.server
        self.cwd = cwd  # the checkout whose app runs (benchmarks/ab_latency.py compares two)
        self.port = port or free_port()
        self.log_path = Path(log_path or tempfile.mkstemp(prefix="rtf-server-", suffix=".log")[1])
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> Server:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTF_")}
        env |= {"RTF_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        env |= self.env
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        command = [PYTHON, "-m", "app.server", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.script is not None:
            command = ["bash", self.script]
            env |= {"RTF_HOST": "127.0.0.1", "RTF_PORT": str(self.port)}
        try:
            self.proc = subprocess.Popen(
                [*command, "--log-level", "info"],
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=2.0)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"server not ready after {self.ready_timeout} s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs (the index is not saved), like a crash or OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM: a graceful shutdown (the index is saved)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
