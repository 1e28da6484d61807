"""The policy file on its own: sections and what each recipient gets, every mistake named
with its line, one message decided per group of recipients, and a reload that keeps the
policy in force when the new file is broken."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from mailserver.front.policies.banned_names import UNJUDGED
from mailserver.front.policies.holder import PolicyHolder
from mailserver.front.policies.loading import load_policies
from mailserver.front.policies.per_recipient import (
    bans_settle_for_all,
    decide_for_recipients,
    one_for_all,
    refuses_banned_for_all,
)
from mailserver.front.policies.rules import ExtensionList
from mailserver.front.policy import Decision
from tasks.errors import PolicyError
from tasks.settings import load_settings
from tests.pool_verdicts import av_verdict as av
from tests.pool_verdicts import banned_verdict, names_verdict
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


LISTS = """
[domain."adds.test"]
banned_extensions = { add = ["iso", ".IMG"] }

[domain."only.test"]
banned_extensions = { only = ["js"] }

[domain."global.test"]
spam_quarantine_score = 15
"""


def test_a_section_extends_or_replaces_the_banned_extensions(tmp_path):
    text = "[default]\nbanned_extensions = { only = [] }\n" + LISTS
    policies = policies_of(tmp_path, text)
    assert policies.for_recipient("x@adds.test").banned_extensions == ExtensionList(
        "add", ("iso", "img")
    )
    added = policies.for_recipient("x@adds.test").banned_extensions.applied_to(["exe"])
    assert added == {"iso", "img", "exe"}
    only = policies.for_recipient("ann@mail.only.test").banned_extensions
    assert only == ExtensionList("only", ("js",))
    assert only.applied_to(SETTINGS.banned_extensions) == {"js"}
    # A section that does not say takes its parent's list.
    assert policies.for_recipient("x@global.test").banned_extensions == ExtensionList("only", ())
    assert policies_of(tmp_path, LISTS).default.banned_extensions is None


def test_every_mistake_in_a_banned_extension_list_is_named_with_its_line(tmp_path):
    broken = """[domain."a.test"]
