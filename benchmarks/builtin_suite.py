"""Run the built-in policy over our suite or a KernelBench checkout through the real agent
(one runtime, then per problem a session: graph, toolbox, history store, checkpoints),
then print a Markdown table per level.

    python -m benchmarks.builtin_suite --out DIR [--only 'GLOB'] [--budget 3]
    python -m benchmarks.builtin_suite --out DIR --problems ~/KernelBench --levels 1,2 \
        --budget 1 --deadline 540          # run again to go on where it stopped
    python -m benchmarks.builtin_suite --out DIR --problems ~/KernelBench --levels 1,2 --report
    python -m benchmarks.builtin_suite --out DIR --problems ~/KernelBench --levels 2 --cpu --size small

Each problem is one agent session with the built-in policy (`--budget N` benchmarks, then
its submit, then its final turn; `--no-submit` stops after the benchmarks), so every
evaluation is in the history store ($KERNELPILOT_HOME/history.db or `--db URL`) with the
analysis that produced it. Writes DIR/builtin.jsonl, one `SuiteRow` a problem
(`benchmarks/suite_rows.py`), flushed as it goes, so a stopped run keeps what it measured and
a second run skips the problems already there. The table counts every problem of the
selection: one not run, unsupported or without a correct kernel is a failure, as
KernelBench's fast_p counts it.

`--cpu` needs no GPU: each problem's first turn (its first kernel) runs in the Triton
interpreter (correctness only, no timings), written to DIR/cpu.jsonl; with `--size small`,
KernelBench problems are shrunk by `tools/small_sizes.py` (through `load_problem`). `--check` does the same on the
GPU at full size (DIR/check.jsonl, resumable), with nothing timed and no baselines.
"""
import argparse
import hashlib
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from agent.bench.runner import select_files
from agent.builtin import BuiltinPolicy
from agent.graph import Budget, attempts_of, best_of
from agent.policies import PolicyKind, PolicySpec
from agent.report import answer
from agent.runtime import Runtime, RuntimeOptions
from agent.session import AgentSession, SessionOptions
from benchmarks.suite import PROBLEMS
from benchmarks.suite_rows import RowStatus, SuiteRow, check_report, failure_row, read_log, report, write_row
from tools.evaluator import EvalConfig
from tools.history import HistoryError
from tools.problems import ProblemFile, load_problem
from tools.records import Mode
from tools.sandbox.contracts import SandboxError
from tools.timing import TimingConfig
from tools.trust import Use, Versus, allowed, trusted_runtime_ms, trusted_speedup, why_not


def main() -> int:
    args = parse_args()
    files = selected(args)
    if args.report:
        print(report(read_log(args.out / "builtin.jsonl"), files))
        if (args.out / "check.jsonl").exists():
            print(check_report(read_log(args.out / "check.jsonl"), files))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / ("cpu.jsonl" if args.cpu else "check.jsonl" if args.check else "builtin.jsonl")
    done = {(row.level, row.name, row.size) for row in read_log(log_path)}
    todo = [f for f in files if (f.level, f.path.stem, args.size) not in done]
    with Runtime.open(runtime_options(args)) as runtime:
        if not args.cpu and runtime.device.mode is not Mode.GPU:
            print("builtin_suite: no CUDA GPU here; timings need one (nothing measured; --cpu checks in the "
                  "interpreter)", file=sys.stderr)
            return 1
        rows = run_all(runtime, todo, args, log_path)
        print(store_check(runtime, read_log(log_path)))
    if args.cpu or args.check:
        counts = Counter(row.status for row in rows)
        print(f"{len(rows)} problem(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        print(check_report(read_log(log_path), files))
    else:
        print(report(read_log(log_path), files, runtime.device.name))
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--problems", type=Path, default=PROBLEMS,
                        help="a problem file, a folder of them, or a KernelBench checkout (default: our suite)")
    parser.add_argument("--levels", default="", help="KernelBench levels to run, e.g. 1,2 (default: every one found)")
    parser.add_argument("--only", default="*", help="comma-separated globs over problem names")
    parser.add_argument("--budget", type=int, default=3, help="benchmarks per problem")
    parser.add_argument("--size", default="full", choices=("full", "small"))
    parser.add_argument("--deadline", type=float, default=None,
                        help="start no problem after this many seconds; run again to go on")
    parser.add_argument("--trials", type=int, default=EvalConfig.trials, help="correctness trials per evaluation")
    parser.add_argument("--iters", type=int, default=TimingConfig.iters, help="timed calls per measurement")
    parser.add_argument("--db", metavar="URL", help="history store (SQLAlchemy URL); default $KERNELPILOT_HOME/history.db")
    parser.add_argument("--no-submit", action="store_true",
                        help="stop each problem after its benchmarks (the policy's submit is not run)")
    parser.add_argument("--report", action="store_true", help="print the tables from DIR/builtin.jsonl; no GPU")
    parser.add_argument("--cpu", action="store_true",
                        help="no GPU: check each first kernel in the Triton interpreter (correctness only)")
    parser.add_argument("--check", action="store_true",
                        help="on the GPU, correctness only: each first kernel checked, nothing timed, no baselines "
                             "(DIR/check.jsonl; run again to go on)")
    args = parser.parse_args()
    if args.cpu and args.check:
        parser.error("--cpu (the interpreter) and --check (the GPU) exclude each other")
    return args


