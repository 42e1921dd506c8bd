from pathlib import Path

import pytest

from omium.config import Settings
from omium.errors import ConfigError


def test_defaults_follow_the_brief() -> None:
    settings = Settings.from_env({})
    assert settings.home == Path(".omium")
    assert settings.server_url == "http://127.0.0.1:4318"
    assert settings.clickhouse_url is None and settings.embedded
    assert settings.host == "127.0.0.1"
    assert settings.warehouse_path == Path(".omium/warehouse")


def test_environment_is_read_and_validated() -> None:
    settings = Settings.from_env(
        {
            "OMIUM_HOME": "/srv/omium",
            "OMIUM_CLICKHOUSE_URL": "http://ch:8123",
            "OMIUM_API_TOKEN": "s3cret",
            "OMIUM_HTTP_PORT": "9000",
        }
    )
    assert settings.home == Path("/srv/omium")
    assert not settings.embedded
    assert settings.api_token == "s3cret"
    assert settings.http_port == 9000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OMIUM_HTTP_PORT": "eighty"}, "OMIUM_HTTP_PORT"),
        ({"OMIUM_SERVER_URL": "ftp://x"}, "OMIUM_SERVER_URL"),
        ({"OMIUM_CLICKHOUSE_URL": "mysql://db"}, "OMIUM_CLICKHOUSE_URL"),
        ({"OMIUM_FSYNC": "maybe"}, "OMIUM_FSYNC"),
        ({"OMIUM_DATABASE": "x; DROP"}, "OMIUM_DATABASE"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_binding_beyond_loopback_requires_a_token() -> None:
    with pytest.raises(ConfigError, match="OMIUM_API_TOKEN"):
        Settings.from_env({"OMIUM_HOST": "0.0.0.0"}).check_bind()
    Settings.from_env({"OMIUM_HOST": "0.0.0.0", "OMIUM_API_TOKEN": "t"}).check_bind()
    Settings.from_env({}).check_bind()


def test_no_judge_unless_its_url_is_set() -> None:
    settings = Settings.from_env({"OMIUM_JUDGE_MODEL": "gpt-4o", "OMIUM_JUDGE_KEY": "sk-x"})
    assert settings.judge_url is None and settings.judge_method == "all_at_once"


def test_judge_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "OMIUM_JUDGE_URL": "https://llm.example/v1/",
            "OMIUM_JUDGE_MODEL": "gpt-4o",
            "OMIUM_JUDGE_KEY": "sk-secret",
            "OMIUM_JUDGE_METHOD": "Binary_Search",
            "OMIUM_JUDGE_TIMEOUT_SECONDS": "15",
        }
    )
    assert settings.judge_url == "https://llm.example/v1"
    assert (settings.judge_model, settings.judge_key) == ("gpt-4o", "sk-secret")
    assert settings.judge_method == "binary_search" and settings.judge_timeout == 15.0
    assert "sk-secret" not in repr(settings)  # the key stays out of logs


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OMIUM_JUDGE_URL": "ftp://llm.example"}, "OMIUM_JUDGE_URL must be a URL"),
        ({"OMIUM_JUDGE_URL": "http://llm.example/v1"}, "OMIUM_JUDGE_MODEL must name"),
        (
            {"OMIUM_JUDGE_URL": "http://llm.example/v1", "OMIUM_JUDGE_MODEL": "m", "OMIUM_JUDGE_METHOD": "vote"},
            "OMIUM_JUDGE_METHOD must be one of all_at_once, step_by_step, binary_search",
        ),
        ({"OMIUM_JUDGE_METHOD": "vote"}, "OMIUM_JUDGE_METHOD"),
        ({"OMIUM_JUDGE_TIMEOUT_SECONDS": "0"}, "OMIUM_JUDGE_TIMEOUT_SECONDS must be positive"),
    ],
)
def test_bad_judge_settings_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
