"""Settings from the environment: what pydantic-settings did for these flat fields, without it
(a msgspec struct that reads the environment itself, docs/decisions/0027)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alphasaga_shared.config import InvalidSetting, Settings, environment


def test_values_given_win_over_the_environment_which_wins_over_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHASAGA_MAX_RECORDS", "7")
    monkeypatch.setenv("alphasaga_namespace", "lower")  # any case, as before
    monkeypatch.setenv("ALPHASAGA_DATA_DIR", "/tmp/x")
    monkeypatch.delenv("ALPHASAGA_BLOCK_MS", raising=False)
    settings = Settings(namespace="given")
    assert (settings.max_records, settings.namespace, settings.data_dir) == (7, "given", Path("/tmp/x"))
    assert settings.block_ms == 1000
    assert Settings().namespace == "lower"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("ALPHASAGA_MAX_RECORDS", "0", "Expected `int` >= 1"),
        ("ALPHASAGA_MAX_RECORDS", "many", "Expected `int`, got `str`"),
        ("ALPHASAGA_EVENT_LOOP", "trio", "Invalid enum value 'trio'"),
        ("ALPHASAGA_DATABASE_SCHEMA", "Bad-Name", "Expected `str` matching regex '^[a-z_][a-z0-9_]*$'"),
        ("ALPHASAGA_RETENTION_HOT_DAYS", "-1", "Expected `float` > 0.0"),
    ],
)
def test_a_wrong_value_names_its_setting_what_is_wrong_and_the_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSetting) as caught:
        Settings()
    assert (caught.value.name, caught.value.reason, caught.value.value) == (name, reason, value)
    assert str(caught.value) == f"invalid setting {name}: {reason} (got {value!r})"


def test_text_from_the_environment_becomes_each_settings_type(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "BLOCK_MS": "250",
        "RETENTION_HOT_DAYS": "1.5",
        "HTTP_PORT": "8000",
        "ENV": "production",
    }.items():
        monkeypatch.setenv(f"ALPHASAGA_{name}", value)
    monkeypatch.delenv("ALPHASAGA_OTLP_ENDPOINT", raising=False)
    settings = Settings()
    assert (settings.block_ms, settings.retention_hot_days, settings.http_port) == (250, 1.5, 8000)
    assert settings.production and settings.otlp_endpoint is None
    assert isinstance(Settings(data_dir="/tmp/y").data_dir, Path)


def test_a_copy_changes_only_what_it_is_given() -> None:
    settings = Settings(namespace="a", block_ms=5)
    copy = settings.model_copy(update={"namespace": "b"})
    assert (copy.namespace, copy.block_ms, settings.namespace) == ("b", 5, "a")
    assert Settings.model_fields["block_ms"].default == 1000


def test_only_the_prefixed_names_asked_for_are_read() -> None:
    environ = {"ALPHASAGA_ENV": "production", "OTHER_ENV": "x", "ALPHASAGA_UNKNOWN": "y"}
    assert environment(["env", "redis_url"], environ) == {"env": "production"}
