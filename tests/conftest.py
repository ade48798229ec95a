"""Shared fixtures: the real-data folder (skips when absent) and throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RTF_SHARED_DATA", ROOT.parent / "shared" / "data"))
POSTGRES_ADMIN_URL = os.environ.get("RTF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $RTF_SHARED_DATA); skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (a fresh clone has no ../shared)")
    return SHARED_DATA


@contextmanager
def _postgres_database() -> Iterator[str]:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"rtf_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server at {POSTGRES_ADMIN_URL}: {str(exc).splitlines()[0]}")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped afterwards; skips when no server answers."""
    with _postgres_database() as url:
        yield url


# ---------------------------------------------------------------------------- the service
@pytest.fixture(scope="session")
def demo_file(tmp_path_factory) -> Path:
    """A small synthetic demo catalogue (RTF light-curve parquet), made once per session."""
    from training.synthetic import SurveyConfig, generate_survey, write_parquet

    path = tmp_path_factory.mktemp("demo") / "demo.parquet"
    write_parquet(generate_survey(SurveyConfig(survey="ztf", n_objects=240, seed=11, min_detections=3)), path)
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """The same API tests run on SQLite and on PostgreSQL (skipped when no server answers)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'rtf.db'}"
    else:
        with _postgres_database() as url:
            yield url


@pytest.fixture(scope="module")
def make_settings(tmp_path_factory, demo_file):
    from app.settings import Settings

    def make(database_url: str, **kw) -> Settings:
        # precision "onnx": the path "auto" takes on these machines, without timing it at every start
        base = dict(
            database_url=database_url,
            index_dir=tmp_path_factory.mktemp("index"),
            demo=True,
            demo_file=demo_file,
            threads=1,
            index_save_every=100,
            precision="onnx",
        )
        return Settings(**(base | kw))

    return make


@pytest.fixture(scope="module")
def client(make_settings, database_url):
    """A TestClient over the real app with the bundled checkpoint and a seeded demo catalogue
    (one per test module and database; tests must tolerate each other's ingests)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(make_settings(database_url))) as c:
        yield c


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request, tmp_path) -> str:
    """A new, empty database per test, on SQLite and on PostgreSQL (skipped when no server answers)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rtf.db'}"
    return request.getfixturevalue("postgres_url")
