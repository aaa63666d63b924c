"""What an optimization leaves behind: the answer's kernel, a Markdown report, a JSON summary.

The answer is the candidate the policy submitted, with the numbers of its final full
check; without an accepted submit, the fastest correct candidate the session measured
(a timed one beats an untimed one; without a GPU, the first verified-correct one). Only
what the trust rules (`tools/trust.py`) allow is an answer or a claimed speed: a flagged
attempt is listed with its flags, never handed back. `optimize` checks its answer at a
second size set first (agent/final_check.py): the report says whether it holds there.
`status` in the summary is the answer's status, or `none` when no candidate may be handed
back; `coverage` is what the policy said (its `Coverage:` line) about how much of the forward
its kernels compute and what stays in PyTorch. The report's analysis trail says each
paragraph once: a later turn that repeats one points back to the turn that said it.

    summary = write_outputs(Path("out"), state, session_id, device)
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

from agent.final_check import answer, checks_of, size_text
from agent.graph import attempts_of
from agent.policy import Attempt, has_analysis
from tools.device import DeviceInfo
from tools.files import write_atomic
from tools.records import EvalStatus
from tools.safe_text import clean
from tools.trust import Use, Versus, allowed, trusted_runtime_ms, trusted_speedup, why_not

ANALYSIS_CHARS = 3000
COVERAGE_CHARS = 800
COVERAGE = re.compile(r"^\W*coverage\W*:?\**\s*(.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Summary:
    status: str
    best_code_path: str | None
    speedup_vs_eager: float | None
    speedup_vs_compile: float | None
    runtime_ms: float | None
    turns: int
    session_id: str
    stop_reason: str | None
    submitted: bool
    attempts: int                       # the policy's (final checks are not counted)
    tokens: int
    gpu_seconds: float
    device: str
    mode: str
    report_path: str | None
    second_size: str | None = None      # the answer's check at a second size set, in words
    coverage: str | None = None         # the policy's `Coverage:` line for the answer: what runs in our kernels

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def summarize(state: dict, session_id: str, device: DeviceInfo, out: Path | None) -> Summary:
    best = answer(state)
    return Summary(
        status=best.status.value if best else "none",
        best_code_path=str(out / "best.py") if best and out else None,
        speedup_vs_eager=trusted_speedup(best, Versus.EAGER) if best else None,
        speedup_vs_compile=trusted_speedup(best, Versus.COMPILE) if best else None,
        runtime_ms=trusted_runtime_ms(best) if best else None,
        turns=state.get("turns", 0), session_id=session_id, stop_reason=state.get("stop"),
        submitted=state.get("submitted") is not None, attempts=len(attempts_of(state)) - len(checks_of(state)),
        tokens=state.get("tokens", 0), gpu_seconds=round(state.get("gpu_seconds", 0.0), 3),
        device=device.name, mode=device.mode.value, report_path=str(out / "report.md") if out else None,
        second_size=size_text(state, best) if best else None, coverage=coverage_of(state, best) if best else None)


def coverage_of(state: dict, attempt: Attempt) -> str | None:
    """What the policy said, on its last `Coverage:` line up to the attempt's turn, about how
    much of the forward its kernels compute and what stays in PyTorch (the turn format asks
    for it; a policy that never said is reported as such)."""
    said = [m.get("content") or "" for m in state.get("messages", []) if m["role"] == "assistant"][:attempt.turn]
    for text in reversed(said):
        lines = [m.group(1) for m in map(COVERAGE.match, clean(text).splitlines()) if m]
        if lines:
            return lines[-1].strip()[:COVERAGE_CHARS]
    return None


def closing_line(summary: Summary) -> str:
    """The one line a run ends with: why it stopped, the answer, how much of the forward it covers,
    and whether it holds at a second size."""
    speed = f", {summary.speedup_vs_eager:.2f}x vs eager" if summary.speedup_vs_eager is not None else (
        ", not timed" if summary.status != "none" else "")
    cover = f"; {summary.coverage.rstrip('.')}" if summary.coverage else (
        "; the policy did not say how much of the forward its kernels compute" if summary.status != "none" else "")
    handed = "" if summary.status == "none" or summary.submitted else ", not submitted by the policy"
    size = f"; {summary.second_size}" if summary.second_size else ""
    return f"stopped: {summary.stop_reason}; best: {summary.status}{speed}{handed}{cover}{size}"


def write_outputs(out: Path, state: dict, session_id: str, device: DeviceInfo) -> Summary:
    """best.py (if any), report.md and summary.json under `out`; written whole or not at all."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(state, session_id, device, out)
    chosen = answer(state)
    if chosen:
        _write(out / "best.py", chosen.code)
    _write(out / "report.md", markdown_report(state, summary))
    _write(out / "summary.json", json.dumps(summary.as_dict(), indent=1) + "\n")
    return summary


