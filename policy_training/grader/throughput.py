"""Graded candidates per GPU-minute: the grader's pool in the reward and the full protocol, side
by side on the same candidates (issue 20 part 5), whether their verdicts agree, and where each
evaluation's time goes; optionally KernelBench's own harness on the same candidates.

    python -m policy_training.grader.throughput --lanes 8 --rounds 2 --out thru.json --deadline 480   # a GPU
    python -m policy_training.grader.throughput --kernelbench ~/KernelBench --kernelbench-stub-llm  # + theirs
    python -m policy_training.grader.throughput --cpu --lanes 2 --only '0[1-3]*'   # a dry run, no timings

For each protocol (`--protocols`, default reward then full) a fresh pool (`--lanes` lane
processes on GPU `--gpu`, or in the interpreter with --cpu; by default, in the reward protocol
as many as the CPU cores allow, two a lane, up to 8, and 4 in the full one), grading as `kernelpilot grader
serve` does (a correct candidate checked again at a second size set; `--no-second-size` skips
that), first grades every honest suite candidate (benchmarks/candidates/ against benchmarks/problems/) once outside the clock: the
warm-up (`--no-warmup` skips it), so the problems' baselines and the Triton caches are warm and
what is timed is the steady state a trainer sees. Then, on the clock, it grades every candidate
`--rounds` times, all submitted at once as a trainer's batch would be; the clock runs from the
first submission to the last verdict: with one GPU, those wall minutes are the GPU-minutes.

As soon as a pass ends it prints (flushed) its throughput row and its phase breakdown: per phase
of an evaluation (EvalResult.phases, measured on the trusted side), the mean and median seconds
per graded candidate and the share of the pass's lane time (lanes x wall seconds); and, with
`--out FILE`, rewrites FILE as JSON with every pass so far, so a run cut short keeps what it
measured. A pass that would start after `--deadline` seconds from the start is skipped and said
so, never cut short. At the end: per candidate the verdicts and speedups vs eager of every
protocol, and whether they agree. `--warm N` sets how many workers each lane's sandbox keeps
started ahead of need (1, as the grader serves; an evaluation with its second-size check takes
two workers).

`--kernelbench PATH` adds a pass of KernelBench's own `eval_kernel_against_ref` from the checkout
at PATH (policy_training/grader/kernelbench_pass.py: one subprocess, serial, 5 correctness and 100
timed trials, backend triton), warmed up and timed the same way, its verdicts (compiled, correct)
counted beside ours. It needs CUDA, and the modules KernelBench's package imports: where its LLM
clients (litellm, dotenv) are not installed, `--kernelbench-stub-llm` gives that subprocess
placeholders for them (its evaluation never calls them; the report says so). Nothing here is a
test: it measures.
"""
import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.runtime import RuntimeOptions
from policy_training.grader.kernelbench_pass import CORRECT_TRIALS, PERF_TRIALS, Harness, Theirs, checkout, need_cuda
from policy_training.grader.lanes import Job, default_lanes
from policy_training.grader.pool import Graded, GraderPool, PoolOptions
from tools.evaluator import EvalConfig, Protocol
from tools.files import write_atomic
from tools.records import PhaseSeconds
from tools.trust import trusted_speedup

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS, CANDIDATES = ROOT / "benchmarks" / "problems", ROOT / "benchmarks" / "candidates"
KERNELBENCH = "kernelbench"
Work = list[tuple[str, str, str]]       # (name, problem source, candidate source)


@dataclass(frozen=True)
class PhaseRow:
    phase: str
    mean_s: float
    median_s: float | None      # None: not a per-candidate quantity (idle lane time)
    share: float            # of the pass's lane time: lanes x wall seconds


@dataclass
class PassReport:
    """One pass, as printed and written to --out."""

    protocol: str
    status: str = "measured"            # measured, or skipped (reason says why)
    reason: str = ""
    lanes: int = 0
    graded: int = 0
    failed: int = 0                     # our side's failures (no verdict)
    seconds: float = 0.0                # on the clock: first submission to last verdict
    per_minute: float = 0.0
    warmup_seconds: float | None = None     # None: no warm-up
    phases: list[PhaseRow] = field(default_factory=list)
    verdicts: dict[str, list[str]] = field(default_factory=dict)     # per candidate, one per round
    speedups: dict[str, float | None] = field(default_factory=dict)  # median trusted speedup vs eager
    device: str = ""
    evaluations: list[dict] = field(default_factory=list)   # each graded one: name, seconds, lane_s, phases


