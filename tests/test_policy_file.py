"""The policy file on its own: sections and what each recipient gets, every mistake named
with its line, one message decided per group of recipients, and a reload that keeps the
policy in force when the new file is broken."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from mailserver.front.policies.holder import PolicyHolder
from mailserver.front.policies.loading import load_policies
from mailserver.front.policies.per_recipient import decide_for_recipients, one_for_all
from mailserver.front.policy import Decision
from tasks.errors import PolicyError
from tasks.settings import load_settings
from tests.pool_verdicts import av_verdict as av
from tests.pool_verdicts import banned_verdict
from tests.pool_verdicts import spam_verdict as spam

SETTINGS = load_settings({})
POLICY = """
[default]
spam_quarantine_score = 15
subject_tag = "[SPAM]"

[domain."strict.test"]
spam_quarantine_score = 5
spam_reject_score = 12
block_senders = ["@spammer.test"]

[domain."lenient.test"]
spam_quarantine_score = "off"
banned = "off"

[recipient."boss@strict.test"]
bypass = true
"""


def policies_of(tmp_path: Path, text: str = POLICY):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policies(replace(SETTINGS, policy_file=path))


def test_each_recipient_gets_its_address_then_its_domain_then_the_default(tmp_path):
    policies = policies_of(tmp_path)
    strict = policies.for_recipient("Ann@Strict.Test")
    assert strict.name == "domain strict.test"
    assert (strict.spam_quarantine_score, strict.spam_reject_score) == (5.0, 12.0)
    assert strict.subject_tag == "[SPAM]"  # from the default
    assert policies.for_recipient("ann@mail.strict.test").name == "domain strict.test"
    boss = policies.for_recipient("boss@strict.test")
    assert (boss.name, boss.bypass, boss.spam_reject_score) == ("recipient boss@strict.test",
                                                                True, 12.0)  # fmt: skip
    assert policies.for_recipient("x@lenient.test").spam_quarantine_score is None
    assert policies.for_recipient("x@other.test").name == "default"
    assert policies.for_recipient("x@other.test").spam_quarantine_score == 15.0


def test_every_mistake_is_named_with_its_line_and_key(tmp_path):
    broken = POLICY.replace("spam_reject_score = 12", 'spam_reject_score = "high"').replace(
        'banned = "off"', 'banned = "no"\nspam_tagscore = 3'
    )
    with pytest.raises(PolicyError) as raised:
        policies_of(tmp_path, broken + '\n[domain."bad domain"]\nbypass = 1\n')
    lines = raised.value.lines
    assert len(lines) == 4, lines
    assert 'line 8: [domain."strict.test"] spam_reject_score: must be a number or "off"' in lines[0]
    assert 'line 13: [domain."lenient.test"] banned: must be "on" or "off"' in lines[1]
    assert 'line 14: [domain."lenient.test"] spam_tagscore: unknown key' in lines[2]
    assert "[domain.\"bad domain\"]: 'bad domain' is not a domain" in lines[3]
    assert all(str(tmp_path / "policy.toml") in line for line in lines)


def test_a_file_that_is_not_toml_is_named_with_its_line(tmp_path):
    with pytest.raises(PolicyError, match=r"not TOML: .*line 3"):
        policies_of(tmp_path, "[default]\nsubject_tag = '[SPAM]'\nspam_quarantine_score = \n")


def test_one_message_gets_a_decision_per_group_of_recipients(tmp_path):
    policies = policies_of(tmp_path)
    rcpts = ("ann@strict.test", "bob@lenient.test", "boss@strict.test")
    decision = decide_for_recipients(av("clean"), spam("spam", 8.0), SETTINGS, policies,
                                     "alice@example.test", rcpts, client_waiting=True)  # fmt: skip
    assert decision.reply.startswith("250 ")
    by_rcpt = {rcpt: part for members, part in decision.split for rcpt in members}
    assert by_rcpt["ann@strict.test"].action == "quarantine"
    assert "domain strict.test: spam_quarantine_score 5" in by_rcpt["ann@strict.test"].policy
    assert by_rcpt["bob@lenient.test"].action == "deliver"
    assert by_rcpt["bob@lenient.test"].subject_tag == "[SPAM]"
    assert by_rcpt["boss@strict.test"].policy.endswith("spam check bypassed")


def test_refused_only_when_every_group_refuses(tmp_path):
    policies = policies_of(tmp_path)
    refused_by_all = decide_for_recipients(
        av("clean"), spam("spam", 20.0), SETTINGS, policies, "alice@example.test",
        ("ann@strict.test", "carl@mail.strict.test"), client_waiting=True)  # fmt: skip
    assert refused_by_all.reply.startswith("550 5.7.1 Message refused as spam")
    mixed = decide_for_recipients(
        av("clean"), spam("spam", 20.0), SETTINGS, policies, "alice@example.test",
        ("ann@strict.test", "bob@lenient.test"), client_waiting=True)  # fmt: skip
    assert mixed.reply == "250 2.0.0 Ok: 1 quarantined; 1 delivered"
    actions = {members: part.action for members, part in mixed.split}
    assert actions == {("ann@strict.test",): "quarantine", ("bob@lenient.test",): "deliver"}


def test_senders_blocked_and_banned_attachments_follow_the_recipients_policy(tmp_path):
    policies = policies_of(tmp_path)
    blocked = decide_for_recipients(av("clean"), spam("ham", 0.0), SETTINGS, policies,
                                    "x@mx.spammer.test", ("ann@strict.test",), True)  # fmt: skip
    assert blocked.reply == "550 5.7.1 Message refused: sender blocked by policy"
    banned = banned_verdict("tool.exe", "extension exe")
    for rcpt, action in (("ann@strict.test", "reject"), ("bob@lenient.test", "deliver")):
        decision = decide_for_recipients(banned, spam("ham", 0.0), SETTINGS, policies,
                                         "alice@example.test", (rcpt,), True)  # fmt: skip
        assert decision.action == action, rcpt


def test_a_split_decision_survives_the_retry_record(tmp_path):
    policies = policies_of(tmp_path)
    decision = decide_for_recipients(av("clean"), spam("spam", 8.0), SETTINGS, policies,
                                     "a@example.test", ("ann@strict.test", "bob@lenient.test"),
                                     client_waiting=False)  # fmt: skip
    kept = json.loads(json.dumps(asdict(decision)))
    assert Decision.from_record(kept) == decision


def test_a_reload_switches_whole_or_keeps_the_policy_in_force(tmp_path, caplog):
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    holder = PolicyHolder(replace(SETTINGS, policy_file=path, var_dir=tmp_path))
    path.write_text(POLICY.replace("spam_quarantine_score = 5", "spam_quarantine_score = 3"))
    with caplog.at_level(logging.WARNING):
        assert holder.reload()
    assert holder.current.for_recipient("a@strict.test").spam_quarantine_score == 3.0
    assert "domain strict.test: spam_quarantine_score 5.0 -> 3.0" in caplog.text
    in_force = holder.current
    path.write_text(POLICY.replace("bypass = true", "bypass = maybe"))
    assert not holder.reload()
    assert holder.current is in_force
    assert "policy not reloaded: the policy in force stays" in caplog.text
    state = json.loads((tmp_path / "policy-state.json").read_text())
    assert "not TOML" in state["error"]


def test_the_documented_example_is_a_valid_policy_file(tmp_path):
    page = (Path(__file__).parent.parent / "docs" / "policy.md").read_text()
    example = page.split("```toml\n", 1)[1].split("```", 1)[0]
    policies = policies_of(tmp_path, example)
    assert policies.for_recipient("abuse@example.org").bypass
    assert policies.for_recipient("x@mail.example.org").spam_reject_score == 20.0


def test_the_milter_carries_out_the_strictest_groups_decision(tmp_path):
    policies = policies_of(tmp_path)
    decision = decide_for_recipients(av("clean"), spam("spam", 8.0), SETTINGS, policies,
                                     "a@example.test", ("bob@lenient.test", "ann@strict.test"),
                                     client_waiting=True)  # fmt: skip
    assert decision.action == "deliver"  # some recipients get it, tagged
    held = one_for_all(decision)
    assert held.action == "quarantine"
    assert held.policy == "domain strict.test: spam_quarantine_score 5"
    assert any(line.startswith("X-Spam-Flag: YES") for line in held.header_lines)
