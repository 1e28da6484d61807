"""Settings: defaults a user can rely on, and one clear message naming every bad value."""

from pathlib import Path

import pytest

from tasks.errors import ConfigError
from tasks.plugins import validate
from tasks.setting_parsers import Endpoint
from tasks.settings import load_settings


def test_defaults_are_loopback_and_fail_closed():
    settings = load_settings({})
    assert settings.smtp_host == "127.0.0.1"
    assert settings.smtp_port == 2525
    assert settings.mode == "pre-queue"
    assert settings.pools["av"].failure_policy == "tempfail"
    assert settings.maildir == Path("var/maildir")


def test_var_dir_moves_the_folders_that_are_not_set_on_their_own():
    settings = load_settings({"MAILSCAN_VAR_DIR": "/srv/ms", "MAILSCAN_MAILDIR": "/mail"})
    assert settings.spool_dir == Path("/srv/ms/spool")
    assert settings.quarantine_dir == Path("/srv/ms/quarantine")
    assert settings.maildir == Path("/mail")


def test_every_bad_value_is_named_in_one_error():
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "MAILSCAN_SMTP_PORT": "99999",
                "MAILSCAN_MODE": "sometimes",
                "MAILSCAN_CLAMD": "nohost",
                "MAILSCAN_SCAN_DEADLINE_S": "-1",
            }
        )
    text = str(caught.value)
    for name in ("SMTP_PORT", "MODE", "CLAMD", "SCAN_DEADLINE_S"):
        assert f"MAILSCAN_{name}" in text
    assert "pre-queue, post-queue" in text


def test_a_bad_redis_url_is_named_without_its_password():
    with pytest.raises(ConfigError) as caught:
        load_settings({"MAILSCAN_REDIS_URL": "http://:hunter2-secret@redis.example.net:6379/0"})
    assert "MAILSCAN_REDIS_URL='http://:***@redis.example.net:6379/0'" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_the_redis_password_file_follows_the_var_dir():
    assert load_settings({}).redis_password_file == Path("var/redis/password")
    moved = load_settings({"MAILSCAN_VAR_DIR": "/srv/ms"})
    assert moved.redis_password_file == Path("/srv/ms/redis/password")


def test_a_misspelt_setting_is_not_silently_ignored():
    with pytest.raises(ConfigError, match="MAILSCAN_SMTP_PROT: unknown setting"):
        load_settings({"MAILSCAN_SMTP_PROT": "25"})


def test_endpoints_take_tcp_and_unix_sockets():
    tcp = load_settings({"MAILSCAN_CLAMD": "[::1]:3310"}).clamd
    unix = load_settings({"MAILSCAN_SPAMD": "unix:/run/spamd.sock"}).spamd
    assert tcp == Endpoint(host="::1", port=3310)
    assert unix.socket_path == Path("/run/spamd.sock")


def test_unknown_plugin_is_refused_at_start():
    with pytest.raises(ConfigError, match="unknown plugin 'clamav2'"):
        validate(load_settings({"MAILSCAN_AV_PLUGINS": "clamav2"}))


def test_a_plugin_in_the_wrong_pool_is_refused():
    with pytest.raises(ConfigError, match="cannot run in the av pool"):
        validate(load_settings({"MAILSCAN_AV_PLUGINS": "spamassassin"}))


def test_command_plugin_without_a_command_is_refused():
    with pytest.raises(ConfigError, match="MAILSCAN_COMMAND_SCANNER"):
        validate(load_settings({"MAILSCAN_AV_PLUGINS": "command", "MAILSCAN_COMMAND_SCANNER": ""}))


def test_virus_pattern_must_capture_the_name():
    with pytest.raises(ConfigError, match="group named 'name'"):
        load_settings({"MAILSCAN_COMMAND_VIRUS_PATTERN": r"(\S+) FOUND"})


