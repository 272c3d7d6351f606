"""Settings from the environment: what pydantic-settings did for these flat fields, without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from alphasaga_shared.config import Settings, environment


def test_values_given_win_over_the_environment_which_wins_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHASAGA_MAX_RECORDS", "7")
    monkeypatch.setenv("alphasaga_namespace", "lower")  # any case, as before
    monkeypatch.setenv("ALPHASAGA_DATA_DIR", "/tmp/x")
    monkeypatch.delenv("ALPHASAGA_BLOCK_MS", raising=False)
    settings = Settings(namespace="given")
    assert (settings.max_records, settings.namespace, settings.data_dir) == (7, "given", Path("/tmp/x"))
    assert settings.block_ms == 1000
    assert Settings().namespace == "lower"


def test_a_wrong_value_names_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHASAGA_MAX_RECORDS", "0")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert caught.value.errors()[0]["loc"] == ("max_records",)


def test_only_the_prefixed_names_asked_for_are_read() -> None:
    environ = {"ALPHASAGA_ENV": "production", "OTHER_ENV": "x", "ALPHASAGA_UNKNOWN": "y"}
    assert environment(["env", "redis_url"], environ) == {"env": "production"}
