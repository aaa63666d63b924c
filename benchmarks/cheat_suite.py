"""Run the cheat fixtures (tests/cheats/) on a GPU at full size, GPU-only ones included,
and optionally every honest candidate of our suite, and print a Markdown table for
benchmarks/RESULTS.md: expected verdict, verdict, flags, reason, seconds.

    python -m benchmarks.cheat_suite --out DIR [--only GLOB] [--honest-suite] [--baselines] [--cpu]

Writes DIR/cheats.jsonl (one line per evaluation, flushed as it goes). Exit status 0 when
every fixture got its expected verdict (and every honest suite candidate is `correct`
with no flag other than the environment's), else 1. Imports no history store, so it runs
on a GPU machine that has only torch, triton, numpy and pydantic.
"""
import argparse
import fnmatch
import json
import sys
import time
from pathlib import Path

from benchmarks.suite import suite_pairs
from tools.device import detect, pick_index
from tools.evaluator import EvalConfig, Evaluator
from tools.problems import load_problem
from tools.records import EvalStatus, Flag
from tools.sandbox.contracts import Limits
from tools.sandbox.process import ProcessSandbox

ROOT = Path(__file__).resolve().parent.parent
CHEATS = ROOT / "tests" / "cheats"
ENVIRONMENT_FLAGS = {Flag.NETWORK_NOT_ISOLATED, Flag.FILESYSTEM_NOT_ISOLATED, Flag.SHARED_USER, Flag.TIMING_MISMATCH}


def header(path: Path) -> dict:
    fields = {}
    for line in path.read_text().splitlines():
        if line.startswith("# ") and ":" in line:
            key, value = line[2:].split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def problem_path(name: str) -> Path:
    return ROOT / "tests" / f"{name}.py" if name.startswith("cheats/") else ROOT / "benchmarks" / "problems" / f"{name}.py"


def expected_reasons(fields: dict) -> dict[EvalStatus, str]:
    """The words the reason of each accepted failing status must contain: `# reason-STATUS: WORDS`
    for each, or `# reason: WORDS` where the header accepts one failing status only. A failing
    status without its words is a broken fixture (ValueError): every verdict is checked for why."""
    statuses = [EvalStatus(s) for s in fields["expect"].split("|")]
    failing = [s for s in statuses if s is not EvalStatus.CORRECT]
    reasons = {s: fields.get(f"reason-{s.value}", "") for s in failing}
    if len(failing) == 1 and not reasons[failing[0]]:
        reasons[failing[0]] = fields.get("reason", "")
    missing = [s.value for s, words in reasons.items() if not words]
    if missing:
        raise ValueError(f"expects {fields['expect']} but names no reason for {', '.join(missing)}")
    return reasons


def as_expected(result, fields: dict, gpu: bool) -> bool:
    """The header's verdict (the reason words of the status it got) and flags (`gpu-flags` too
    on a GPU), as tests/test_cheats.py judges them."""
    statuses = [EvalStatus(s) for s in fields["expect"].split("|")]
    flags = {Flag(f) for f in fields.get("flags", "").split(",") if f}
    flags |= {Flag(f) for f in fields.get("gpu-flags", "").split(",") if f and gpu}
    if result.status not in statuses:
        return False
    if result.status is not EvalStatus.CORRECT:
        return expected_reasons(fields)[result.status] in result.reason
    return set(result.flags) - ENVIRONMENT_FLAGS == flags


def run_one(evaluator: Evaluator, name: str, problem: Path, source: str, size: str, log) -> object:
    start = time.perf_counter()
    result = evaluator.evaluate(load_problem(problem, size=size), source)
    log.write(json.dumps({"name": name, **result.summary()}) + "\n")
    log.flush()
    print(f"{name}: {result.status.value} {[f.value for f in result.flags]} ({time.perf_counter() - start:.1f} s) "
          f"runtime {result.runtime_ms} ms, eager {result.eager_ms} ms, compile {result.compile_ms} ms; "
          f"{result.reason[:160]}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", default="*", help="glob over fixture names")
    parser.add_argument("--honest-suite", action="store_true", help="also every benchmarks/candidates/ candidate")
    parser.add_argument("--cpu", action="store_true", help="Triton interpreter, small sizes, CPU fixtures only")
    parser.add_argument("--baselines", action="store_true", help="also time eager and torch.compile (slower)")
    args = parser.parse_args()
    size = "small" if pick_index(force_cpu=args.cpu) is None else "full"
    args.out.mkdir(parents=True, exist_ok=True)
    limits = Limits(load_s=120, first_call_s=120, call_s=30, timing_s=180)
    rows, ok = [], True
    with ProcessSandbox(pick_index(force_cpu=args.cpu), limits) as sandbox, open(args.out / "cheats.jsonl", "a") as log:
        device = detect(force_cpu=args.cpu)   # after the sandbox: its fork server starts before CUDA
        evaluator = Evaluator(sandbox, device, EvalConfig(limits=limits, baselines=args.baselines))
        for path in sorted(CHEATS.glob("*.py")):
            fields = header(path)
            if not fnmatch.fnmatch(path.stem, args.only) or (size == "small" and fields["gpu-only"] == "yes"):
                continue
            result = run_one(evaluator, path.stem, problem_path(fields["problem"]), path.read_text(), size, log)
            good = as_expected(result, fields, size == "full")
            ok &= good
            rows.append((path.stem, fields["expect"], result, good))
        if args.honest_suite:
            for pair in suite_pairs():
                result = run_one(evaluator, pair.name, pair.problem, pair.candidate.read_text(), size, log)
                good = result.status is EvalStatus.CORRECT and not set(result.flags) - ENVIRONMENT_FLAGS
                ok &= good
                rows.append((f"suite/{pair.name}", "correct", result, good))
    print(table(rows, device.name))
    return 0 if ok else 1


def table(rows: list, device: str) -> str:
    lines = [f"Device: {device}", "", "| fixture | expected | verdict | flags | as expected | reason |",
             "|---|---|---|---|---|---|"]
    for name, expected, result, good in rows:
        reason = result.reason.replace("|", "/")[:90]
        lines.append(f"| {name} | {expected} | {result.status.value} | {', '.join(f.value for f in result.flags)} | "
                     f"{'yes' if good else '**NO**'} | {reason} |")
    lines += ["", f"{sum(good for *_, good in rows)}/{len(rows)} as expected"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
