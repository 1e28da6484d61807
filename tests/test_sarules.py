"""SpamAssassin's rule descriptions and scores as the message page shows them: read from
``describe`` and ``score`` lines, translations skipped, the score set spamd --local uses."""

from __future__ import annotations

from pathlib import Path

from mailserver.console.sarules import RuleHit, rule_book

RULES = """\
describe GTUBE\t\tGeneric Test for Unsolicited Bulk Email
lang nl describe GTUBE   Standaard test voor ongewenste bulk mail
score GTUBE 1000.000
describe MISSING_DATE Missing Date: header
score MISSING_DATE 1.4 1.2 1.1 1.0  # comment
describe NO_SCORE_LINE A rule with its default score
score BAYES_99 0 0 3.5 3.5
"""


def test_rules_get_their_description_and_the_score_of_the_set_in_use(tmp_path: Path):
    (tmp_path / "20_rules.cf").write_text(RULES)
    (tmp_path / "50_later.cf").write_text("score GTUBE 999\n")  # later files override
    book = rule_book(patterns=[str(tmp_path / "*.cf")])
    assert book.hits(["MISSING_DATE", "GTUBE", "NO_SCORE_LINE", "UNKNOWN_RULE"]) == [
        RuleHit("GTUBE", 999.0, "Generic Test for Unsolicited Bulk Email"),
        RuleHit("MISSING_DATE", 1.4, "Missing Date: header"),
        RuleHit("NO_SCORE_LINE", 1.0, "A rule with its default score"),
        RuleHit("UNKNOWN_RULE", None, ""),  # its name only
    ]
    with_bayes = book.hits(["MISSING_DATE", "BAYES_99"])
    assert [(h.name, h.score) for h in with_bayes] == [("BAYES_99", 3.5), ("MISSING_DATE", 1.1)]


def test_the_sites_own_lines_are_read_last():
    book = rule_book(["describe LOCAL_RULE Said by the site", "score LOCAL_RULE 2.5"], [])
    assert book.hits(["LOCAL_RULE"]) == [RuleHit("LOCAL_RULE", 2.5, "Said by the site")]
