"""Settings read from PARKGUARD_* variables: a bad value names its variable and says why."""

from __future__ import annotations

import pytest

from core.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PARKGUARD_MQTT_SESSION_EXPIRY_S", "-1"),
        ("PARKGUARD_MQTT_SESSION_EXPIRY_S", "4294967296"),
        ("PARKGUARD_MQTT_SESSION_EXPIRY_S", "a week"),
        ("PARKGUARD_FLUSH_INTERVAL_MS", "0"),
        ("PARKGUARD_FLUSH_INTERVAL_MS", "25.5"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_the_collector_session_and_batch_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARKGUARD_MQTT_SESSION_EXPIRY_S", raising=False)  # tests set a short one
    settings = load_settings()
    assert settings.mqtt_session_expiry_s == 7 * 24 * 3600
    assert settings.flush_interval_ms == 25
    monkeypatch.setenv("PARKGUARD_MQTT_SESSION_EXPIRY_S", "0")
    assert load_settings().mqtt_session_expiry_s == 0, "0: the session ends with the connection"
