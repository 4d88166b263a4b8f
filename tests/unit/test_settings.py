"""Settings: constructor arguments, then CONVEYOR_* variables, then defaults; every value
checked for type, finiteness and range however the object is built (issue 14)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from conveyor import ConfigurationError, Conveyor, Settings
from conveyor.settings import DEFAULT_BROKER_URL

DOCS = Path(__file__).resolve().parents[2] / "docs" / "settings.md"

# The valid range of every numeric setting: the specification these tests hold the code
# (and docs/settings.md) to. Minimums: no value burns CPU (0 made an idle worker spin at
# 71-96% of a core) or expires a lease before its renewal; maximums: every duration fits
# the integer milliseconds Redis is given, every size what Redis stores.
SECONDS: dict[str, tuple[float, float]] = {
    "lease": (0.5, 86400),
    "reap_interval": (0.05, 3600),
    "grace": (0, 86400),
    "heartbeat_interval": (0.1, 3600),
    "abort_check_interval": (0.05, 3600),
    "fetch_wait": (0.05, 60),
    "fault_pause": (0.01, 60),
    "fault_pause_max": (0.01, 600),
    "result_ttl": (0, 10 * 365 * 86400),
    "unknown_task_delay": (0.1, 86400),
    "schedule_grace": (0, 86400),
    "schedule_refresh": (0.05, 3600),
    "schedule_send_timeout": (0.5, 300),
    "workflow_ttl": (60, 10 * 365 * 86400),
    "permit_wait": (0.01, 60),
}
COUNTS: dict[str, tuple[int, int]] = {
    "concurrency": (1, 10_000),
    "process_pool_size": (0, 1024),
    "max_payload_bytes": (1, 512 * 1024 * 1024),
    "max_result_bytes": (1, 512 * 1024 * 1024),
    "poison_after": (1, 1000),
    "unknown_task_retries": (0, 1000),
    "events_max": (1, 10_000_000),
    "event_args_preview": (0, 65_536),
}
FLAGS = ("log_tasks", "task_counts", "events")
OTHERS = (
    "broker_url",
    "result_url",
    "queues",
    "default_queue",
    "signing_keys",
    "clock",
)
SPELLINGS = {"1": True, "true": True, "yes": True, "on": True}
SPELLINGS |= {"0": False, "false": False, "no": False, "off": False}


def _variable(name: str) -> str:
    return f"CONVEYOR_{name.upper()}"


def _refused(call: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """The message of the ConfigurationError ``call(*args, **kwargs)`` raises."""
    with pytest.raises(ConfigurationError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


def _number(value: float) -> str:
    """``86400``, ``0.05``: a bound as messages and docs write it."""
    return str(int(value)) if float(value).is_integer() else str(value)


def test_every_setting_has_its_bounds_in_these_tests() -> None:
    covered = [*SECONDS, *COUNTS, *FLAGS, *OTHERS]
    assert sorted(covered) == sorted(f.name for f in fields(Settings))


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.load({})
    assert settings == Settings()
    assert settings.broker_url == DEFAULT_BROKER_URL == "sqlite:///conveyor.db"
    assert settings.lease == 30.0
    assert settings.reap_interval == 5.0
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.signing_keys == ()


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


def test_app_reads_the_environment_it_is_given() -> None:
    app = Conveyor(environ={"CONVEYOR_BROKER_URL": "memory://", "CONVEYOR_GRACE": "3"})
    assert app.settings.broker_url == "memory://"
    assert app.settings.grace == 3.0


def test_unknown_settings_are_refused_on_every_path() -> None:
    assert "unknown setting(s): concurency" in _refused(Settings.load, {}, concurency=3)
    assert "unknown setting(s): concurency" in _refused(Settings().replace, concurency=3)
    assert "unknown setting(s): concurency" in _refused(Conveyor, concurency=3)


def test_unknown_url_scheme_and_missing_extra_give_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown broker URL scheme in 'kafka://h'"):
        Conveyor("kafka://h", environ={})


# -- numbers -------------------------------------------------------------------------


def _numbers() -> list[tuple[str, float, float]]:
    return [(name, low, high) for name, (low, high) in {**SECONDS, **COUNTS}.items()]


@pytest.mark.parametrize(("name", "low", "high"), _numbers())
def test_the_bounds_of_a_number_are_valid_from_arguments_and_the_environment(
    name: str, low: float, high: float
) -> None:
    for value in (low, high):
        given: dict[str, Any] = {name: value}
        assert getattr(Settings(**given), name) == value
        assert getattr(Settings.load({_variable(name): str(value)}), name) == value


def _expected(name: str) -> str:
    """The start of the message refusing a value of ``name``: the setting and its range."""
    if name in SECONDS:
        low, high = SECONDS[name]
        return (
            f"setting {name} must be a finite number of seconds "
            f">= {_number(low)} and <= {_number(high)}"
        )
    low_count, high_count = COUNTS[name]
    noun = {
        "max_payload_bytes": "a whole number of bytes",
        "max_result_bytes": "a whole number of bytes",
        "event_args_preview": "a whole number of characters",
        "process_pool_size": "a whole number of processes",
    }.get(name, "an integer")
    return f"setting {name} must be {noun} >= {low_count} and <= {high_count}"


def _out_of_range(name: str) -> list[object]:
    low, high = {**SECONDS, **COUNTS}[name]
    if name in COUNTS:
        return [low - 1, high + 1, -5, 2**70]
    below = [low - 0.01, -1.0, -math.inf] + ([0.0] if low > 0 else [])
    return [*below, high * 1.01, math.inf, math.nan, 10**400]


@pytest.mark.parametrize(
    ("name", "value"), [(n, v) for n, *_ in _numbers() for v in _out_of_range(n)]
)
def test_a_number_out_of_range_is_refused_naming_setting_value_and_range(
    name: str, value: object
) -> None:
    message = _refused(Settings, **{name: value})
    assert message == f"{_expected(name)}, got {value!r}"


# What a variable may say that is not a valid number of seconds / an integer in range
BAD_SECONDS_TEXT = ["nan", "NaN", "inf", "-inf", "1e999", "-1", "", " ", "soon", "5s", "1,5"]
BAD_COUNT_TEXT = ["nan", "inf", "-5", "1.5", "1e3", "", "many", "0x10", "true"]


def _bad_text(name: str) -> list[str]:
    low, high = {**SECONDS, **COUNTS}[name]
    if name in SECONDS:
        return [*BAD_SECONDS_TEXT, repr(high * 2)] + (["0"] if low > 0 else [])
    return [*BAD_COUNT_TEXT, str(high + 1)] + ([str(low - 1)] if low > 0 else ["-1"])


@pytest.mark.parametrize(("name", "text"), [(n, t) for n, *_ in _numbers() for t in _bad_text(n)])
def test_a_bad_number_in_the_environment_is_refused_naming_the_variable(
    name: str, text: str
) -> None:
    message = _refused(Settings.load, {_variable(name): text})
    assert message.startswith(f"{_expected(name)}, got ")
    assert message.endswith(f" (from {_variable(name)})")
    try:
        float(text)
    except ValueError:  # not a number: quoted, so '' and ' ' show
        assert f"got {text!r} (from" in message
    else:  # a number: as written
        assert f"got {text.strip()} (from" in message


def test_the_issue_s_examples_are_refused_with_one_clear_message() -> None:
    def load(variable: str, text: str) -> str:
        return _refused(Settings.load, {variable: text})

    assert load("CONVEYOR_LEASE", "nan") == (
        "setting lease must be a finite number of seconds >= 0.5 and <= 86400, "
        "got nan (from CONVEYOR_LEASE)"
    )
    assert load("CONVEYOR_LEASE", "0").endswith("got 0 (from CONVEYOR_LEASE)")
    assert "heartbeat_interval must be" in load("CONVEYOR_HEARTBEAT_INTERVAL", "0")
    assert "reap_interval must be" in load("CONVEYOR_REAP_INTERVAL", "0")
    assert "<= 315360000, got inf" in load("CONVEYOR_RESULT_TTL", "inf")
    assert "default_queue must be a non-empty" in load("CONVEYOR_DEFAULT_QUEUE", "")
    assert "events must be True or False" in load("CONVEYOR_EVENTS", "ture")
    assert ">= 1 and <= 10000, got -5" in load("CONVEYOR_CONCURRENCY", "-5")


def test_a_number_of_the_wrong_type_is_refused_not_converted() -> None:
    for name, value, shown in [
        ("lease", "3", "'3' (a str)"),
        ("lease", True, "True (a bool)"),
        ("lease", None, "None (a NoneType)"),
        ("lease", b"3", "b'3' (a bytes)"),
        ("concurrency", 2.0, "2.0 (a float)"),
        ("concurrency", True, "True (a bool)"),
        ("concurrency", "4", "'4' (a str)"),
        ("events_max", 1e4, "10000.0 (a float)"),
    ]:
        assert _refused(Settings, **{name: value}) == f"{_expected(name)}, got {shown}"


def test_a_float_setting_given_an_int_is_stored_as_a_float() -> None:
    settings = Settings(lease=10, grace=0)
    assert settings.lease == 10.0 and isinstance(settings.lease, float)
    assert isinstance(settings.grace, float)


def test_every_construction_path_checks_the_values() -> None:
    expected = _expected("lease") + ", got 0"
    assert _refused(Settings, lease=0) == expected
    assert _refused(Settings().replace, lease=0) == expected
    assert _refused(Settings.load, {}, lease=0) == expected
    assert _refused(Conveyor, "memory://", environ={}, lease=0) == expected
    assert _refused(Conveyor, settings=Settings(), lease=0) == expected
    with_variable = _refused(Conveyor, environ={"CONVEYOR_LEASE": "0"})
    assert with_variable == expected + " (from CONVEYOR_LEASE)"


def test_the_compressed_timeouts_of_the_test_fixtures_stay_valid() -> None:
    from conveyor.testing.conformance import conformance_options
    from tests.conftest import fast_app

    assert fast_app().settings.lease == 1.0
    options = conformance_options()
    assert Settings(lease=options.lease, fetch_wait=options.fetch_wait).lease == 0.6


# -- booleans ------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLAGS)
def test_booleans_accept_exactly_the_documented_spellings_in_any_case(name: str) -> None:
    for text, value in SPELLINGS.items():
        for written in (text, text.upper(), text.title(), f" {text} "):
            assert getattr(Settings.load({_variable(name): written}), name) is value


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("text", ["ture", "flase", "y", "n", "2", "-1", "", "enabled", "None"])
def test_a_typo_d_boolean_is_refused_not_read_as_false(name: str, text: str) -> None:
    message = _refused(Settings.load, {_variable(name): text})
    shown = text if text.lstrip("-").isdigit() else repr(text)  # a number as written
    assert message == (
        f"setting {name} must be True or False (from the environment: 1, true, yes, on, "
        f"0, false, no or off, in any case), got {shown} (from {_variable(name)})"
    )


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("value", [1, 0, "true", "false", None, 1.0])
def test_a_boolean_setting_takes_only_a_real_bool_from_python(name: str, value: object) -> None:
    message = _refused(Settings, **{name: value})
    assert message.startswith(f"setting {name} must be True or False")
    kind = type(value).__name__
    assert message.endswith(f"got {value!r} ({'an' if kind == 'int' else 'a'} {kind})")


# -- strings and lists ---------------------------------------------------------------


def test_queue_names_must_be_non_empty_without_surrounding_whitespace() -> None:
    name_rule = (
        "setting default_queue must be a non-empty queue name without surrounding whitespace"
    )
    for value in ("", " ", " default", "default\n"):
        assert _refused(Settings, default_queue=value) == f"{name_rule}, got {value!r}"
    assert _refused(Settings, default_queue=None) == f"{name_rule}, got None (a NoneType)"
    assert _refused(Settings.load, {"CONVEYOR_DEFAULT_QUEUE": ""}) == (
        f"{name_rule}, got '' (from CONVEYOR_DEFAULT_QUEUE)"
    )

    list_rule = "setting queues must be one or more distinct queue names"
    for queues in ((), ("default", ""), ("default", " reports"), ("a", "a"), ("a", 1)):
        assert _refused(Settings, queues=queues).startswith(list_rule)
    assert _refused(Settings, queues="default").endswith("got 'default' (a str)")
    for text in ("", ",", "default,,reports", "default,", "a, a"):
        message = _refused(Settings.load, {"CONVEYOR_QUEUES": text})
        assert message.startswith(list_rule)
        assert message.endswith(f"got {text!r} (from CONVEYOR_QUEUES)")


def test_a_list_of_queues_is_stored_as_a_tuple() -> None:
    assert Settings(queues=["high", "low"]).queues == ("high", "low")  # type: ignore[arg-type]


def test_the_sqlite_settings_moved_into_the_url() -> None:
    with pytest.raises(ConfigurationError, match=r"sqlite:///path.db\?synchronous=NORMAL"):
        Settings.load({"CONVEYOR_SQLITE_SYNCHRONOUS": "NORMAL"})
    with pytest.raises(ConfigurationError, match="setting sqlite_busy_timeout moved to"):
        Settings.load({}, sqlite_busy_timeout=5)


def test_urls_must_be_non_empty_and_are_shown_without_their_password() -> None:
    assert _refused(Settings, broker_url="") == (
        "setting broker_url must be a non-empty URL without surrounding whitespace, got ''"
    )
    message = _refused(Settings, broker_url="redis://:s3cret@host:6379/0 ")
    assert "s3cret" not in message
    assert message.endswith("got 'redis://:***@host:6379/0' with surrounding whitespace")
    assert "result_url must be" in _refused(Settings, result_url="")
    assert Settings(result_url=None).result_url is None


def test_clock_must_be_a_clock() -> None:
    assert "setting clock must be a Clock: an object with now(), monotonic() and async " in (
        _refused(Settings, clock=object())
    )


# -- the secret ----------------------------------------------------------------------

SECRET = "s3cret-signing-key"


def test_signing_keys_are_read_from_a_comma_separated_variable() -> None:
    settings = Settings.load({"CONVEYOR_SIGNING_KEYS": f"{SECRET}-2, {SECRET}-1"})
    assert settings.signing_keys == (f"{SECRET}-2", f"{SECRET}-1")
    assert SECRET not in repr(settings)
    assert Settings(signing_keys=[SECRET]).signing_keys == (SECRET,)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ((SECRET, ""), "a value whose entry 2 is empty"),
        ((f" {SECRET}",), "a value whose entry 1 has surrounding whitespace"),
        ((f"{SECRET}\n",), "a value whose entry 1 has surrounding whitespace"),
        ((SECRET.encode(),), "a value whose entry 1 is a bytes"),
        (SECRET, "a str"),
        (None, "a NoneType"),
    ],
)
def test_a_bad_signing_key_is_named_but_never_shown(value: object, problem: str) -> None:
    message = _refused(Settings, signing_keys=value)
    assert message.startswith("setting signing_keys must be a tuple of non-empty strings")
    assert message.endswith(f"got {problem} (not shown: a secret)")
    assert SECRET not in message and SECRET[:6] not in message


@pytest.mark.parametrize("text", ["", " ", f"{SECRET},", f",{SECRET}", f"{SECRET},,{SECRET}2"])
def test_an_empty_signing_key_variable_is_refused_rather_than_signing_nothing(text: str) -> None:
    message = _refused(Settings.load, {"CONVEYOR_SIGNING_KEYS": text})
    assert message.startswith("setting signing_keys must be")
    assert message.endswith(
        "got a value with an empty entry (not shown: a secret) (from CONVEYOR_SIGNING_KEYS)"
    )
    assert SECRET[:6] not in message


# -- the docs ------------------------------------------------------------------------


def _doc_rows() -> dict[str, str]:
    rows = {}
    for line in DOCS.read_text().splitlines():
        found = re.match(r"\| `(\w+)` \|", line)
        if found:
            rows[found.group(1)] = line
    return rows


def test_the_settings_page_shows_every_setting_s_valid_range() -> None:
    rows = _doc_rows()
    assert sorted(rows) == sorted(f.name for f in fields(Settings))
    for name, (low, high) in {**SECONDS, **COUNTS}.items():
        assert f"`{_number(low)}` to `{_number(high)}`" in rows[name], name
    text = " ".join(DOCS.read_text().split())
    assert (
        "`1`, `true`, `yes`, `on` (true) or `0`, `false`, `no`, `off` (false), in any case" in text
    )
