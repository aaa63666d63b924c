"""Graded candidates per GPU-minute: the grader's pool in the full and the reward protocol,
side by side on the same candidates (issue 20 part 5), and whether their verdicts agree.

    python -m policy_training.grader.throughput --lanes 4 --rounds 2          # on a GPU machine
    python -m policy_training.grader.throughput --cpu --lanes 2 --only '0[1-3]*'   # a dry run, no timings

For each protocol a fresh pool (`--lanes` lane processes on GPU `--gpu`, or in the interpreter
with --cpu) grades every honest suite candidate (benchmarks/candidates/ against
benchmarks/problems/) `--rounds` times, all submitted at once as a trainer's batch would be.
The pool opens first (its lanes load torch and start their sandboxes), then the clock runs from
the first submission to the last verdict: with one GPU, those wall minutes are the GPU-minutes.
Baselines are measured once per problem and cached (`$KERNELPILOT_HOME/cache/baselines`): run
a warm-up pass first (`--rounds 1`, thrown away) or read the second table. Prints Markdown for
benchmarks/RESULTS.md: the throughput per protocol, then per candidate the two verdicts and
speedups vs eager. Nothing here is a test: it measures.
"""
import argparse
import fnmatch
import statistics
import sys
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace
from pathlib import Path

from agent.runtime import RuntimeOptions
from policy_training.grader.lanes import Job
from policy_training.grader.pool import Graded, GraderPool, PoolOptions
from tools.evaluator import EvalConfig, Protocol
from tools.trust import trusted_speedup

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS, CANDIDATES = ROOT / "benchmarks" / "problems", ROOT / "benchmarks" / "candidates"


@dataclass(frozen=True)
class Pass:
    protocol: Protocol
    graded: list[tuple[str, Graded | BaseException]]
    seconds: float

    def per_minute(self) -> float:
        return len([g for _, g in self.graded if isinstance(g, Graded)]) / (self.seconds / 60)


def pairs(only: str) -> list[tuple[str, str, str]]:
    """(name, problem source, candidate source) of each suite problem with an honest candidate."""
    found = [(p.stem, p.read_text(), (CANDIDATES / p.name).read_text()) for p in sorted(PROBLEMS.glob("[0-9]*.py"))
             if (CANDIDATES / p.name).is_file() and any(fnmatch.fnmatch(p.stem, g) for g in only.split(","))]
    if not found:
        raise SystemExit(f"throughput: no suite problem with a candidate matches {only!r}")
    return found


def grade_all(options: PoolOptions, work: list[tuple[str, str, str]], rounds: int) -> Pass:
    with GraderPool.open(options) as pool:
        start = time.monotonic()
        futures: list[tuple[str, Future]] = [(name, pool.submit(Job(problem, candidate), deadline_s=24 * 3600))
                                             for _ in range(rounds) for name, problem, candidate in work]
        wait([f for _, f in futures])
        seconds = time.monotonic() - start
    graded = [(name, f.exception() or f.result()) for name, f in futures]
    return Pass(options.runtime.eval.protocol, graded, seconds)


def throughput_table(passes: list[Pass], lanes: int, device: str) -> str:
    lines = [f"Device: {device}; {lanes} lane(s)", "",
             "| protocol | graded | failed (our side) | minutes | graded per GPU-minute |", "|---|---:|---:|---:|---:|"]
    for run in passes:
        failed = sum(not isinstance(g, Graded) for _, g in run.graded)
        lines.append(f"| {run.protocol.value} | {len(run.graded) - failed} | {failed} | {run.seconds / 60:.2f} | "
                     f"{run.per_minute():.0f} |")
    return "\n".join(lines)


def verdict(entries: list[Graded | BaseException]) -> tuple[str, str]:
    """(status and flags, median speedup vs eager) over a candidate's rounds."""
    ok = [g for g in entries if isinstance(g, Graded)]
    if not ok:
        return f"no verdict: {entries[0]}"[:60], "-"
    kinds = sorted({f"{g.result.status.value} {','.join(f.value for f in g.result.flags)}".strip() for g in ok})
    speeds = [s for s in (trusted_speedup(g.result) for g in ok) if s]     # only what the trust rules believe
    return " / ".join(kinds), f"{statistics.median(speeds):.3f}" if speeds else "-"


def agreement_table(passes: list[Pass]) -> str:
    names = list(dict.fromkeys(name for name, _ in passes[0].graded))
    lines = ["| candidate | " + " | ".join(f"{p.protocol.value} verdict | {p.protocol.value} vs eager" for p in passes)
             + " | same verdict |", "|---|" + "---|---:|" * len(passes) + "---|"]
    same = 0
    for name in names:
        cells = [verdict([g for n, g in p.graded if n == name]) for p in passes]
        agree = len({c[0] for c in cells}) == 1
        same += agree
        lines.append(f"| {name} | " + " | ".join(f"{v} | {s}" for v, s in cells) + f" | {'yes' if agree else '**NO**'} |")
    return "\n".join(lines + ["", f"{same}/{len(names)} candidates with the same verdict in every protocol"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lanes", type=int, default=4, help="lane processes on the device (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="times each candidate is graded per protocol")
    parser.add_argument("--only", default="*", help="comma-separated globs over suite problem names")
    parser.add_argument("--gpu", type=int, default=0, help="CUDA device (default 0)")
    parser.add_argument("--cpu", action="store_true", help="the Triton interpreter (nothing timed): a dry run")
    parser.add_argument("--protocols", default="full,reward", help="comma-separated, in order (default full,reward)")
    args = parser.parse_args()
    work = pairs(args.only)
    devices = (None if args.cpu else args.gpu,) * args.lanes
    passes = []
    for name in args.protocols.split(","):
        runtime = RuntimeOptions(cuda_index=args.gpu, force_cpu=args.cpu, eval=EvalConfig(protocol=Protocol(name)))
        options = replace(PoolOptions(runtime=runtime, devices=devices), capacity=len(work) * args.rounds)
        passes.append(grade_all(options, work, args.rounds))
        print(f"{name}: {passes[-1].per_minute():.0f} graded per minute", file=sys.stderr, flush=True)
    graded = next((g for _, g in passes[0].graded if isinstance(g, Graded)), None)
    print(throughput_table(passes, args.lanes, graded.result.device if graded else "?"))
    print()
    print(agreement_table(passes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
