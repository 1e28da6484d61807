"""The one word the message log keeps for what the scans found, which its searches use
(`mailscan messages --verdict ...`)."""

import pytest

from mailserver.messagelog.record import VERDICTS, content_verdict
from tasks.wire.verdicts import PoolVerdict


def av(status):
    return PoolVerdict("av", status)


def spam(status):
    return PoolVerdict("spam", status)


@pytest.mark.parametrize(
    ("results", "word"),
    [
        ({"av": av("clean"), "spam": spam("clean")}, "clean"),
        ({"av": av("clean"), "spam": spam("spam")}, "spam"),
        ({"av": av("infected"), "spam": spam("spam")}, "virus"),
        ({"av": av("banned"), "spam": None}, "banned"),
        ({"av": av("error"), "spam": spam("clean")}, "failed"),
        ({"av": None, "spam": None}, "failed"),
    ],
)
def test_each_outcome_is_logged_under_the_word_a_search_asks_for(results, word):
    assert content_verdict(results) == word
    assert word in VERDICTS
