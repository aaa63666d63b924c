"""A stopwatch for the phases of one evaluation (`tools/records.py` PhaseSeconds): wall
seconds per phase, measured with time.perf_counter on the trusted side.

    clock = Stopwatch()
    with clock.phase("load"):
        ...                         # a phase entered inside another counts towards the outer one
    clock.record(lock_held=0.2)     # PhaseSeconds

Phases never overlap: one entered while another runs (the audit's own worker and trials,
inside "audit") adds nothing of its own, so the record's phases sum to at most the wall time.
"""
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tools.records import PhaseSeconds


class Stopwatch:
    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._depth = 0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in PhaseSeconds.PHASES:
            raise KeyError(f"no evaluation phase {name!r} (tools/records.py PhaseSeconds.PHASES)")
        start = time.perf_counter()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def record(self, lock_held: float = 0.0) -> PhaseSeconds:
        return PhaseSeconds(**self.seconds, lock_held=lock_held)
