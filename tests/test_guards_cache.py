"""The verdict cache guard: an av engine's verdict on some content is served for every copy
of that content while the engine's signatures stay the same."""

from tasks.guards.cache import VerdictCacheGuard
from tests.conftest import EICAR
from tests.guards_redis import MESSAGE, details


def copy_to(rcpt, body=b"Hello.\r\n"):
    """One copy of a bulk mailing: its own To header, the same content."""
    return MESSAGE.split(b"\r\n\r\n")[0].replace(b"bob@", rcpt.encode() + b"@") + b"\r\n\r\n" + body


def cached(pool_process, pool="av", identity="stub sigs 1"):
    engine = pool_process.start(pool, VerdictCacheGuard())
    engine.identity = identity
    return engine


def test_a_copy_of_scanned_content_is_answered_without_the_engine(pool_process):
    engine = cached(pool_process)
    assert details(pool_process.scan(pool_process.store(copy_to("ann")))) == [""]
    result = pool_process.scan(pool_process.store(copy_to("bea")))
    assert (result.status, details(result)) == ("clean", ["cached"])
    assert engine.scans == 1


def test_a_cached_virus_is_still_the_virus(pool_process):
    engine = cached(pool_process)
    pool_process.scan(pool_process.store(copy_to("ann", EICAR)))
    result = pool_process.scan(pool_process.store(copy_to("bea", EICAR)))
    assert (result.status, details(result)) == ("infected", ["cached"])
    assert result.engines[0].virus == "Stub.Test.EICAR"
    assert engine.scans == 1


def test_other_content_and_new_signatures_are_scanned(pool_process):
    engine = cached(pool_process)
    pool_process.scan(pool_process.store(copy_to("ann")))
    pool_process.scan(pool_process.store(copy_to("ann", b"Other news.\r\n")))
    engine.identity = "stub sigs 2"
    pool_process.scan(pool_process.store(copy_to("bea")))
    assert engine.scans == 3


def test_spam_verdicts_and_uncacheable_engines_are_never_cached(pool_process):
    for pool, identity in (("spam", "stub sigs 1"), ("av", None)):
        engine = cached(pool_process, pool, identity)
        pool_process.scan()
        pool_process.scan()
        assert engine.scans == 2


def test_an_engine_that_could_not_judge_is_asked_again(pool_process):
    engine = cached(pool_process)
    engine.answers = "error"
    pool_process.scan()
    engine.answers = None
    assert details(pool_process.scan()) == [""]
    assert engine.scans == 2


def test_a_job_from_before_the_front_sent_content_keys_uses_the_cache(pool_process):
    engine = cached(pool_process)
    for _ in range(2):
        ref = pool_process.store()
        del ref["content"]
        result = pool_process.scan(ref)
    assert details(result) == ["cached"]
    assert engine.scans == 1