def test_task_events_are_sent_only_when_asked_for():
    from tasks.celery import celery_config

    assert celery_config(load_settings({}))["worker_send_task_events"] is False
    asked = load_settings({"MAILSCAN_TASK_EVENTS": "yes"})
    assert celery_config(asked)["worker_send_task_events"] is True
    with pytest.raises(ConfigError, match="MAILSCAN_TASK_EVENTS"):
        load_settings({"MAILSCAN_TASK_EVENTS": "sometimes"})


def test_each_pool_has_its_own_settings_and_defaults():
    settings = load_settings({"MAILSCAN_AV_SOFT_LIMIT_S": "5", "MAILSCAN_SPAM_CONCURRENCY": "4"})
    av, spam = settings.pools["av"], settings.pools["spam"]
    assert (av.soft_limit_s, spam.soft_limit_s) == (5.0, 60.0)
    assert (av.concurrency, spam.concurrency) == (None, 4)  # None: sized by the machine
    assert (av.plugins, spam.plugins) == (("clamav", "banned"), ("spamassassin",))
    assert (av.failure_policy, spam.failure_policy) == ("tempfail", "deliver-tagged")


def test_only_the_av_pool_has_backup_engines():
    with pytest.raises(ConfigError, match="MAILSCAN_SPAM_BACKUP_PLUGINS: unknown setting"):
        load_settings({"MAILSCAN_SPAM_BACKUP_PLUGINS": "builtin"})
    with pytest.raises(ConfigError, match="MAILSCAN_SPAM_FAILURE_POLICY=backup-engine"):
        load_settings({"MAILSCAN_SPAM_FAILURE_POLICY": "backup-engine"})
    with pytest.raises(ConfigError, match="needs MAILSCAN_AV_BACKUP_PLUGINS"):
        load_settings({"MAILSCAN_AV_FAILURE_POLICY": "backup-engine"})


def test_a_soft_limit_not_below_the_hard_one_is_refused_naming_both():
    with pytest.raises(ConfigError) as caught:
        load_settings({"MAILSCAN_SPAM_SOFT_LIMIT_S": "90", "MAILSCAN_AV_SCALE_MIN": "9"})
    text = str(caught.value)
    assert "MAILSCAN_SPAM_SOFT_LIMIT_S (90) must be below MAILSCAN_SPAM_HARD_LIMIT_S (90)" in text
    assert "MAILSCAN_AV_SCALE_MIN (9) is above the max (8)" in text


def test_with_pool_changes_one_pool_and_leaves_the_settings_it_came_from():
    settings = load_settings({})
    shorter = settings.with_pool("av", soft_limit_s=3.0)
    assert shorter.pools["av"].soft_limit_s == 3.0
    assert shorter.pools["spam"] == settings.pools["spam"]
    assert settings.pools["av"].soft_limit_s == 60.0
    with pytest.raises(KeyError):
        settings.pools["ops"]


def test_smtp_limits_that_contradict_each_other_are_refused_naming_both():
    with pytest.raises(ConfigError) as caught:
        load_settings({
            "MAILSCAN_SMTP_MAX_CONNECTIONS": "10",
            "MAILSCAN_SMTP_MAX_RECIPIENTS": "20000",
            "MAILSCAN_SMTP_SESSION_TIMEOUT_S": "60",
        })  # fmt: skip
    text = str(caught.value)
    assert (
        "MAILSCAN_SMTP_MAX_CONNECTIONS_PER_CLIENT (50) must not be above "
        "MAILSCAN_SMTP_MAX_CONNECTIONS (10)" in text
    )
    assert (
        "MAILSCAN_SMTP_MAX_RECIPIENTS (20000) must not be above MAILSCAN_SMTP_MAX_COMMANDS" in text
    )
    assert "MAILSCAN_SMTP_COMMAND_TIMEOUT_S (300) must not be above" in text
    with pytest.raises(ConfigError, match="MAILSCAN_SMTP_MAX_ERRORS='0': must be a whole number"):
        load_settings({"MAILSCAN_SMTP_MAX_ERRORS": "0"})
