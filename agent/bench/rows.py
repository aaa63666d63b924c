"""A batch run's records: one typed `BenchRow` per finished problem in DIR/results.jsonl, and
the sessions it started in DIR/started.jsonl (so a run killed mid-problem resumes that
session from its checkpoint instead of starting the problem again).

Both files are append-only JSON lines, each line flushed and fsynced before the run goes
on, so `kill -9` at any moment loses at most the line being written; a torn last line is
ignored when read.

    log = RunLog(Path("out"))
    done = log.finished()          # {problem key: BenchRow}
    log.started("L2/19_...", "s-1a2b")
    log.finish(row)
"""
import json
import os
import threading
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path

from tools.records import EvalStatus
from tools.trust import Use, rules_out

RESULTS, STARTED = "results.jsonl", "started.jsonl"

# A problem's outcome: its answer's status, the last evaluation's status when no kernel may
# be handed back, NO_KERNEL when the policy evaluated nothing, FAILED when the run could not
# finish the problem (a bad file, the trusted side out of memory, an endpoint that is down).
RowStatus = StrEnum("RowStatus", [(s.name, s.value) for s in EvalStatus]
                    + [("NO_KERNEL", "no_kernel"), ("FAILED", "failed")])


@dataclass(frozen=True)
class BenchRow:
    key: str                                    # the problem's place in the run: "L2/19_ConvTranspose2d_..." or its stem
    level: int | None                           # KernelBench level; None outside KernelBench
    name: str                                   # the problem file's stem
    status: RowStatus
    speedup_vs_eager: float | None = None       # the answer's, as the trust rules allow (None: untimed or not believed)
    speedup_vs_compile: float | None = None
    runtime_ms: float | None = None
    flags: tuple[str, ...] = ()                 # the answer's flags (or the last evaluation's)
    turns: int = 0
    attempts: int = 0
    tokens: int = 0
    gpu_seconds: float = 0.0
    session: str | None = None                  # its evaluations are in the history store under this id
    stop: str | None = None                     # the graph's stop reason
    reason: str = ""                            # why no kernel counts (a failure, a flag, an exception)
    policy: str = ""
    model: str | None = None
    seconds: float = 0.0                        # wall-clock time of the problem
    outputs: str | None = None                  # the problem's folder (best.py, report.md, summary.json), relative to DIR
    lane: str = ""                              # where it ran: "host/pid device" (agent/bench/lanes.py)
    timed: bool | None = None                   # its lane timed kernels (a GPU, not --untimed); None: a row from before

    def __post_init__(self):
        object.__setattr__(self, "status", RowStatus(self.status))     # a status outside the enum is refused
        object.__setattr__(self, "flags", tuple(self.flags))

    @property
    def counted(self) -> bool:
        """Correct and allowed in metrics by the trust rules (tools/trust.py)."""
        return self.status is RowStatus.CORRECT and not rules_out(self.flags, Use.METRICS)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_dict(saved: dict) -> "BenchRow":
        known = {f.name for f in fields(BenchRow)}
        return BenchRow(**{k: v for k, v in saved.items() if k in known})


class RunLog:
    """DIR/results.jsonl and DIR/started.jsonl, written by one run (its workers share it)."""

    def __init__(self, out: Path):
        self.out = out
        self._lock = threading.Lock()

    def finished(self) -> dict[str, BenchRow]:
        return {row["key"]: BenchRow.from_dict(row) for row in _read(self.out / RESULTS)}

    def sessions(self) -> dict[str, str]:
        """{problem key: the session started for it}, the latest per key."""
        return {entry["key"]: entry["session"] for entry in _read(self.out / STARTED)}

    def started(self, key: str, session: str) -> None:
        self._append(STARTED, json.dumps({"key": key, "session": session}))

    def finish(self, row: BenchRow) -> None:
        self._append(RESULTS, row.to_json())

    def _append(self, name: str, line: str) -> None:
        with self._lock:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / name, "a") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())


def _read(path: Path) -> list[dict]:
    """The complete lines of a JSON-lines file; a torn last line (a kill mid-write) is skipped."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries
