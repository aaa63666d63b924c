"""Is a speedup repeatable? The same candidate evaluated N times, each in its own `kernelpilot eval`
process, and the spread of what each run reported (issue 17 item 9's measurement).

For every case it prints the range of the runtime and of the speedup vs eager (the cached eager
baseline, timed once, over each run's runtime) and the run's own 95% interval of its median.
The spread is the largest distance of a run's figure from the runs' median, in percent. Target
(H100): ±3% for calls of 1 ms or more, ±7% for calls of 20-100 us. Needs a GPU; the figures go
to benchmarks/RESULTS.md.

    python -m benchmarks.repeatability --runs 5 --out /tmp/repeat.json
    python -m benchmarks.repeatability --case 02_gelu_tanh:full --case 04_softmax_rows:small
    python -m benchmarks.repeatability --cpus 2,3       # every process pinned to those cores

`--cpus` runs each `eval` under `taskset -c` (the sandbox's fork server and workers inherit the
affinity): whether the spread across processes comes from where the host side of the launches
runs is then one comparison of two runs of this script.
"""
import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CASES = ("04_softmax_rows:small", "02_gelu_tanh:full", "04_softmax_rows:full", "14_matmul_square:full")


@dataclass(frozen=True)
class Run:
    runtime_ms: float
    speedup: float | None       # cached eager / runtime
    within: float | None        # half the median's 95% interval, in percent of the median (one run's own noise)
    started: str = ""           # UTC wall clock around the run's process, to line it up with a trace of the
    ended: str = ""             # GPU's clocks (e.g. nvidia-smi --query-gpu=timestamp,clocks.sm -lms 200)


def evaluate(problem: str, size: str, cpus: str | None = None) -> Run:
    """One evaluation in a fresh process (pinned to `cpus` if given); a run that is not correct and
    timed stops the benchmark."""
    command = (["taskset", "-c", cpus] if cpus else []) + [sys.executable, "-m", "agent.cli", "eval", str(ROOT / "problems" / f"{problem}.py"),
               str(ROOT / "candidates" / f"{problem}.py"), "--size", size, "--json", "--no-record"]
    started = now()
    done = subprocess.run(command, capture_output=True, text=True)
    ended = now()
    if done.returncode not in (0, 2) or not done.stdout.strip():
        sys.exit(f"{problem} ({size}): `kernelpilot eval` exited {done.returncode}: {done.stderr.strip()[-400:]}")
    result = json.loads(done.stdout)
    if result["status"] != "correct":
        sys.exit(f"{problem} ({size}): {result['status']}: {result['reason']}")
    if result["runtime_ms"] is None:
        sys.exit(f"{problem} ({size}): correct but not timed ({result['mode']}): this benchmark needs a GPU")
    timing = result["timing"]
    low, high = timing.get("median_low_ms"), timing.get("median_high_ms")
    within = (high - low) / 2 / timing["median_ms"] * 100 if low is not None and high is not None else None
    return Run(result["runtime_ms"], result["speedup_vs_eager"], within, started, ended)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def spread(values: list[float | None]) -> str:
    """'min-max (±p%)': p is the largest distance from the median, in percent of it."""
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    middle = statistics.median(known)
    worst = max(abs(v - middle) for v in known) / middle * 100
    return f"{min(known):.3f}-{max(known):.3f} (±{worst:.1f}%)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", help=f"PROBLEM:SIZE of the suite (default: {', '.join(CASES)})")
    parser.add_argument("--runs", type=int, default=5, help="evaluations per case, each in its own process")
    parser.add_argument("--out", type=Path, help="also write every run as JSON here")
    parser.add_argument("--cpus", help="pin every process to these cores (taskset -c LIST, e.g. 2,3)")
    args = parser.parse_args()
    rows, dump = [], {}
    for case in args.case or CASES:
        problem, _, size = case.partition(":")
        runs = [evaluate(problem, size or "full", args.cpus) for _ in range(args.runs)]
        dump[case] = [asdict(r) for r in runs]
        own = [r.within for r in runs if r.within is not None]
        rows.append(f"| {case} | {statistics.median(r.runtime_ms for r in runs):.4g} | "
                    f"{spread([r.runtime_ms for r in runs])} | {spread([r.speedup for r in runs])} | "
                    f"{'±%.1f%%' % max(own) if own else '-'} |")
        print(rows[-1], flush=True)
        if args.out:        # after every case: a run cut short keeps what it measured
            args.out.write_text(json.dumps(dump, indent=1))
    print("\n| case | median ms | runtime range | speedup vs eager | widest in-run interval |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