def pairs(only: str) -> Work:
    """Each suite problem with an honest candidate whose name matches a glob of `only`."""
    import fnmatch
    found = [(p.stem, p.read_text(), (CANDIDATES / p.name).read_text()) for p in sorted(PROBLEMS.glob("[0-9]*.py"))
             if (CANDIDATES / p.name).is_file() and any(fnmatch.fnmatch(p.stem, g) for g in only.split(","))]
    if not found:
        raise SystemExit(f"throughput: no suite problem with a candidate matches {only!r}")
    return found


def submit_all(pool: GraderPool, work: Work, rounds: int, label: str) -> tuple[list[tuple[str, Graded | BaseException]], float]:
    start = time.monotonic()
    futures: list[tuple[str, Future]] = [(name, pool.submit(Job(problem, candidate), deadline_s=24 * 3600))
                                         for _ in range(rounds) for name, problem, candidate in work]
    for done, _ in enumerate(as_completed([f for _, f in futures]), 1):
        if done % 8 == 0 or done == len(futures):     # a run cut by its bound still says how far it got
            print(f"throughput: {label}: {done}/{len(futures)} graded after {time.monotonic() - start:.0f} s",
                  file=sys.stderr, flush=True)
    return [(name, f.exception() or f.result()) for name, f in futures], time.monotonic() - start


def our_pass(options: PoolOptions, work: Work, rounds: int, warmup: bool, late: Callable[[], bool]) -> PassReport:
    protocol, lanes = options.runtime.eval.protocol.value, max(1, len(options.devices))
    opening = time.monotonic()
    with GraderPool.open(options) as pool:
        print(f"throughput: {lanes} lane(s) open after {time.monotonic() - opening:.0f} s", file=sys.stderr, flush=True)
        warmed = submit_all(pool, work, 1, f"{protocol} warm-up")[1] if warmup else None
        if late():
            return PassReport(protocol, "skipped", "the deadline passed during its warm-up", lanes,
                              warmup_seconds=warmed)
        graded, seconds = submit_all(pool, work, rounds, f"{protocol} on the clock")
    ok = [g for _, g in graded if isinstance(g, Graded)]
    names = list(dict.fromkeys(name for name, _ in graded))
    return PassReport(protocol, lanes=lanes, graded=len(ok), failed=len(graded) - len(ok), seconds=seconds,
                      per_minute=len(ok) / (seconds / 60), warmup_seconds=warmed,
                      phases=phase_rows(ok, lanes * seconds),
                      verdicts={n: [verdict(g) for m, g in graded if m == n] for n in names},
                      speedups={n: median_speedup([g for m, g in graded if m == n]) for n in names},
                      device=ok[0].result.device if ok else "", evaluations=[evaluation(n, g) for n, g in graded])


def evaluation(name: str, entry: Graded | BaseException) -> dict:
    if not isinstance(entry, Graded):
        return {"candidate": name, "error": str(entry)[:300]}
    phases = entry.result.phases.model_dump() if entry.result.phases else None
    return {"candidate": name, "status": entry.result.status.value, "seconds": entry.result.seconds,
            "lane_s": entry.lane_s, "queued_s": entry.queued_s, "phases": phases}


def their_pass(harness: Harness, work: Work, rounds: int, warmup: bool, late: Callable[[], bool]) -> PassReport:
    """KernelBench's harness, serially: its verdicts and its own wall time per candidate."""
    warmed = None
    if warmup:
        start = time.monotonic()
        for _, problem, candidate in work:
            harness.grade(problem, candidate)
        warmed = time.monotonic() - start
        if late():
            return PassReport(KERNELBENCH, "skipped", "the deadline passed during its warm-up", 1,
                              warmup_seconds=warmed)
    start = time.monotonic()
    graded: list[tuple[str, Theirs]] = [(name, harness.grade(problem, candidate))
                                        for _ in range(rounds) for name, problem, candidate in work]
    seconds = time.monotonic() - start
    answered = [t for _, t in graded if t.answered]
    per_call = [t.seconds for t in answered]
    return PassReport(KERNELBENCH, lanes=1, graded=len(answered), failed=len(graded) - len(answered),
                      seconds=seconds, per_minute=len(answered) / (seconds / 60), warmup_seconds=warmed,
                      phases=[PhaseRow("eval_kernel_against_ref", statistics.fmean(per_call or [0.0]),
                                       statistics.median(per_call or [0.0]), sum(per_call) / seconds)],
                      verdicts={name: [t.verdict() for m, t in graded if m == name] for name, _, _ in work},
                      speedups={name: None for name, _, _ in work}, device=answered[0].device if answered else "")


