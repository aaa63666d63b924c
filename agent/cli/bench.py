"""`kernelpilot bench`: the agent over many problems, resumable, with KernelBench's metrics.

    kernelpilot bench PROBLEMS... [--levels 1,2] [--only GLOBS] [--policy builtin|openai|replay:FILE]
                      [--model M --base-url URL] [--max-turns N] [--target-speedup X] [--workers N]
                      [--gpus all|I,J] [--cpu [--lanes N]] [--ray local|auto|ADDRESS]
                      [--sandbox process|docker] [--gpu I] [--size auto|full|small] [--untimed]
                      [--out DIR] [--json] [--html]
    kernelpilot bench report DIR [--json] [--html]

DIR holds results.jsonl (one row per problem), started.jsonl (sessions begun), run.json (the
selection), summary.json (metrics per level), report.md (a table per level, a row per
problem), problems/KEY/ (best.py, report.md, summary.json), kernelbench/ (the rows in
KernelBench's result format) and, with --html, report.html. `--untimed` checks correctness
on the GPU with nothing timed and no baselines; the run says so (run.json, every row,
summary.json, whose speed metrics then read "not timed"). The same command again skips
finished problems and resumes unfinished sessions. Exit codes: agent/cli/__init__.py.
"""
import argparse
import json
import os
import sys
import threading
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.bench.html import write_html
from agent.bench.kernelbench_format import write_kernelbench
from agent.bench.markdown import write_markdown
from agent.bench.metrics import (LEVEL_COLUMNS, NOT_TIMED, SPEED_COLUMNS, Metrics, geomean, level_cells, per_level,
                                  run_timed, speed_cells, speedup)
from agent.bench.rows import BenchRow, RowStatus, RunLog
from agent.bench.lanes import run_bench
from agent.bench.runner import BenchOptions, problem_key, select
from agent.cli.common import EXIT_STATUS_HELP, ExitCode, UsageError, positive_float, positive_int
from agent.graph import Budget
from agent.policies import PolicyKind, PolicySpec
from agent.runtime import RuntimeOptions
from tools.evaluator import EvalConfig
from tools.device import versions
from tools.sandbox.backends import SandboxKind
from tools.timing import TimingConfig
from tools.trust import Versus
from tools.version import own_commit

RUN_FILE, SUMMARY_FILE = "run.json", "summary.json"


def add_arguments(bench: argparse.ArgumentParser) -> None:
    bench.description = ("Run one agent session per problem over PROBLEMS (problem files, folders, or a KernelBench "
                         "checkout), with any policy, and write resumable results and metrics to --out: the correct "
                         "rate, fast_p against eager and torch.compile, geomeans, per level. Running the same command "
                         "again skips finished problems and resumes unfinished sessions. `kernelpilot bench report DIR` "
                         "prints the tables of a finished or running run without running anything.")
    bench.epilog = "Only results the trust rules allow count (tools/trust.py). " + EXIT_STATUS_HELP
    bench.add_argument("problems", nargs="+", metavar="PROBLEMS", help="problem files, folders, a KernelBench "
                       "checkout; or `report DIR`")
    bench.add_argument("--levels", default="", help="KernelBench levels, e.g. 1,2 (default: every level found)")
    bench.add_argument("--only", default="*", help="comma-separated globs over problem names (file stems)")
    bench.add_argument("--policy", help="builtin | openai | replay:FILE | local:MODEL_DIR (default: openai when configured, else builtin)")
    bench.add_argument("--model", help="model name for the openai policy")
    bench.add_argument("--base-url", help="OpenAI-compatible endpoint for the openai policy")
    bench.add_argument("--max-turns", type=positive_int, default=5, help="policy turns per problem (default 5)")
    bench.add_argument("--target-speedup", type=positive_float, help="stop a problem once this much faster than eager")
    bench.add_argument("--workers", type=positive_int, default=1, help="sessions at once (evaluations still run one "
                       "at a time; helps LLM policies that wait for tokens)")
    bench.add_argument("--gpus", metavar="all|I,J", help="one lane process per listed GPU (`all`: every GPU), each "
                       "with its own runtime and --workers sessions; problems go to whichever lane is free")
    bench.add_argument("--lanes", type=positive_int, metavar="N", help="with --cpu: N lane processes in the Triton "
                       "interpreter; with --gpus: N per GPU (they load and compile at once and take turns on the "
                       "device to measure); with --ray: N actors (default: one per GPU of the cluster)")
    bench.add_argument("--ray", metavar="local|auto|ADDRESS", help="run the lanes as Ray actors (pip install "
                       "'kernelpilot[ray]'): `local` starts Ray here, `auto` or host:port joins a cluster, one actor "
                       "per GPU (with --cpu: --lanes actors in the interpreter); DIR and $KERNELPILOT_HOME must be on "
                       "storage every node shares")
    bench.add_argument("--sandbox", type=SandboxKind, choices=list(SandboxKind), default=SandboxKind.PROCESS)
    bench.add_argument("--size", choices=["auto", "full", "small"], default="auto",
                       help="problem size: auto = full on a GPU, small in the interpreter (a problem's SMALL_SIZES, "
                            "else KernelBench's sizes lowered by tools/small_sizes.py)")
    bench.add_argument("--untimed", action="store_true", help="correctness only: nothing timed and no baselines, even "
                       "on a GPU (a quick check of a whole level); the run's files say it was untimed")
    bench.add_argument("--cpu", action="store_true", help="use the Triton interpreter even if a GPU is present")
    bench.add_argument("--gpu", type=int, default=0, metavar="INDEX", help="CUDA device index (default 0)")
    bench.add_argument("--db", metavar="URL", help="history store (SQLAlchemy URL; default $KERNELPILOT_HOME/history.db)")
    bench.add_argument("--timeout", type=positive_float, help="wall-clock limit in seconds per evaluation step")
    bench.add_argument("--trials", type=positive_int, default=EvalConfig.trials, metavar="N",
                       help=f"correctness trials per evaluation, each on fresh secret inputs (default {EvalConfig.trials})")
    bench.add_argument("--iters", type=positive_int, default=TimingConfig.iters, metavar="N",
                       help=f"timed calls per measurement, the median reported (default {TimingConfig.iters}; "
                            "the baselines are timed alike and cached per setting)")
    bench.add_argument("--out", type=Path, default=Path("kernelpilot-bench"), help="the run's folder (default kernelpilot-bench)")
    bench.add_argument("--json", action="store_true", help="print exactly one JSON object (summary.json) on stdout")
    bench.add_argument("--html", action="store_true", help="also write DIR/report.html: one self-contained page with "
                       "the metrics, fast_p curves, a speedup histogram and a row per problem")


