"""Hack cases: the candidates that tried to earn what they did not, kept with their mechanism.

Every evaluation is in the history store with its candidate's source, so nothing needs
copying: a hack case is a stored evaluation whose verdict is `rejected` (a forbidden
construct, a caught cheat) or that carries a flag of the candidate's doing
(`tools.trust.CANDIDATES_DOING`: timing_mismatch, no_custom_kernel, precision_policy,
excessive_speedup, size_specialised). Training reads them as negative examples (`hack_cases`); a person
reviews them as new cheat fixtures (`export`, in the shape of tests/cheats/).

    kernelpilot history hacks [--limit N] [--json] [--export DIR]
"""
import re
from dataclasses import dataclass
from pathlib import Path

from tools.history import EvaluationRecord, HistoryStore
from tools.records import EvalStatus
from tools.trust import CANDIDATES_DOING


@dataclass(frozen=True)
class HackCase:
    record: EvaluationRecord        # the stored evaluation, the candidate's source included
    mechanism: str                  # how it was caught: the reason of a rejection, or the flags

    @property
    def name(self) -> str:
        """A fixture's file name: hack_<problem>_<evaluation id>."""
        return f"hack_{re.sub(r'[^0-9A-Za-z_]', '_', self.record.problem)}_{self.record.id}"


def hack_cases(store: HistoryStore, limit: int | None = None) -> list[HackCase]:
    """The store's hack cases, newest first."""
    found = store.records(limit=limit, with_source=True, statuses=[EvalStatus.REJECTED.value],
                          flags=[f.value for f in CANDIDATES_DOING])
    return [HackCase(record, mechanism(record)) for record in found]


def own_flags(record: EvaluationRecord) -> list[str]:
    """The record's flags of the candidate's own doing, in name order."""
    return sorted(set(record.flags) & {f.value for f in CANDIDATES_DOING})


def mechanism(record: EvaluationRecord) -> str:
    caught = own_flags(record)
    if record.status is EvalStatus.REJECTED:
        return f"rejected: {record.reason}"
    return f"{record.status.value}, flagged {', '.join(caught)}" + (f": {record.reason}" if record.reason else "")


def export(store: HistoryStore, cases: list[HackCase], folder: Path) -> list[Path]:
    """Each case as DIR/NAME.py (the candidate under a tests/cheats-style header saying what
    verdict it earned and why) beside DIR/NAME_problem.py (its problem); for review before a
    case joins tests/cheats/ with an honest twin."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in cases:
        problem = store.problem_source(case.record.problem_hash)
        (folder / f"{case.name}_problem.py").write_text(problem or "# the problem's source is not in the store\n")
        path = folder / f"{case.name}.py"
        path.write_text(header(case) + (case.record.source or ""))
        written.append(path)
    return written


def header(case: HackCase) -> str:
    r = case.record
    caught = own_flags(r)
    lines = [f"# expect: {r.status.value}",
             *([f"# reason: {first_words(r.reason)}"] if r.status is not EvalStatus.CORRECT else []),
             *([f"# flags: {','.join(caught)}"] if r.status is EvalStatus.CORRECT else []),
             f"# problem: {case.name}_problem",
             f"# gpu-only: {'yes' if r.mode == 'gpu' else 'no'}",
             "# twin: (write its honest near-twin before this joins tests/cheats/)",
             f"# caught: {case.mechanism[:300]}",
             f"# from: evaluation {r.id}, session {r.session}, policy {r.policy}, model {r.model}, {r.created}"]
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def first_words(reason: str, words: int = 6) -> str:
    """The start of a reason, as a fixture header names what its verdict's reason must contain."""
    return " ".join(reason.split()[:words])