def phase_rows(ok: list[Graded], lane_seconds: float) -> list[PhaseRow]:
    """Per phase of the evaluation, then the rest of the lanes' time, over the graded candidates."""
    measured = [g for g in ok if g.result.phases is not None]
    columns = {name: [getattr(g.result.phases, name) for g in measured] for name in PhaseSeconds.PHASES}
    columns["(rest of the evaluation)"] = [g.result.seconds - g.result.phases.total() for g in measured]
    columns["(outside the evaluator: problem load, store record, pipe)"] = [g.lane_s - g.result.seconds for g in ok]
    rows = [PhaseRow(name, statistics.fmean(v), statistics.median(v), sum(v) / lane_seconds)
            for name, v in columns.items() if v]
    idle = lane_seconds - sum(g.lane_s for g in ok)
    rows.append(PhaseRow("(lanes idle)", idle / max(1, len(ok)), None, idle / lane_seconds))
    held = [g.result.phases.lock_held for g in measured]
    if held:    # not a phase: it overlaps them; the device's serial part, whatever the number of lanes
        rows.append(PhaseRow("device lock held (overlaps the above)", statistics.fmean(held), statistics.median(held),
                             sum(held) / lane_seconds))
    return rows


def verdict(entry: Graded | BaseException) -> str:
    if not isinstance(entry, Graded):
        return f"no verdict: {entry}"[:60]
    return f"{entry.result.status.value} {','.join(f.value for f in entry.result.flags)}".strip()


def median_speedup(entries: list[Graded | BaseException]) -> float | None:
    speeds = [s for s in (trusted_speedup(g.result) for g in entries if isinstance(g, Graded)) if s]
    return statistics.median(speeds) if speeds else None     # only what the trust rules believe


def pass_text(report: PassReport, warmup: bool) -> str:
    """The pass's throughput row and its phase breakdown, in Markdown."""
    if report.status != "measured":
        return f"### {report.protocol}: skipped ({report.reason})"
    warm = (f"after a warm-up pass of {report.warmup_seconds:.0f}s outside the clock (baselines and Triton caches "
            f"warm: the steady state)" if report.warmup_seconds is not None else
            "no warm-up: cold baselines and caches are on the clock" if not warmup else "")
    warm += f"; {report.reason}" if report.reason else ""
    lines = [f"### {report.protocol}: {report.per_minute:.1f} graded per GPU-minute ({report.device or '?'}; "
             f"{report.lanes} lane(s); {warm})", "",
             "| protocol | graded | failed (our side) | minutes | graded per GPU-minute |", "|---|---:|---:|---:|---:|",
             f"| {report.protocol} | {report.graded} | {report.failed} | {report.seconds / 60:.2f} | "
             f"{report.per_minute:.1f} |", "",
             "| phase | mean s per candidate | median s | share of lane time |", "|---|---:|---:|---:|"]
    lines += [f"| {r.phase} | {r.mean_s:.3f} | {'-' if r.median_s is None else f'{r.median_s:.3f}'} | "
              f"{100 * r.share:.1f}% |" for r in report.phases]
    return "\n".join(lines)


def agreement_table(reports: list[PassReport]) -> str:
    measured = [r for r in reports if r.status == "measured"]
    if not measured:
        return "no pass was measured"
    names = list(measured[0].verdicts)
    lines = ["| candidate | " + " | ".join(f"{r.protocol} verdict | {r.protocol} vs eager" for r in measured)
             + " | same verdict (ours) |", "|---|" + "---|---:|" * len(measured) + "---|"]
    same = 0
    for name in names:
        kinds = [" / ".join(sorted(set(r.verdicts.get(name, ["-"])))) for r in measured]
        agree = len({kind for kind, r in zip(kinds, measured) if r.protocol != KERNELBENCH}) <= 1
        same += agree
        speeds = [r.speedups.get(name) for r in measured]
        lines.append(f"| {name} | " + " | ".join(f"{k} | {'-' if s is None else f'{s:.3f}'}"
                                                 for k, s in zip(kinds, speeds)) + f" | {'yes' if agree else '**NO**'} |")
    lines += ["", f"{same}/{len(names)} candidates with the same verdict in every protocol of ours"]
    for report in measured:
        every = [v for vs in report.verdicts.values() for v in vs]
        lines.append(f"{report.protocol}: {sum(v.startswith('correct') for v in every)}/{len(every)} correct"
                     + (f", {sum(v != 'not compiled' for v in every)}/{len(every)} compiled "
                        f"(KernelBench's harness: {CORRECT_TRIALS} correctness, {PERF_TRIALS} timed trials)"
                        if report.protocol == KERNELBENCH else ""))
    return "\n".join(lines)


