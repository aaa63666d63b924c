"""Evaluator overhead per candidate and evaluations per GPU-minute.

    python -m benchmarks.eval_throughput [--only 'GLOB'] [--out DIR]

Evaluates every honest suite candidate twice through one process sandbox (warm pool
of one worker). The first pass fills the Triton compile cache; the second is
measured. Overhead = an evaluation's wall time minus its timed loop (the measured
calls): worker hand-off, load, the 5 correctness trials with their reference runs and
transfers, warm-up and the output checks. Baselines are off (they are cached per
problem and would only hide this cost). Needs a GPU.
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
from tools.sandbox.process import ProcessSandbox


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="*", help="glob over problem names (default: all)")
    parser.add_argument("--out", type=Path, help="folder for throughput.json")
    args = parser.parse_args()
    if pick_index() is None:
        print("eval_throughput: no CUDA GPU here; nothing measured", file=sys.stderr)
        return 1
    pairs = suite_pairs(args.only)
    problems = {pair.name: load_problem(pair.problem) for pair in pairs}
    with ProcessSandbox(pick_index(), warm=1) as sandbox:
        device = detect()   # after the sandbox: its fork server starts before this process initialises CUDA
        evaluator = Evaluator(sandbox, device, EvalConfig(baselines=False))
        for pair in pairs:   # pass 1: compile caches, references, lint
            evaluator.evaluate(problems[pair.name], pair.candidate.read_text())
        rows, start = [], time.perf_counter()
        for pair in pairs:   # pass 2: measured
            result = evaluator.evaluate(problems[pair.name], pair.candidate.read_text())
            loop = result.timing.loop_seconds if result.timing else 0.0
            rows.append({"name": pair.name, "status": result.status.value, "seconds": result.seconds,
                         "timed_loop_s": loop, "overhead_s": result.seconds - loop})
            print(f"{pair.name}: {result.seconds:.2f} s, timed loop {loop:.2f} s, overhead {result.seconds - loop:.2f} s", flush=True)
        elapsed = time.perf_counter() - start
    overheads = [row["overhead_s"] for row in rows]
    summary = {"device": device.name, "candidates": len(rows), "overhead_mean_s": statistics.fmean(overheads),
               "overhead_median_s": statistics.median(overheads), "overhead_max_s": max(overheads),
               "evals_per_gpu_minute": 60 * len(rows) / elapsed, "rows": rows}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "throughput.json").write_text(json.dumps(summary, indent=1))
    print(f"{len(rows)} candidates on {device.name}: overhead mean {summary['overhead_mean_s']:.2f} s, median "
          f"{summary['overhead_median_s']:.2f} s, max {summary['overhead_max_s']:.2f} s; "
          f"{summary['evals_per_gpu_minute']:.1f} evaluations per GPU-minute")
    return 0


if __name__ == "__main__":
    sys.exit(main())