def _write(path: Path, text: str) -> None:
    write_atomic(path, text)     # a crash or a full disk mid-write leaves the whole old file


def markdown_report(state: dict, summary: Summary) -> str:
    problem = Path(state.get("problem_path", "?")).name
    lines = [f"# kernelpilot: {problem}", "",
             f"Session `{summary.session_id}` on {summary.device} ({summary.mode}); policy "
             f"{state.get('policy', {}).get('kind', '?')}; {_count(summary.turns, 'turn')}, stopped: "
             f"{summary.stop_reason}.", "", "## Result", "", result_line(summary), ""]
    if summary.status != "none":
        lines += [f"Coverage: {summary.coverage}" if summary.coverage else
                  "Coverage: the policy did not say how much of the forward its kernels compute.", ""]
    lines += ["## Attempts", "",
             "| turn | tool | status | runtime ms | vs eager | vs torch.compile | flags |",
             "|---:|---|---|---:|---:|---:|---|"]
    lines += [attempt_row(a) for a in attempts_of(state)]
    lines += flagged_note(attempts_of(state))
    lines += ["", "## Analysis trail", ""]
    seen: dict[str, int] = {}       # a paragraph -> the first turn that said it
    turn = 0
    for message in state.get("messages", []):
        if message["role"] == "assistant":
            turn += 1
            text = clean(message.get("content") or "")   # the policy's text, code included: no escapes in report.md
            refused = "" if has_analysis(text) else " (refused: no performance analysis)"
            lines += [f"### Turn {turn}{refused}", "", once(text.strip(), turn, seen)[:ANALYSIS_CHARS] or "_(no text)_",
                      ""]
    return "\n".join(lines) + "\n"


def once(text: str, turn: int, seen: dict[str, int]) -> str:
    """`text` with each paragraph an earlier turn already said replaced by a pointer to it
    (a policy that restates its analysis every turn fills the trail with copies); headings stay."""
    out, group = [], []             # group: the earlier turn of each paragraph in a run of repeats

    def flush() -> None:
        if group:
            out.append(f"_({_count(len(group), 'paragraph')} as in turn {group[0]})_")
            group.clear()

    for paragraph in text.split("\n\n"):
        first = seen.setdefault(paragraph.strip(), turn)
        if first == turn or paragraph.lstrip().startswith("#") or not paragraph.strip():
            flush()
            out.append(paragraph)
            continue
        if group and group[0] != first:
            flush()
        group.append(first)
    flush()
    return "\n\n".join(out)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def result_line(summary: Summary) -> str:
    if summary.status == "none":
        return "No correct kernel the trust rules allow was found; nothing is handed back."
    speed = (f"{summary.runtime_ms:.4g} ms, {summary.speedup_vs_eager:.2f}x vs eager"
             + (f", {summary.speedup_vs_compile:.2f}x vs torch.compile" if summary.speedup_vs_compile else "")
             if summary.speedup_vs_eager is not None else "not timed (correctness only)")
    submitted = "submitted after a final full check" if summary.submitted else "not submitted by the policy"
    slower = (" It is slower than eager PyTorch: keep the reference." if summary.speedup_vs_eager is not None
              and summary.speedup_vs_eager < 1 else "")
    sizes = f" Sizes: {summary.second_size}." if summary.second_size else ""
    return f"Best kernel: `best.py`, {summary.status}, {speed}; {submitted}.{slower}{sizes}"


def attempt_row(a: Attempt) -> str:
    number = lambda v, fmt: "" if v is None else format(v, fmt)
    return (f"| {a.turn} | {a.tool} | {a.status.value} | {number(trusted_runtime_ms(a), '.4g')} | "
            f"{number(trusted_speedup(a, Versus.EAGER), '.2f')} | "
            f"{number(trusted_speedup(a, Versus.COMPILE), '.2f')} | "
            f"{', '.join(a.flags)} |")


def flagged_note(attempts: list[Attempt]) -> list[str]:
    """Correct attempts the trust rules keep from being the answer, and why."""
    flagged = [f"turn {a.turn} ({a.tool}): {why_not(a, Use.BEST)}" for a in attempts
               if a.status is EvalStatus.CORRECT and not allowed(a, Use.BEST)]
    if not flagged:
        return []
    return ["", "Correct but not eligible as the answer (tools/trust.py): " + "; ".join(flagged) + "."]