def write_json(path: Path | None, args: argparse.Namespace, work: Work, reports: list[PassReport]) -> None:
    if path is None:
        return
    data = {"lanes": "default" if args.lanes is None else args.lanes, "rounds": args.rounds, "warmup": not args.no_warmup, "cpu": args.cpu,
            "second_size": not args.no_second_size, "warm": args.warm,
            "candidates": [name for name, _, _ in work], "passes": [asdict(r) for r in reports]}
    write_atomic(path, json.dumps(data, indent=1, allow_nan=False))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--lanes", type=int, default=None,
                        help="lane processes on the device; 0: one runtime in this process (default: the reward "
                             "protocol as many as the CPU cores allow, two a lane, up to 8; the full protocol 4)")
    parser.add_argument("--rounds", type=int, default=2, help="times each candidate is graded per pass, on the clock")
    parser.add_argument("--only", default="*", help="comma-separated globs over suite problem names")
    parser.add_argument("--gpu", type=int, default=0, help="CUDA device (default 0)")
    parser.add_argument("--cpu", action="store_true", help="the Triton interpreter (nothing timed): a dry run")
    parser.add_argument("--protocols", default="reward,full",
                        help=f"comma-separated, in order (default reward,full; {KERNELBENCH}: KernelBench's harness, "
                             f"last by default with --kernelbench)")
    parser.add_argument("--no-warmup", action="store_true", help="no untimed warm-up pass before each timed one")
    parser.add_argument("--warm", type=int, default=1,
                        help="workers each lane's sandbox keeps started ahead of need (default 1, as grader serve)")
    parser.add_argument("--no-second-size", action="store_true",
                        help="skip the check at a second size set (`kernelpilot grader serve` runs it)")
    parser.add_argument("--out", type=Path, help="a JSON file of every pass so far, rewritten after each")
    parser.add_argument("--deadline", type=float, help="seconds from the start after which no pass starts")
    parser.add_argument("--kernelbench", type=Path, help="a KernelBench checkout: also a pass of its own harness")
    parser.add_argument("--kernelbench-stub-llm", action="store_true",
                        help="placeholders for litellm and dotenv where missing (KernelBench imports them for its "
                             "LLM queries only)")
    args = parser.parse_args(argv)
    if (args.lanes or 0) < 0 or args.rounds < 1 or args.warm < 0:
        parser.error("--lanes and --warm must be 0 or more, --rounds 1 or more")
    names = args.protocols.split(",")
    for name in names:
        if name not in {p.value for p in Protocol} | {KERNELBENCH}:
            parser.error(f"--protocols: {name!r} is not one of {', '.join(p.value for p in Protocol)}, {KERNELBENCH}")
    if (KERNELBENCH in names) != bool(args.kernelbench):
        if not args.kernelbench:
            parser.error(f"--protocols {KERNELBENCH} needs --kernelbench PATH")
        args.protocols += f",{KERNELBENCH}"     # its pass comes last unless placed
    return args


def main(argv: list[str] | None = None) -> int:
    args, started = parse(argv), time.monotonic()
    eval_py = checkout(args.kernelbench) if args.kernelbench else None    # both fail at once, before any pass
    if eval_py:
        need_cuda(args.cpu)
    late = (lambda: False) if args.deadline is None else (lambda: time.monotonic() - started > args.deadline)
    work, reports = pairs(args.only), []
    for name in args.protocols.split(","):
        print(f"throughput: {name} pass: {len(work)} candidate(s), {'a warm-up, then ' * (not args.no_warmup)}"
              f"{args.rounds} round(s) on the clock", file=sys.stderr, flush=True)
        if late():
            report = PassReport(name, "skipped", f"it would have started after the --deadline of {args.deadline:.0f}s")
        elif name == KERNELBENCH:
            with Harness(eval_py, args.gpu, args.kernelbench_stub_llm) as harness:
                report = their_pass(harness, work, args.rounds, not args.no_warmup, late)
                report.reason = f"placeholders for {', '.join(harness.stubbed)}" if harness.stubbed else ""
        else:
            config = EvalConfig(protocol=Protocol(name), second_size=not args.no_second_size)
            runtime = RuntimeOptions(cuda_index=args.gpu, force_cpu=args.cpu, eval=config, warm=args.warm)
            lanes = default_lanes(name, os.cpu_count()) if args.lanes is None else args.lanes
            options = PoolOptions(runtime=runtime, devices=(None if args.cpu else args.gpu,) * lanes,
                                  capacity=len(work) * args.rounds)
            report = our_pass(options, work, args.rounds, not args.no_warmup, late)
        reports.append(report)
        print(pass_text(report, not args.no_warmup) + "\n", flush=True)
        write_json(args.out, args, work, reports)
    print(agreement_table(reports), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
