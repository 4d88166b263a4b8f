"""Settings: constructor arguments, then CONVEYOR_* variables, then defaults."""

from __future__ import annotations

import pytest

from conveyor import ConfigurationError, Conveyor, Settings
from conveyor.settings import DEFAULT_BROKER_URL


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.load({})
    assert settings.broker_url == DEFAULT_BROKER_URL == "sqlite:///conveyor.db"
    assert settings.lease == 30.0
    assert settings.reap_interval == 5.0
    assert settings.max_payload_bytes == 1024 * 1024


def test_environment_overrides_defaults_and_arguments_override_environment() -> None:
    env = {
        "CONVEYOR_BROKER_URL": "memory://",
        "CONVEYOR_CONCURRENCY": "50",
        "CONVEYOR_QUEUES": "default, reports",
        "CONVEYOR_LEASE": "12.5",
    }
    settings = Settings.load(env, concurrency=7)
    assert settings.broker_url == "memory://"
    assert settings.concurrency == 7
    assert settings.queues == ("default", "reports")
    assert settings.lease == 12.5


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="CONVEYOR_CONCURRENCY='many'"):
        Settings.load({"CONVEYOR_CONCURRENCY": "many"})


def test_invalid_values_and_unknown_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="concurrency must be >= 1"):
        Settings.load({}, concurrency=0)
    with pytest.raises(ConfigurationError, match="unknown setting"):
        Settings.load({}, concurency=3)


def test_app_reads_the_environment_it_is_given() -> None:
    app = Conveyor(environ={"CONVEYOR_BROKER_URL": "memory://", "CONVEYOR_GRACE": "3"})
    assert app.settings.broker_url == "memory://"
    assert app.settings.grace == 3.0


def test_unknown_url_scheme_and_missing_extra_give_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown broker URL scheme in 'kafka://h'"):
        Conveyor("kafka://h", environ={})


def test_passwords_are_redacted_in_messages() -> None:
    from conveyor.brokers import redact_url

    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


def test_a_zero_fetch_wait_is_refused_because_idle_workers_would_spin() -> None:
    with pytest.raises(ConfigurationError, match="fetch_wait must be > 0"):
        Settings.load({}, fetch_wait=0)
    with pytest.raises(ConfigurationError, match="result_ttl must be >= 0"):
        Settings.load({}, result_ttl=-1)
