"""Shared fixtures. Tests never touch the user's real data folder or the network."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before any Qt or Hugging Face import: headless Qt and no downloads, also for a bare `pytest`.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's settings: drop CLINICFUSION_* and point HOME elsewhere."""
    for name in list(os.environ):
        if name.startswith("CLINICFUSION_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    # Never read or write the developer's real OS keyring (audit and database keys).
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Remove the log handlers a test installed (setup_logging points them into tmp_path)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh, not yet created data folder for one test."""
    return tmp_path / "clinic-data"


@pytest.fixture
def settings(data_dir: Path):  # type: ignore[no-untyped-def]
    from clinic_app.config.settings import load_settings

    return load_settings(data_dir)


@pytest.fixture
def shared_data() -> Path:
    """The real public data beside the project; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see ../shared/data/README.md)")
    return SHARED_DATA


# -- databases: every storage and audit test runs on SQLite and, where a server is configured,
# on PostgreSQL. CI starts a real PostgreSQL server and sets CF_TEST_POSTGRES_URL to a
# role that may create databases; each test gets a database of its own.
POSTGRES_URL_VARIABLE = "CF_TEST_POSTGRES_URL"


def _postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if not url:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"CI must set {POSTGRES_URL_VARIABLE} (see .ci/run)")
        return None
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cases.sqlite3'}"
        return
    admin_url = _postgres_admin_url()
    if admin_url is None:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_URL_VARIABLE} to test on one")
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"cf_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        import time

        for attempt in range(5):  # autovacuum may hold the database for a moment
            try:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except Exception:
                if attempt == 4:
                    raise
                time.sleep(0.5)
        admin.dispose()


@pytest.fixture
def database(database_url: str):  # type: ignore[no-untyped-def]
    """A migrated, empty case database on each back end."""
    from clinic_app.storage.engine import Database, create_database_engine
    from clinic_app.storage.migrate import upgrade

    db = Database(create_database_engine(database_url))
    upgrade(db)
    yield db
    db.dispose()