banned_extensions = ["iso"]
[domain."b.test"]
banned_extensions = { extend = ["iso"] }
[domain."c.test"]
banned_extensions = { add = "iso" }
[domain."d.test"]
banned_extensions = { only = ["exe", "bad name"] }
[domain."e.test"]
banned_extensions = { add = ["iso"], only = ["js"] }
[domain."f.test".banned_extensions]
replace = ["js"]
"""
    with pytest.raises(PolicyError) as raised:
        policies_of(tmp_path, broken)
    lines = raised.value.lines
    assert len(lines) == 6, lines
    expected = [
        'line 2: [domain."a.test"] banned_extensions: must be { add = ["iso", "img"] } or',
        "line 4: [domain.\"b.test\"] banned_extensions: unknown sub-key 'extend'",
        'line 6: [domain."c.test"] banned_extensions: add must be a list of extensions',
        'line 8: [domain."d.test"] banned_extensions: only: not a file name extension',
        'line 10: [domain."e.test"] banned_extensions: add or only, not both',
        "line 11: [domain.\"f.test\"] banned_extensions: unknown sub-key 'replace'",
    ]
    for line, said in zip(lines, expected, strict=True):
        assert said in line, line


def _by_rcpt(decision: Decision) -> dict[str, Decision]:
    return {rcpt: part for members, part in decision.split for rcpt in members}


def test_an_added_extension_refuses_for_its_section_only(tmp_path):
    policies = policies_of(tmp_path, LISTS)
    av_said = names_verdict("report.pdf", "disk.iso")
    alone = decide_for_recipients(av_said, spam("ham", 0.0), SETTINGS, policies,
                                  "a@example.test", ("ann@adds.test",), True)  # fmt: skip
    assert alone.reply == "550 5.7.1 Message refused: banned attachment disk.iso"
    assert alone.policy == (
        "domain adds.test: banned attachment (banned_extensions add .iso): refused (pre-queue)"
    )
    both = decide_for_recipients(av_said, spam("ham", 0.0), SETTINGS, policies, "a@example.test",
                                 ("ann@adds.test", "bob@other.test"), True)  # fmt: skip
    assert both.reply == "250 2.0.0 Ok: 1 quarantined; 1 delivered"
    held, passed = _by_rcpt(both)["ann@adds.test"], _by_rcpt(both)["bob@other.test"]
    assert "X-Banned-Attachment: disk.iso (banned_extensions add .iso)" in held.header_lines
    assert held.reason == "banned disk.iso (banned_extensions add .iso)"
    assert (passed.action, passed.reason) == ("deliver", "clean")
    assert not any(line.startswith("X-Banned") for line in passed.header_lines)
    hidden = names_verdict("invoice.pdf.iso")
    double = decide_for_recipients(hidden, spam("ham", 0.0), SETTINGS, policies, "a@example.test",
                                   ("ann@adds.test",), True)  # fmt: skip
    assert double.reason.endswith("(banned_extensions add .iso (double extension .pdf.iso))")


def test_a_replaced_list_lets_through_what_only_the_global_list_bans(tmp_path):
    policies = policies_of(tmp_path, LISTS)
    exe = banned_verdict("tool.exe", "extension .exe", names=("tool.exe",), by_name=True)
    decided = decide_for_recipients(exe, spam("ham", 0.0), SETTINGS, policies, "a@example.test",
                                    ("ann@only.test", "bob@global.test"), True)  # fmt: skip
    assert decided.reply == "250 2.0.0 Ok: 1 delivered; 1 quarantined"
    assert _by_rcpt(decided)["ann@only.test"].reason == "clean"
    assert _by_rcpt(decided)["bob@global.test"].reason == "banned tool.exe (extension .exe)"
    js = banned_verdict("tool.exe", "extension .exe", names=("tool.exe", "a.zip/run.js"),
                        by_name=True)  # fmt: skip
    alone = decide_for_recipients(js, spam("ham", 0.0), SETTINGS, policies, "a@example.test",
                                  ("ann@only.test",), True)  # fmt: skip
    assert alone.reply == "550 5.7.1 Message refused: banned attachment a.zip/run.js"
    assert "banned_extensions only .js" in alone.policy


def test_a_ban_not_by_name_stands_whatever_the_sections_list(tmp_path):
    policies = policies_of(tmp_path, LISTS)
    for av_said in (
        banned_verdict("salaries.zip", "encrypted archive", names=("salaries.zip",)),
        banned_verdict("tool.exe", "extension .exe"),  # a pool that lists no names
    ):
        decided = decide_for_recipients(av_said, spam("ham", 0.0), SETTINGS, policies,
                                        "a@example.test", ("ann@only.test",), True)  # fmt: skip
        assert decided.action == "reject", av_said


def test_a_cut_list_of_names_is_refused_where_a_section_has_its_own_list(tmp_path):
    policies = policies_of(tmp_path, LISTS)
    cut = names_verdict("report.pdf", cut=True)
    decided = decide_for_recipients(cut, spam("ham", 0.0), SETTINGS, policies, "a@example.test",
                                    ("ann@only.test", "bob@global.test"), True)  # fmt: skip
    assert _by_rcpt(decided)["ann@only.test"].reason.startswith(f"banned {UNJUDGED}")
    assert _by_rcpt(decided)["bob@global.test"].action == "deliver"


def test_spam_is_awaited_unless_every_section_refuses_the_attachment(tmp_path):
    policies = policies_of(tmp_path, LISTS)
    exe = banned_verdict("tool.exe", "extension .exe", names=("tool.exe",), by_name=True)
    assert refuses_banned_for_all(exe, SETTINGS, policies, ("a@global.test", "b@x.test"))
    assert not refuses_banned_for_all(exe, SETTINGS, policies, ("a@global.test", "b@only.test"))
    iso = names_verdict("disk.iso")
    assert not refuses_banned_for_all(iso, SETTINGS, policies, ("a@x.test",))
    assert refuses_banned_for_all(iso, SETTINGS, policies, ("a@adds.test",))


def test_the_spam_job_may_skip_spamd_on_a_ban_only_when_no_policy_lets_one_pass(tmp_path):
    policies = policies_of(tmp_path)
    assert bans_settle_for_all(policies, ("ann@strict.test", "x@other.test"))
    assert not bans_settle_for_all(policies, ("ann@strict.test", "bob@lenient.test"))
    assert not bans_settle_for_all(policies, ("boss@strict.test",))  # a bypass


def test_a_virus_gets_one_decision_whatever_the_recipients_policies(tmp_path):
    policies = policies_of(tmp_path)
    rcpts = ("ann@strict.test", "bob@lenient.test", "boss@strict.test")
    virus, dropping = av("infected", "Eicar-Test"), replace(SETTINGS, post_queue_virus="discard")
    after = decide_for_recipients(virus, spam("ham", 0.0), dropping, policies, "a@example.test",
                                  rcpts, client_waiting=False)  # fmt: skip
    assert (after.action, after.reason, after.split) == ("discard", "virus Eicar-Test", ())
