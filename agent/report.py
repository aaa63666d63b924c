"""What an optimization leaves behind: the answer's kernel, a Markdown report, a JSON summary.

The answer is the candidate the policy submitted, with the numbers of its final full
check; without an accepted submit, the fastest correct candidate the session measured
(a timed one beats an untimed one; without a GPU, the first verified-correct one). Only
what the trust rules (`tools/trust.py`) allow is an answer or a claimed speed: a flagged
attempt is listed with its flags, never handed back. `optimize` checks its answer at a
second size set first (agent/final_check.py): the report says whether it holds there.
`status` in the summary is the answer's status, or `none` when no candidate may be handed back.

    summary = write_outputs(Path("out"), state, session_id, device)
"""
import json
from dataclasses import dataclass
from pathlib import Path

from agent.final_check import answer, checks_of, size_text
from agent.graph import attempts_of
from agent.policy import Attempt, has_analysis
from tools.device import DeviceInfo
from tools.records import EvalStatus
from tools.safe_text import clean
from tools.trust import Use, Versus, allowed, trusted_runtime_ms, trusted_speedup, why_not

ANALYSIS_CHARS = 3000


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
        second_size=size_text(state, best) if best else None)


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
    # A crash or a full disk mid-write must not leave a half file where a whole one was.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def markdown_report(state: dict, summary: Summary) -> str:
    problem = Path(state.get("problem_path", "?")).name
    lines = [f"# kernelpilot: {problem}", "",
             f"Session `{summary.session_id}` on {summary.device} ({summary.mode}); policy "
             f"{state.get('policy', {}).get('kind', '?')}; {summary.turns} turns, stopped: {summary.stop_reason}.", "",
             "## Result", "", result_line(summary), "", "## Attempts", "",
             "| turn | tool | status | runtime ms | vs eager | vs torch.compile | flags |",
             "|---:|---|---|---:|---:|---:|---|"]
    lines += [attempt_row(a) for a in attempts_of(state)]
    lines += flagged_note(attempts_of(state))
    lines += ["", "## Analysis trail", ""]
    turn = 0
    for message in state.get("messages", []):
        if message["role"] == "assistant":
            turn += 1
            text = clean(message.get("content") or "")   # the policy's text, code included: no escapes in report.md
            refused = "" if has_analysis(text) else " (refused: no performance analysis)"
            lines += [f"### Turn {turn}{refused}", "", text.strip()[:ANALYSIS_CHARS] or "_(no text)_", ""]
    return "\n".join(lines) + "\n"


def result_line(summary: Summary) -> str:
    if summary.status == "none":
        return "No correct kernel the trust rules allow was found; nothing is handed back."
    speed = (f"{summary.runtime_ms:.4g} ms, {summary.speedup_vs_eager:.2f}x vs eager"
             + (f", {summary.speedup_vs_compile:.2f}x vs torch.compile" if summary.speedup_vs_compile else "")
             if summary.speedup_vs_eager is not None else "not timed (no GPU: correctness only)")
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
