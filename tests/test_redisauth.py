"""How clients find the Redis password, and how a Redis URL is shown to people."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import redisauth
from tasks.errors import ConfigError
from tasks.settings import load_settings


def settings_with(url: str, password_file: Path):
    return load_settings(
        {"MAILSCAN_REDIS_URL": url, "MAILSCAN_REDIS_PASSWORD_FILE": str(password_file)}
    )


def test_clients_use_the_kept_password_when_the_url_has_none(tmp_path):
    kept = tmp_path / "password"
    kept.write_text("s3cret-kept\n")
    settings = settings_with("redis://127.0.0.1:6390/0", kept)
    assert redisauth.client_url(settings) == "redis://:s3cret-kept@127.0.0.1:6390/0"


def test_a_password_in_the_url_wins_over_the_file(tmp_path):
    kept = tmp_path / "password"
    kept.write_text("from-file")
    settings = settings_with("rediss://:from-url@redis.example.net:6380/0", kept)
    assert redisauth.client_url(settings) == "rediss://:from-url@redis.example.net:6380/0"
    assert redisauth.password(settings) == "from-url"


def test_no_file_no_password(tmp_path):
    settings = settings_with("redis://127.0.0.1:6390/0", tmp_path / "absent")
    assert redisauth.client_url(settings) == "redis://127.0.0.1:6390/0"


def test_an_unreadable_password_file_is_named_in_one_clear_error(tmp_path):
    settings = settings_with("redis://127.0.0.1:6390/0", tmp_path)  # a folder: unreadable
    with pytest.raises(ConfigError, match="MAILSCAN_REDIS_PASSWORD_FILE"):
        redisauth.client_url(settings)


def test_a_password_with_url_characters_survives_the_url(tmp_path):
    kept = tmp_path / "password"
    kept.write_text("p@ss:w/rd#1")
    settings = settings_with("redis://127.0.0.1:6390/0", kept)
    url = redisauth.client_url(settings)
    assert "p@ss" not in url
    assert redisauth.url_password(url) == "p@ss:w/rd#1"
    assert (
        redisauth.connect(settings).connection_pool.connection_kwargs["password"] == "p@ss:w/rd#1"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:6390/0", "redis://:***@127.0.0.1:6390/0"),
        ("rediss://admin:pw@redis.example.net:6380/0?ssl_cert_reqs=required",
         "rediss://admin:***@redis.example.net:6380/0?ssl_cert_reqs=required"),
        ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock?db=0&password=***"),
        ("redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)  # fmt: skip
def test_a_url_is_shown_with_its_password_masked(url, shown):
    assert redisauth.masked(url) == shown