def run(args) -> ExitCode:
    if args.problems[0] == "report":
        if len(args.problems) != 2:
            raise UsageError("usage: kernelpilot bench report DIR")
        return report(Path(args.problems[1]), args.json, args.html)
    options = bench_options(args)
    files = select(options)
    if not files:
        raise UsageError("no problem matches the selection (check PROBLEMS, --levels and --only)")
    write_run_file(options, files)
    console = Console(stderr=True)
    tally = Tally(list(RunLog(options.out).finished().values()))
    with progress_display(console) as progress:
        task = progress.add_task("problems", total=len(files), completed=len(tally.rows), note=tally.note())
        run_bench(options, on_row=lambda row: tally.finished(row, progress, task, console),
                  on_start=lambda key: tally.started(key, progress, task))
    return report(options.out, args.json, args.html)


def parse_levels(text: str) -> frozenset[int]:
    """`--levels 1,2` (bench, grader serve); '' is every level."""
    try:
        return frozenset(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--levels takes numbers like 1,2, not '{text}'") from None


def bench_options(args) -> BenchOptions:
    levels = parse_levels(args.levels)
    policy = PolicySpec.parse(args.policy, args.model, args.base_url)
    budget = Budget(max_turns=args.max_turns, target_speedup=args.target_speedup,
                    patience=None if policy.kind is PolicyKind.BUILTIN else 5)
    runtime = RuntimeOptions(sandbox=args.sandbox, db=args.db, cuda_index=args.gpu, force_cpu=args.cpu,
                             timeout_s=args.timeout,
                             eval=EvalConfig(trials=args.trials, timing=TimingConfig(iters=args.iters),
                                             timed=not args.untimed, baselines=not args.untimed))
    return BenchOptions(sources=tuple(args.problems), out=args.out, policy=policy, budget=budget, levels=levels,
                        only=tuple(g.strip() for g in args.only.split(",") if g.strip()) or ("*",),
                        workers=args.workers, size=args.size, runtime=runtime,
                        lanes=lane_devices(args, with_ray=True), ray=args.ray)


def lane_devices(args, with_ray: bool = False) -> tuple[int | None, ...]:
    """The device of each lane `--gpus`, `--lanes` (per GPU with --gpus) and `--cpu` ask for (a CUDA index, or None:
    the interpreter); () for one runtime in this process. `with_ray`: the command also takes
    `--ray`, where `--lanes` counts actors on GPUs too (bench; the grader has no --ray)."""
    ray = with_ray and args.ray
    if args.gpus and args.cpu:
        raise UsageError("--gpus and --cpu exclude each other (--cpu --lanes N for interpreter lanes)")
    if args.lanes and not (args.cpu or args.gpus or ray):
        raise UsageError("--lanes goes with --cpu (interpreter lanes), --gpus (lanes per GPU)"
                         + (" or --ray" if with_ray else ""))
    if args.gpus:       # --lanes N: N lane processes per GPU, taking turns (tools/device_lock.py, tools/gpu_share.py)
        return tuple(index for index in gpu_indices(args.gpus) for _ in range(args.lanes or 1))
    return (None,) * (args.lanes or 0) if args.cpu else (0,) * (args.lanes or 0)


def gpu_indices(text: str) -> list[int]:
    count = visible_gpus()
    if text == "all":
        if not count:
            raise UsageError("--gpus all: this machine has no CUDA GPU")
        return list(range(count))
    try:
        indices = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--gpus takes `all` or indices like 0,1, not '{text}'") from None
    if not indices or len(set(indices)) != len(indices) or any(not 0 <= i < count for i in indices):
        raise UsageError(f"--gpus {text}: this machine has {count} GPU(s) (indices 0-{count - 1})" if count
                         else f"--gpus {text}: this machine has no CUDA GPU")
    return indices


def visible_gpus() -> int:
    """CUDA devices, counted through NVML (CUDA stays uninitialised in this process)."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    return torch.cuda.device_count()


def write_run_file(options: BenchOptions, files) -> None:
    options.out.mkdir(parents=True, exist_ok=True)
    selection = [{"key": problem_key(f), "level": f.level, "path": str(f.path)} for f in files]
    run = {"problems": selection, "policy": options.policy.to_state(), "max_turns": options.budget.max_turns,
           "trials": options.runtime.eval.trials, "iters": options.runtime.eval.timing.iters,
           "untimed": not options.runtime.eval.timed, "command": sys.argv[1:]}
    (options.out / RUN_FILE).write_text(json.dumps(run, indent=1) + "\n")


def progress_display(console: Console) -> Progress:
    return Progress(TextColumn("[bold]bench[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[note]}"), console=console, transient=False)


class Tally:
    """What the progress line shows: running, failed, and the geomean so far (counted rows)."""

    def __init__(self, rows: list[BenchRow]):
        self.rows, self.running = list(rows), set()
        self._lock = threading.Lock()

    def started(self, key: str, progress: Progress, task) -> None:
        with self._lock:
            self.running.add(key)
            progress.update(task, note=self.note())

    def finished(self, row: BenchRow, progress: Progress, task, console: Console) -> None:
        speed = f" {row.speedup_vs_eager:.2f}x eager" if row.counted and row.speedup_vs_eager else ""
        console.print(f"{row.key}: {row.status}{speed}" + (f" ({row.reason[:100]})" if row.reason else ""),
                      markup=False, highlight=False)
        with self._lock:
            self.running.discard(row.key)
            self.rows.append(row)
            progress.update(task, advance=1, note=self.note())

    def note(self) -> str:
        failed = sum(1 for row in self.rows if row.status is RowStatus.FAILED)
        mean = geomean([s for row in self.rows if (s := speedup(row, Versus.EAGER)) is not None])
        return (f"running {len(self.running)}, failed {failed}, correct {sum(r.counted for r in self.rows)}"
                + (f", geomean {mean:.2f}x eager" if mean else ""))


def report(out: Path, as_json: bool, as_html: bool = False) -> ExitCode:
    """Tables (or summary.json on stdout) from DIR's rows, over the selection in DIR/run.json;
    report.md, and report.html when asked."""
    if not (out / RUN_FILE).exists():
        raise UsageError(f"{out}: not a bench run folder (no {RUN_FILE})")
    run = json.loads((out / RUN_FILE).read_text())
    selection = run["problems"]
    keys = {p["key"] for p in selection}
    rows = [row for key, row in RunLog(out).finished().items() if key in keys]
    totals: dict[int | None, int] = {}
    for p in selection:
        totals[p["level"]] = totals.get(p["level"], 0) + 1
    found, timed = per_level(rows, totals), run_timed(run.get("untimed", False), rows)
    summary = {"metrics": [m.as_dict(timed) for m in found], "timed": timed, "rows": len(rows),
               "problems": len(selection), "versions": versions(), "commit": own_commit()}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    write_kernelbench(out, rows, selection)
    tables = write_markdown(out, rows, found, selection, timed)
    page = write_html(out, rows, found, selection, timed) if as_html else None
    if as_json:
        print(json.dumps(summary))
    else:
        print_tables(Console(), found, rows, timed)
        print(f"per problem: {tables}" + (f"\nreport: {page}" if page is not None else ""))
    return ExitCode.OK


def print_tables(console: Console, found: list[Metrics], rows: list[BenchRow], timed: bool) -> None:
    table = Table(title="kernelpilot bench")
    for column in LEVEL_COLUMNS + (SPEED_COLUMNS if timed else ("speed",)):
        table.add_column(column, justify="right")
    for m in found:
        table.add_row(*level_cells(m, len(found) > 1), *(speed_cells(m) if timed else [NOT_TIMED]))
    console.print(table)
    failed = [row for row in rows if row.status is RowStatus.FAILED]
    if failed:
        console.print(f"{len(failed)} problem(s) could not be run: "
                      + "; ".join(f"{row.key}: {row.reason[:80]}" for row in failed[:5]), markup=False)
    console.print("fast_p counts every problem of the selection (not run or flagged: a failure); geomeans are over "
                  "the counted rows (summary.json also has them over all problems, the rest at 1.0x)"
                  if timed else "nothing was timed (--untimed, or no GPU: correctness only)",
                  style="dim")
