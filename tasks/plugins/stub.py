"""A stand-in scanner for unit tests and the glue-only benchmark: no daemon, no I/O.

In the av pool it finds the EICAR string, in the spam pool the GTUBE string, so a test
or a benchmark through the stub still sees all the outcomes a real scanner gives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from tasks.plugins.base import Message, Plugin, Verdict

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@dataclass
class StubPlugin(Plugin):
    """Looks for the standard test strings; fast and predictable."""

    name: ClassVar[str] = "stub"
    pools: ClassVar[tuple[str, ...]] = ("av", "spam")

    def scan(self, message: Message) -> Verdict:
        started = time.perf_counter()
        if self.pool == "av":
            if EICAR in message:
                return self.verdict("infected", started, virus="Stub.Test.EICAR")
            return self.verdict("clean", started)
        if GTUBE in message:
            return self.verdict("spam", started, score=1000.0, threshold=5.0, rules=("GTUBE",))
        return self.verdict("ham", started, score=0.0, threshold=5.0)
