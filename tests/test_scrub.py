"""The scrubber: what leaves the server in a crash report holds no e-mail address, subject,
client IP or message body, however the crashdump carries them."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.crashes.scrub import BODY_MASK, EMAIL, IP_MASK, SUBJECT_MASK, scrubber_for
from tasks.crashes.scrub_text import HOST_MASK

SCRUB = scrubber_for(b"k" * 32)

addresses = st.emails()
filler = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="@"), max_size=12)


def _surround(address: str, before: str, after: str, style: int) -> str:
    """The ways an address turns up in a crashdump: bare, in a header line, in the repr of a
    str, bytes or list, in angle brackets, URL-encoded."""
    forms = [
        address,
        f"From: {address}",
        repr(address),
        repr(address.encode()),
        repr([address, address]),
        f"<{address}>",
        address.replace("@", "%40"),
        f"To: Someone <{address}>, other <{address}>",
    ]
    return f"{before}{forms[style % len(forms)]}{after}"


def _text_with(draw: st.DrawFn, found: list[str]) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        address = draw(addresses)
        found.append(address)
        style = draw(st.integers(0, 7))
        parts.append(_surround(address, draw(filler), draw(filler), style))
    return " ".join(parts)


@st.composite
def crashdumps_full_of_addresses(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    found: list[str] = []

    def text() -> str:
        return _text_with(draw, found)

    key = draw(addresses)
    found.append(key)
    dump = {
        "id": "0" * 32, "time": text(), "kind": text(), "pool": text(),
        "plugin": {"name": text(), "config": {"notify": text(), key: text()}},
        "worker": {"host": text(), "pid": 7}, "job_id": text(),
        "message": {"blob": text(), "size": 10, "envelope": {"mail_from": text(),
                                                          "rcpt_tos": [text(), text()]}},
        "exception": {"type": text(), "message": text()},
        "traceback": f'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
                     f"    to = {text()}\nRuntimeError: {text()}",
        "threads": text(), "faulthandler": text(), "signal": text(), "exit_status": None,
        "note": text(), "versions": {"python": text()}, "signature": text(),
    }  # fmt: skip
    return dump, found


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crashdumps_full_of_addresses())
def test_no_email_address_survives_in_any_field(generated):
    dump, planted = generated
    scrubbed = SCRUB.scrub(dump)
    text = json.dumps(scrubbed, ensure_ascii=False)
    for address in planted:
        local, _, domain = address.rpartition("@")
        for form in (address, f"{local}%40{domain}"):
            assert form not in text, f"{form!r} survived"
            assert form.lower() not in text.lower(), f"{form!r} survived in another case"
    for string in _strings(scrubbed):
        assert not EMAIL.search(string), f"something like an address is left in {string!r}"


def test_same_address_same_token_so_reports_can_be_correlated():
    first = SCRUB.text("failed for alice@example.test")
    again = SCRUB.text("again ALICE@example.test")
    other = scrubber_for(b"another secret that is long enough!").text("alice@example.test")
    token = re.search(r"\[email-[0-9a-f]{12}\]", first)[0]
    assert token in again
    assert token not in other  # keyed: without the console secret nobody can recompute it


def test_subjects_and_client_ips_are_masked():
    scrubbed = SCRUB.scrub(
        {
            "note": "Subject: Quarterly results\nReceived: from mx ([203.0.113.9])",
            "traceback": "    meta = {'subject': 'Our merger', 'peer_ip': '2001:db8::7'}",
            "message": {"subject": "Board minutes", "peer_ip": "198.51.100.4"},
            "exception": {"message": "b'Subject: Layoffs\\r\\nX-A: 1'"},
            "locals": "failed on 2001:db8::8 after RuntimeError: Subject: Closing the plant",
        }
    )
    text = json.dumps(scrubbed)
    for secret in ("Quarterly", "merger", "Board minutes", "Layoffs", "203.0.113.9",
                   "2001:db8::7", "198.51.100.4", "2001:db8::8", "Closing"):  # fmt: skip
        assert secret not in text
    assert scrubbed["note"] == "Subject: [subject removed]\nReceived: [value removed]"
    assert scrubbed["message"] == {"subject": SUBJECT_MASK, "peer_ip": IP_MASK}
    assert scrubbed["locals"] == f"failed on {IP_MASK} after RuntimeError: Subject: {SUBJECT_MASK}"


@pytest.mark.parametrize(
    "written",
    [
        '"a quoted local part that runs on for well over sixty-four characters"@example.test',
        "alice@\r\n example.test",  # a folded header
        "alice\n@example.test",
        "alice@exam=\r\nple.test",  # a quoted-printable soft line break
        "alice%40example.test",
        "alice%2540example.test",
        "alice&#64;example.test",
        "alice&#x40;example.test",
        "alice\\x40example.test",
        "alice\\u0040example.test",
        "alice\uff20example.test",
        repr("alice\uff20example.test".encode()),
    ],
)
def test_addresses_in_every_written_form_become_tokens(written):
    scrubbed = SCRUB.text(f"rejected {written} at the edge")
    assert scrubbed.startswith("rejected ")
    assert "[email-" in scrubbed
    for part in ("alice", "sixty-four", "example"):
        assert part not in scrubbed


def test_a_header_block_of_any_names_keeps_names_and_loses_content():
    part = (
        'Content-Type: application/pdf; name="Merger plan.pdf"\r\n'
        'Content-Disposition: attachment; filename="Merger plan.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZUR\r\n"
    )
    for shown in (f"bad part:\n{part}", repr(part), repr(part.encode())):
        scrubbed = SCRUB.text(f"{shown}\nafter")
        assert "Merger" not in scrubbed
        assert "JVBERi0" not in scrubbed
        assert BODY_MASK in scrubbed
    plain = SCRUB.text(f"bad part:\n{part}")
    assert plain.startswith("bad part:\nContent-Type: [value removed]\r\n")
    headers_only = SCRUB.text("X-Customer: Initech\nX-Campaign: Spring")
    assert headers_only == "X-Customer: [value removed]\nX-Campaign: [value removed]"


def test_subjects_in_tuples_bytes_keys_and_arguments_are_masked():
    texts = [
        repr([("From", "a"), ("Subject", "Quarterly results")]),
        repr({b"subject": b"Quarterly results"}),
        repr(repr({"Subject": "Quarterly results"})),
        "send(to=x, subject='Quarterly results')",
        "subject=Quarterly results, size=3",
        "Thread-Topic: Quarterly\r\n results",
    ]
    for text in texts:
        assert "Quarterly" not in SCRUB.text(text), text
        assert "results" not in SCRUB.text(text), text
    structured = SCRUB.scrub({"headers": [("Subject", "Quarterly"), (b"subject", b"results")]})
    assert structured == {"headers": [["Subject", SUBJECT_MASK], ["subject", SUBJECT_MASK]]}
    assert SCRUB.scrub({b"subject": b"Quarterly"}) == {"subject": SUBJECT_MASK}


def test_host_names_attachment_names_and_scanner_output_are_masked():
    scrubbed = SCRUB.text(
        "connect to mx7.corp.example.com:25 failed, see https://relay.example.org/q "
        "for payroll-2024.xlsx\nScanError: scanner exited with 2: /tmp/m/message.eml/"
        "Bonus list.docx: Heuristics.Encrypted FOUND\n"
    )
    for secret in ("mx7", "corp.example", "relay.example", "payroll", "Bonus", "Heuristics"):
        assert secret not in scrubbed
    assert "scanner exited with 2: [scanner output removed]" in scrubbed
    assert SCRUB.scrub({"worker": {"host": "av@mx1", "pid": 7}}) == {
        "worker": {"host": HOST_MASK, "pid": 7}
    }


def test_anything_that_looks_like_a_message_body_is_dropped():
    raw = (
        "From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: plans\n\n"
        "The launch is on Friday. Tell nobody.\n"
    )
    escaped = repr(raw.replace("\n", "\r\n").encode())
    scrubbed = SCRUB.scrub(
        {
            "note": "while scanning:\n" + raw,
            "traceback": f'  File "chaos.py", line 9, in scan\n    message = {escaped}\n',
            "content": "plain words that are a body by their field's name",
            "locals": {"body": "Tell nobody."},
        }
    )
    text = json.dumps(scrubbed)
    assert "launch" not in text
    assert "Tell nobody" not in text
    assert "by their field" not in text
    assert scrubbed["note"].startswith("while scanning:\n")
    assert BODY_MASK in scrubbed["note"]
    assert BODY_MASK in scrubbed["traceback"]
    assert 'File "chaos.py", line 9, in scan' in scrubbed["traceback"]  # the frame stays


def test_what_helps_the_vendor_is_kept():
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/srv/mailscan/tasks/plugins/chaos.py", line 88, in fail\n'
        '    raise RuntimeError("chaos: injected plugin failure")\n'
        "RuntimeError: chaos: injected plugin failure at 10:00:00 (python 3.11.2)\n"
    )
    assert SCRUB.text(traceback) == traceback


def test_an_address_folded_in_the_repr_of_a_repr_is_masked():
    """A traceback's repr of an exception's arguments doubles the backslashes of a folded
    header line: the local part must not stay behind."""
    text = "RuntimeError: (\"{'rcpt': 'h0000000@\\\\r\\\\n g0000000.example.test'}\",)"
    scrubbed = SCRUB.text(text)
    assert "h0000000" not in scrubbed
    assert re.search(r"\[email-[0-9a-f]{12}\]", scrubbed)
