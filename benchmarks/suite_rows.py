"""The built-in suite runner's rows (one typed record per problem, kept as JSON lines) and
the Markdown tables made from them. Pure: no GPU, no sandbox.

    rows = read_log(Path("OUT/builtin.jsonl"))
    print(report(rows, files))
"""
import json
import statistics
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from tools.problems import ProblemFile
from tools.records import EvalStatus
from tools.trust import Use, rules_out


# A problem's outcome: its best evaluation's status (every EvalStatus, so the two cannot
# drift), or why there was none: UNSUPPORTED, the built-in policy has no plan and nothing
# was evaluated; FAILED, the run could not finish the problem (see SuiteRow.error).
RowStatus = StrEnum("RowStatus", [(s.name, s.value) for s in EvalStatus]
                    + [("UNSUPPORTED", "unsupported"), ("FAILED", "failed")])


@dataclass(frozen=True)
class SuiteRow:
    level: int | None                           # KernelBench level; None for our suite
    name: str                                   # the problem file's stem
    status: RowStatus
    size: str = "full"
    supported: bool = True                      # the built-in policy has a plan for the problem
    session: str | None = None                  # the agent session (its evaluations are in the history store)
    stop: str | None = None                     # the graph's stop reason
    evaluations: int = 0
    statuses: tuple[str, ...] = ()              # each evaluation's status, in order
    best_ms: float | None = None                # the best correct kernel (timed), as the agent chose it
    best_vs_eager: float | None = None
    best_vs_compile: float | None = None
    best_flags: tuple[str, ...] = ()
    best_kernel: str | None = None              # sha256 of its source, first 16 hex digits
    submitted_vs_eager: float | None = None     # the answer: the accepted submit's final check
    submitted_vs_compile: float | None = None
    kept_in_torch: tuple[str, ...] = ()         # the plan's stages left in PyTorch
    reason: str = ""                            # why unsupported, or the first failing evaluation's reason
    error: str | None = None                    # the run could not finish the problem (the trusted side failed)
    seconds: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "status", RowStatus(self.status))     # a status outside the enum is refused

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_dict(saved: dict) -> "SuiteRow":
        saved = _upgraded(saved)
        known = {f.name for f in fields(SuiteRow)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
        return SuiteRow(**values)

    @property
    def counted(self) -> bool:
        """A correct, timed kernel the trust rules count in metrics (tools/trust.py; what fast_p counts).
        A log written before the rules keeps its flags, so a flagged best there is not counted either."""
        return self.best_ms is not None and not rules_out(self.best_flags, Use.METRICS)


def _upgraded(saved: dict) -> dict:
    """A row as written before SuiteRow (no `status`; the reason in `unsupported`, a check's
    flags in `flags`) in today's names, so earlier runs still report and resume."""
    old = dict(saved)
    if "unsupported" in old:
        old.setdefault("reason", old.pop("unsupported") or "")
    if "flags" in old:
        old.setdefault("best_flags", old.pop("flags") or [])
    if "status" not in old:
        old["status"] = ("unsupported" if old.get("supported") is False else "failed" if old.get("error") else
                         "correct" if old.get("best_ms") is not None else (old.get("statuses") or ["failed"])[-1])
    if old["status"] not in set(RowStatus):         # the old check's "not loadable: <why>"
        old["error"], old["status"] = old.get("error") or old["status"], RowStatus.FAILED
    return old


def read_log(path: Path) -> list[SuiteRow]:
    if not path.exists():
        return []
    return [SuiteRow.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def write_row(log: TextIO, row: SuiteRow) -> None:
    log.write(row.to_json() + "\n")
    log.flush()


def failure_row(f: ProblemFile, size: str, error: Exception) -> SuiteRow:
    """A problem the run could not finish (e.g. the trusted side ran out of GPU memory): no
    kernel counts for it, and the reason is kept for the report."""
    return SuiteRow(level=f.level, name=f.path.stem, status=RowStatus.FAILED, size=size,
                    error=f"{type(error).__name__}: {str(error)[:300]}")


def report(rows: list[SuiteRow], files: list[ProblemFile], device: str = "") -> str:
    """One table per level over every selected problem, then its summary line."""
    by_key = {(r.level, r.name): r for r in rows}
    parts = [f"Device: {device}" if device else "From the run's log."]
    for level in sorted({f.level for f in files}, key=lambda v: (v is None, v)):
        chosen = [f for f in files if f.level == level]
        lines = ["", f"Level {level}" if level is not None else "Suite",
                 "| problem | evals | best vs eager | best vs compile | answer (vs eager) | note |", "|---|---|---|---|---|---|"]
        lines += [_row(f.path.stem, by_key.get((level, f.path.stem))) for f in chosen]
        parts += lines + ["", summary([by_key.get((level, f.path.stem)) for f in chosen])]
    return "\n".join(parts)


def check_report(rows: list[SuiteRow], files: list[ProblemFile]) -> str:
    """A correctness-only log (first kernel, nothing timed): one table per level, then a count."""
    by_key = {(r.level, r.name): r for r in rows}
    parts = ["", "Correctness check (first kernel, nothing timed)"]
    for level in sorted({f.level for f in files}, key=lambda v: (v is None, v)):
        chosen = [f for f in files if f.level == level]
        found = [by_key.get((level, f.path.stem)) for f in chosen]
        if not any(found):
            continue
        lines = ["", f"Level {level}" if level is not None else "Suite", "| problem | status | flags | reason |",
                 "|---|---|---|---|"]
        for f, r in zip(chosen, found):
            status = r.status if r else "not run"
            lines.append(f"| {f.path.stem} | {status[:90]} | {', '.join(r.best_flags if r else ())} | "
                         f"{(r.error or r.reason if r else '')[:90]} |")
        correct = sum(1 for r in found if r and r.status is RowStatus.CORRECT)
        parts += lines + ["", f"{sum(1 for r in found if r)}/{len(found)} checked; a correct kernel on "
                              f"{correct}/{len(found)} ({correct / max(len(found), 1):.0%})"]
    return "\n".join(parts)


def _row(name: str, r: SuiteRow | None) -> str:
    if r is None:
        return f"| {name} | - | - | - | - | not run |"
    if not r.supported:
        return f"| {name} | 0 | - | - | - | unsupported: {r.reason[:90]} |"
    answer = f"{r.submitted_vs_eager:.2f}x" if r.submitted_vs_eager else "none"
    note = ", ".join(r.best_flags) or ("" if r.best_ms else "no correct kernel: "
                                       + (r.error or ",".join(r.statuses))[:120])
    note += f"; kept in PyTorch: {', '.join(r.kept_in_torch)}" if r.kept_in_torch else ""
    eager, compiled = (r.best_vs_eager, r.best_vs_compile) if r.counted else (None, None)
    return (f"| {name} | {r.evaluations} | {fmt(eager)} | {fmt(compiled)} | "
            f"{answer} | {note.strip('; ')} |")


def summary(rows: list[SuiteRow | None]) -> str:
    n = len(rows)
    correct = [r for r in rows if r and r.counted]
    eager = [r.best_vs_eager for r in correct if r.best_vs_eager]
    compiled = [r.best_vs_compile for r in correct if r.best_vs_compile]
    run = sum(1 for r in rows if r)
    return (f"{run}/{n} run; correct kernel on {len(correct)}/{n} ({len(correct) / max(n, 1):.0%}); "
            f"fast_1 vs eager {sum(s > 1 for s in eager)}/{n}, vs torch.compile {sum(s > 1 for s in compiled)}/{n}; "
            f"geomean of the best correct kernels {fmt(eager and statistics.geometric_mean(eager))}x vs eager, "
            f"{fmt(compiled and statistics.geometric_mean(compiled))}x vs torch.compile")


def fmt(value) -> str:
    return f"{value:.2f}" if value else "-"
