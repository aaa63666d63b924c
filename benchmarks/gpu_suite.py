"""Run our suite on a GPU: every honest candidate at full size, with eager and
torch.compile baselines, then one candidate evaluated repeatedly for run-to-run spread.

    python -m benchmarks.gpu_suite --out DIR [--only 'GLOB'] [--repeat NAME] [--times 5]

Writes DIR/suite.jsonl (one EvalResult summary per line, flushed as it goes, so a
stopped run keeps what it measured) and prints a Markdown table for RESULTS.md.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.suite import suite_pairs
from tools.device import detect, pick_index
from tools.evaluator import EvalConfig, Evaluator
from tools.problems import load_problem
from tools.records import EvalResult
from tools.sandbox.process import ProcessSandbox
from tools.trust import Use, Versus, allowed, trusted_speedup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for suite.jsonl")
    parser.add_argument("--only", default="*", help="comma-separated globs over problem names (default: all)")
    parser.add_argument("--repeat", help="problem whose candidate is evaluated --times times in separate evaluations")
    parser.add_argument("--times", type=int, default=5)
    args = parser.parse_args()
    if pick_index() is None:
        print("gpu_suite: no CUDA GPU here; timings need one (nothing measured)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with ProcessSandbox(pick_index()) as sandbox, open(args.out / "suite.jsonl", "a") as log:
        device = detect()   # after the sandbox: its fork server starts before this process initialises CUDA
        evaluator = Evaluator(sandbox, device, EvalConfig())
        rows = [evaluate(evaluator, pair, log) for pair in suite_pairs(args.only)]
        print(table(rows, device.name))
        if args.repeat:
            print(spread(evaluator, args.repeat, args.times, log))
    return 0


def evaluate(evaluator: Evaluator, pair, log) -> EvalResult:
    start = time.perf_counter()
    result = evaluator.evaluate(load_problem(pair.problem), pair.candidate.read_text())
    log.write(json.dumps({"name": pair.name, **result.summary()}) + "\n")
    log.flush()
    print(f"{pair.name}: {result.status.value} {fmt(result.runtime_ms)} ms, eager {fmt(result.eager_ms)} ms, "
          f"compile {fmt(result.compile_ms)} ms ({time.perf_counter() - start:.1f} s) {result.reason}", flush=True)
    return result


def table(rows: list[EvalResult], device: str) -> str:
    lines = [f"Device: {device}", "",
             "| problem | status | candidate ms | IQR % | eager ms | compile ms | vs eager | vs compile |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        iqr = f"{100 * r.timing.spread:.1f}" if r.timing else "-"
        lines.append(f"| {r.problem} | {r.status.value} | {fmt(r.runtime_ms)} | {iqr} | {fmt(r.eager_ms)} | "
                     f"{fmt(r.compile_ms)} | {fmt(trusted_speedup(r, Versus.EAGER), 2)} | "
                     f"{fmt(trusted_speedup(r, Versus.COMPILE), 2)} |")
    timed = [r for r in rows if allowed(r, Use.METRICS) and trusted_speedup(r, Versus.EAGER)]
    if timed:
        geo = statistics.geometric_mean([trusted_speedup(r, Versus.EAGER) for r in timed])
        geo_c = statistics.geometric_mean([c for r in timed if (c := trusted_speedup(r, Versus.COMPILE))])
        correct = sum(r.status.value == "correct" for r in rows)
        lines += ["", f"{correct}/{len(rows)} correct; geomean speedup vs eager {geo:.2f}x, vs torch.compile {geo_c:.2f}x"]
    return "\n".join(lines)


def spread(evaluator: Evaluator, name: str, times: int, log) -> str:
    pair = suite_pairs(name)[0]
    medians = [evaluate(evaluator, pair, log).runtime_ms for _ in range(times)]
    if any(m is None for m in medians):
        return f"{name}: not every repeat was timed: {medians}"
    low, high = min(medians), max(medians)
    return (f"{name}, {times} separate evaluations: medians {', '.join(f'{m:.4f}' for m in medians)} ms; "
            f"spread (max-min)/min = {100 * (high - low) / low:.2f}%")


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
