"""The message sets of the suite: a seeded generator of realistic mail, the real SpamAssassin
public corpus, and messages of a given size.

Every message a phase sends is new content. clamd caches clean results by the content of the
stream and of each part it extracts, and mailscan's own AV verdict cache is keyed by the body:
a repeated body would be a cache hit on one path and a scan on the other. A ``Sample`` is
therefore a recipe: ``sample.render(copy_id)`` gives the bytes of one copy, with the
``X-Bench-Id: <copy_id>`` header the Maildir check looks for.
"""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import mime

# Share of each kind in the generated corpus ("a few per cent" spam, viruses and broken MIME).
KIND_SHARES = {
    "plain": 0.38,
    "html": 0.22,
    "reply": 0.14,
    "attachment": 0.18,
    "spam": 0.03,
    "virus": 0.02,
    "malformed": 0.03,
}
ATTACHMENT_TYPES = (("pdf", 0.40), ("image", 0.35), ("zip", 0.25))
TEXT_MEDIAN_BYTES, TEXT_SIGMA, TEXT_RANGE = 3_000, 0.9, (300, 150_000)
ATTACHMENT_MEDIAN_BYTES, ATTACHMENT_SIGMA = 60_000, 1.3
ATTACHMENT_RANGE = (2_000, 4_000_000)  # "some attachments up to a few MB"
REAL_FOLDERS = ("nice", "spam")
SIZE_OVERHEAD_BYTES = 1_500  # headers and the short text part of a sized message


@dataclass(frozen=True)
class Sample:
    source: str  # "gen/0042" or "nice/001.eml" or "size/10000"
    kind: str  # a KIND_SHARES key, "real-nice", "real-spam" or "sized"
    render: Callable[[str], bytes]  # copy id -> CRLF bytes of a new copy


def generated(count: int, seed: int) -> list[Sample]:
    """``count`` messages whose kinds and sizes depend only on ``seed``."""
    rng = random.Random(f"corpus:{seed}")
    kinds = exact_mix(count, rng)
    specs = [_spec(index, kind, rng) for index, kind in enumerate(kinds)]
    return [
        Sample(f"gen/{s.index:04d}", s.kind, functools.partial(mime.render, s, seed)) for s in specs
    ]


def exact_mix(count: int, rng: random.Random) -> list[str]:
    """Kinds in their shares, rounded by largest remainder, in a seeded order."""
    quotas = {kind: count * share for kind, share in KIND_SHARES.items()}
    counts = {kind: math.floor(q) for kind, q in quotas.items()}
    by_remainder = sorted(quotas, key=lambda k: counts[k] - quotas[k])
    for kind in by_remainder[: count - sum(counts.values())]:
        counts[kind] += 1
    kinds = [kind for kind, n in counts.items() for _ in range(n)]
    rng.shuffle(kinds)
    return kinds


def _spec(index: int, kind: str, rng: random.Random) -> mime.Spec:
    text = _lognormal(rng, TEXT_MEDIAN_BYTES, TEXT_SIGMA, TEXT_RANGE)
    attachments: tuple[tuple[str, int], ...] = ()
    if kind in ("attachment", "malformed"):
        many = 2 if rng.random() < 0.3 else 1
        attachments = tuple((_attachment_type(rng), _attachment_size(rng)) for _ in range(many))
    return mime.Spec(index, kind, text, attachments, variant=rng.randrange(1000))


def _attachment_type(rng: random.Random) -> str:
    names, weights = zip(*ATTACHMENT_TYPES, strict=True)
    return rng.choices(names, weights)[0]


def _attachment_size(rng: random.Random) -> int:
    return _lognormal(rng, ATTACHMENT_MEDIAN_BYTES, ATTACHMENT_SIGMA, ATTACHMENT_RANGE)


def _lognormal(rng: random.Random, median: float, sigma: float, bounds: tuple[int, int]) -> int:
    value = int(rng.lognormvariate(math.log(median), sigma))
    return max(bounds[0], min(bounds[1], value))


def real(folder: Path) -> list[Sample]:
    """The real mail under ``folder``/{nice,spam}/*.eml, only read."""
    files = sorted(p for sub in REAL_FOLDERS for p in (folder / sub).glob("*.eml"))
    if not files:
        raise SystemExit(f"bench: no *.eml under {folder}/{{{','.join(REAL_FOLDERS)}}}")
    return [
        Sample(f"{p.parent.name}/{p.name}", f"real-{p.parent.name}", _real_copies(p)) for p in files
    ]


def _real_copies(path: Path) -> Callable[[str], bytes]:
    data = crlf(path.read_bytes())
    return functools.partial(unique_copy, data)


def unique_copy(data: bytes, copy_id: str) -> bytes:
    """Real mail made new: our header on top and one line at the end of the body (after the
    last boundary, in a multipart message), so that no verdict cache keyed by the body hits."""
    return b"X-Bench-Id: %s\r\n%sbench-copy %s\r\n" % (copy_id.encode(), data, copy_id.encode())


def crlf(data: bytes) -> bytes:
    data = re.sub(rb"\r?\n", b"\r\n", data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def sized(target_bytes: int, seed: int) -> Sample:
    """A short text and one PDF-like attachment, about ``target_bytes`` in all."""
    raw = max(1_000, int((target_bytes - SIZE_OVERHEAD_BYTES) / mime.BASE64_GROWTH))
    spec = mime.Spec(target_bytes, "sized", 600, (("pdf", raw),), variant=0)
    return Sample(f"size/{target_bytes}", "sized", functools.partial(mime.render, spec, seed))


def repeated(samples: list[Sample], count: int) -> list[Sample]:
    """``count`` samples, the set taken in order and repeated as needed."""
    return [samples[i % len(samples)] for i in range(count)]
