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


def sentinel_settings(password_file: Path, **more: str):
    return load_settings(
        {
            "MAILSCAN_REDIS_URL": "redis://127.0.0.1:6390/2",
            "MAILSCAN_REDIS_PASSWORD_FILE": str(password_file),
            "MAILSCAN_REDIS_SENTINELS": "10.0.0.1:26379,[fd00::2]:26380",
            **more,
        }
    )


def test_under_sentinel_celery_is_given_every_sentinel_with_the_password(tmp_path):
    kept = tmp_path / "password"
    kept.write_text("p@ss")
    settings = sentinel_settings(kept, MAILSCAN_REDIS_MASTER="mail-ha")
    assert redisauth.celery_url(settings) == (
        "sentinel://:p%40ss@10.0.0.1:26379/2;sentinel://:p%40ss@[fd00::2]:26380/2"
    )
    options = redisauth.celery_transport_options(settings)
    assert options["master_name"] == "mail-ha"
    assert options["sentinel_kwargs"]["password"] == "p@ss"  # the sentinels want it too


def test_under_sentinel_a_client_asks_the_sentinels_for_the_primary(tmp_path):
    kept = tmp_path / "password"
    kept.write_text("p@ss")
    client = redisauth.connect(sentinel_settings(kept), socket_timeout=3)
    pool = client.connection_pool
    assert pool.service_name == "mailscan"
    assert pool.connection_kwargs["password"] == "p@ss"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["socket_timeout"] == 3
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
    assert redisauth.connect_async(sentinel_settings(kept)).connection_pool.service_name


def test_a_plain_url_keeps_its_own_clients(tmp_path):
    settings = settings_with("redis://127.0.0.1:6390/0", tmp_path / "absent")
    assert redisauth.celery_url(settings) == "redis://127.0.0.1:6390/0"
    assert redisauth.celery_transport_options(settings) == {}
    assert not hasattr(redisauth.connect(settings).connection_pool, "service_name")


def test_local_sentinels_default_to_the_redis_port_plus_20000(tmp_path):
    settings = load_settings({"MAILSCAN_LOCAL_REDIS": "sentinel"})
    assert [str(s) for s in settings.redis_sentinels] == [
        "127.0.0.1:26390", "127.0.0.1:26391", "127.0.0.1:26392",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"MAILSCAN_REDIS_SENTINELS": "s1:26379,unix:/run/s.sock"}, "HOST:PORT of each"),
        ({"MAILSCAN_REDIS_SENTINELS": "s1:26379", "MAILSCAN_REDIS_URL": "rediss://r:6380/0"},
         "needs a redis://"),
        ({"MAILSCAN_LOCAL_REDIS": "sentinel", "MAILSCAN_REDIS_URL": "redis://r:50000/0"},
         "would pass 65535"),
        ({"MAILSCAN_REDIS_MASTER": "my master"}, "the name the sentinels monitor"),
    ],
)  # fmt: skip
def test_a_sentinel_setting_that_cannot_work_fails_at_start(env, problem):
    with pytest.raises(ConfigError, match=problem):
        load_settings(env)