def runtime_options(args) -> RuntimeOptions:
    checking = args.cpu or args.check
    config = EvalConfig(trials=args.trials, timing=TimingConfig(iters=args.iters), timed=not checking,
                        baselines=not checking)
    return RuntimeOptions(db=args.db, force_cpu=args.cpu, eval=config)


def selected(args) -> list[ProblemFile]:
    levels = frozenset(int(v) for v in args.levels.split(",") if v)
    return select_files((args.problems,), levels, tuple(args.only.split(",")))


def run_all(runtime: Runtime, todo: list[ProblemFile], args, log_path: Path) -> list[SuiteRow]:
    """Each problem in turn; a problem the trusted side cannot finish is a failed row, and the run goes on."""
    rows, start = [], time.perf_counter()
    with open(log_path, "a") as log:
        for index, f in enumerate(todo, 1):
            if args.deadline is not None and time.perf_counter() - start > args.deadline:
                print(f"builtin_suite: deadline reached, {len(todo) - index + 1} problem(s) left for the next run")
                break
            try:
                row = run_problem(runtime, f, args)
            except (SandboxError, HistoryError):
                raise       # the runtime itself is broken: every later problem would fail too
            except Exception as error:  # the trusted side failed on this problem: logged as failed, the batch goes on
                row = failure_row(f, args.size, error)
                if torch.cuda.is_initialized():
                    torch.cuda.empty_cache()
            write_row(log, row)
            rows.append(row)
            print(f"[{index}/{len(todo)}] {progress_line(runtime, row)}", flush=True)
    return rows


def run_problem(runtime: Runtime, f: ProblemFile, args) -> SuiteRow:
    """One agent session with the built-in policy on one problem."""
    start = time.perf_counter()
    problem = load_problem(f.path, size=args.size, suite=f.suite, level=f.level)
    policy = BuiltinPolicy(budget=args.budget)
    checking = args.cpu or args.check
    turns = 1 if checking else args.budget + (0 if args.no_submit else 2)
    options = SessionOptions(problem=f.path, policy=PolicySpec(PolicyKind.BUILTIN), size=args.size,
                             budget=Budget(max_turns=turns, patience=None))
    session = AgentSession.open(runtime, options, policy, problem=problem)
    final = session.run()
    plan = policy.plan(problem)
    return problem_row(f, args.size, session.id, final, plan, time.perf_counter() - start)


def problem_row(f: ProblemFile, size: str, session: str, final: dict, plan, seconds: float) -> SuiteRow:
    attempts, best, chosen = attempts_of(final), best_of(final), answer(final)
    submitted = chosen if final.get("submitted") is not None else None
    failing = next((a for a in attempts if not allowed(a, Use.BEST)), None)     # failed, or flagged
    status = (RowStatus.UNSUPPORTED if plan.error else RowStatus.CORRECT if best else
              RowStatus(attempts[-1].status) if attempts else RowStatus.FAILED)
    return SuiteRow(
        level=f.level, name=f.path.stem, status=status, size=size, supported=plan.error is None, session=session,
        stop=final.get("stop"), evaluations=len(attempts), statuses=tuple(a.status.value for a in attempts),
        best_ms=trusted_runtime_ms(best) if best else None,
        best_vs_eager=trusted_speedup(best, Versus.EAGER) if best else None,
        best_vs_compile=trusted_speedup(best, Versus.COMPILE) if best else None, best_flags=best.flags if best else (),
        best_kernel=hashlib.sha256(best.code.encode()).hexdigest()[:16] if best else None,
        submitted_vs_eager=trusted_speedup(submitted, Versus.EAGER) if submitted else None,
        submitted_vs_compile=trusted_speedup(submitted, Versus.COMPILE) if submitted else None,
        kept_in_torch=tuple(s.anchor.name for s in plan.stages if s.kind.value == "torch"),
        reason=(plan.error or (failing.reason or why_not(failing, Use.BEST) if failing else ""))[:300],
        seconds=round(seconds, 1))


def store_check(runtime: Runtime, rows: list[SuiteRow]) -> str:
    """Are the run's evaluations all in the history store (so that the run is training data)?"""
    sessions = [row.session for row in rows if row.session]
    stored, logged = runtime.store.count(sessions), sum(row.evaluations for row in rows if row.session)
    verdict = "all recorded" if stored == logged else "MISSING from the store" if stored < logged else "more stored"
    where = runtime.store.engine.url.render_as_string(hide_password=True)
    return (f"history store {where}: {stored} evaluation(s) of the log's {len(sessions)} session(s); "
            f"the log counts {logged}: {verdict}")


def progress_line(runtime: Runtime, row: SuiteRow) -> str:
    speed = f", {row.best_vs_eager:.2f}x eager, {fmt_x(row.best_vs_compile)} compile" if row.best_vs_eager else ""
    held = (f"; the trusted process holds {torch.cuda.memory_reserved() / 2**30:.1f} GiB of GPU memory and "
            f"{runtime.evaluator.exchange.held_bytes / 2**30:.1f} GiB in arenas" if torch.cuda.is_initialized() else "")
    detail = row.error or (row.reason if row.status is not RowStatus.CORRECT else "")
    return (f"{row.name}: {row.status}{speed}, {row.evaluations} evaluation(s), {row.seconds or 0:.0f} s"
            f"{' ' + ' '.join(row.best_flags) if row.best_flags else ''}{held} {detail[:160]}").rstrip()


def fmt_x(value: float | None) -> str:
    return f"{value:.2f}x" if value else "-"


if __name__ == "__main__":
    sys.exit(main())
