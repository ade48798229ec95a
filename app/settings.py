"""Service settings, from environment variables prefixed ``RTF_`` (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTF_", env_file=".env", extra="ignore")

    database_url: str = Field(default=f"sqlite:///{ROOT / 'var' / 'rtf.db'}", description="SQLAlchemy URL")
    index_dir: Path = Field(default=ROOT / "var" / "index", description="where the FAISS index file lives")
    checkpoint: Path | None = Field(default=None, description="model checkpoint; default: the bundled one")
    demo: bool = Field(default=False, description="seed a demo catalogue into an empty database on start")
    demo_file: Path = Field(
        default=ROOT / "var" / "demo.parquet", description="light curves the demo catalogue ingests"
    )
    api_key: SecretStr | None = Field(default=None, description="when set, write endpoints need it in X-API-Key")
    read_api_key: SecretStr | None = Field(
        default=None,
        description="when set, expensive reads (fingerprints, classify, "
        "search, plots) need it (or api_key) in X-API-Key",
    )
    index_kind: str = Field(default="auto", description="auto | flat | hnsw | ivf_sq8")
    threads: int = Field(default=2, ge=1, le=256, description="inference (ONNX Runtime or PyTorch) and FAISS threads")
    precision: Literal["fp32", "bf16", "onnx", "auto"] = Field(
        default="auto",
        description="how the model runs: PyTorch fp32 or bf16, or ONNX Runtime; auto: the checkpoint's serving "
        "export (ONNX Runtime, no PyTorch) where one is at hand, else the fastest measured at start on this CPU "
        "whose fingerprints stay within cosine 0.999 of fp32",
    )
    cache_dir: Path = Field(
        default=ROOT / "var" / "cache", description="serving exports made at a first start, reused across restarts"
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, description="request bodies larger than this get 413")
    max_batch: int = Field(default=1000, description="light curves per request")
    max_k: int = Field(default=1000, description="largest k for neighbour queries")
    max_page: int = Field(default=500, description="largest page size for anomaly listings")
    sync_interval: float = Field(
        default=5.0,
        ge=0,
        description="seconds between index syncs from SQL (0: off); "
        "keeps the indexes of several worker processes consistent",
    )
    rank_interval: float = Field(
        default=30.0,
        ge=0,
        description="seconds between re-rankings of the anomaly ranking, when the catalogue or experts' answers "
        "changed (the sync thread runs them; a small catalogue grown by a quarter re-ranks at once)",
    )
    index_save_every: int = Field(default=2000, description="persist the index after this many upserts")
    cpu_workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="CPU-heavy requests (encoding, ingest, plots) run at once; "
        "more wait their turn, so the event loop keeps answering",
    )
    decode_workers: int = Field(
        default=1,
        ge=0,
        le=64,
        description="processes that decode large bodies (JSON, Avro) off the event loop; 0: decode on the loop",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds for a connection to send a request's headers (rtf-serve closes it after)",
    )
    rate_limit: float = Field(
        default=0.0,
        ge=0,
        description="requests a second per client address, bursts of a second's "
        "worth; more get 429 (health and metrics probes excepted); 0: no limit",
    )
    body_timeout: float = Field(
        default=60.0, gt=0, description="seconds for a request's whole body to arrive; later: 408"
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
