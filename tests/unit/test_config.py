"""Settings: NEXTOFFER_ prefix, *_FILE secrets, embedded defaults, readable errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from nextoffer.cli import load_settings
from nextoffer.config import Settings, describe_settings
from nextoffer.domain.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No NEXTOFFER_* from the machine running the tests, and no .env file nearby."""
    for name in list(os.environ):
        if name.startswith("NEXTOFFER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def secret(tmp_path: Path, text: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_are_embedded() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite:///./var/nextoffer.db"
    assert settings.cache_url == "memory://"
    assert settings.broker_url == ""
    assert settings.registry_uri.startswith("sqlite:///")
    assert settings.artifacts_url.startswith("file://")
    assert settings.backup_url.startswith("file://")
    assert settings.var_dir == Path("var")
    assert settings.quarantine_dir == Path("var") / "quarantine"
    assert settings.ingest_block_bytes == 16 * 1024 * 1024


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTOFFER_DATABASE_URL", "postgresql+psycopg://u@db/x")
    monkeypatch.setenv("NEXTOFFER_INGEST_BLOCK_BYTES", "4096")
    monkeypatch.setenv("NEXTOFFER_LOG_JSON", "false")
    monkeypatch.setenv("NEXTOFFER_VAR_DIR", "/srv/nextoffer")
    monkeypatch.setenv("CACHE_URL", "redis://ignored:6379/0")  # no prefix: not ours
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@db/x"
    assert settings.ingest_block_bytes == 4096
    assert settings.log_json is False
    assert settings.quarantine_dir == Path("/srv/nextoffer/quarantine")
    assert settings.cache_url == "memory://"


def test_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTOFFER_CACHE_URL", "redis://env:6379/0")
    assert Settings(cache_url="redis://arg:6379/0").cache_url == "redis://arg:6379/0"


def test_secret_from_file_without_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "NEXTOFFER_DATABASE_URL_FILE", secret(tmp_path, "postgresql+psycopg://u:pw@db/x\n")
    )
    monkeypatch.setenv("NEXTOFFER_CACHE_URL_FILE", secret(tmp_path, "redis://:pw@r/0\r\n", "c"))
    monkeypatch.setenv("NEXTOFFER_DB_WAIT_TIMEOUT_S_FILE", secret(tmp_path, "2.5\n", "t"))
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u:pw@db/x"
    assert settings.cache_url == "redis://:pw@r/0"
    assert settings.db_wait_timeout_s == 2.5


def test_secret_file_keeps_inner_whitespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEXTOFFER_BROKER_URL_FILE", secret(tmp_path, "amqp://u:p w@h//\n\n"))
    assert Settings().broker_url == "amqp://u:p w@h//"


def test_empty_file_variable_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTOFFER_DATABASE_URL_FILE", "")
    assert Settings().database_url == "sqlite:///./var/nextoffer.db"


def test_value_and_file_together_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEXTOFFER_DATABASE_URL", "sqlite:///a.db")
    monkeypatch.setenv("NEXTOFFER_DATABASE_URL_FILE", secret(tmp_path, "sqlite:///b.db\n"))
    with pytest.raises(
        ValueError, match="either NEXTOFFER_DATABASE_URL or NEXTOFFER_DATABASE_URL_FILE"
    ):
        Settings()
    with pytest.raises(ConfigError, match="not both"):
        load_settings()


def test_unreadable_secret_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEXTOFFER_DATABASE_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="NEXTOFFER_DATABASE_URL_FILE: cannot read"):
        Settings()
    with pytest.raises(ConfigError, match="NEXTOFFER_DATABASE_URL_FILE"):
        load_settings()


def test_invalid_values_are_refused_with_the_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTOFFER_INGEST_BLOCK_BYTES", "10")
    with pytest.raises(ValidationError):
        Settings()
    with pytest.raises(ConfigError, match=r"^NEXTOFFER_INGEST_BLOCK_BYTES: "):
        load_settings()
    monkeypatch.setenv("NEXTOFFER_INGEST_BLOCK_BYTES", "lots")
    with pytest.raises(ConfigError, match=r"^NEXTOFFER_INGEST_BLOCK_BYTES: "):
        load_settings()


def test_secrets_do_not_leak_into_error_messages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEXTOFFER_DB_WAIT_TIMEOUT_S_FILE", secret(tmp_path, "hunter2\n"))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "NEXTOFFER_DB_WAIT_TIMEOUT_S" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_every_setting_is_described() -> None:
    described = {name: (default, doc) for name, default, doc in describe_settings()}
    assert set(described) == {f"NEXTOFFER_{n.upper()}" for n in Settings.model_fields}
    assert described["NEXTOFFER_CACHE_URL"][0] == "memory://"
    assert all(doc for _, doc in described.values())
