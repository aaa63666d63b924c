"""`kernelpilot eval`: one candidate kernel against a problem, in the sandbox.

    kernelpilot eval PROBLEM.py CANDIDATE.py [--json] [--trials N] [--timeout S] [--size auto|full|small]
                     [--second-size]

Exit codes: agent/cli/__init__.py.
"""
import argparse
import json
import uuid
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from agent.cli.common import EXIT_STATUS_HELP, ExitCode, UsageError, fail, indented, positive_float, positive_int
from tools.device import DeviceInfo, detect, pick_index
from tools.evaluator import EvalConfig, Evaluator
from tools.history import HistoryError, HistoryStore, Origin
from tools.home import prepare_home
from tools.problems import load_problem
from tools.records import EvalResult, EvalStatus, Mode
from tools.safe_text import clean
from tools.sandbox.backends import SandboxKind, open_sandbox
from tools.sandbox.contracts import Limits

STATUS_STYLE = {EvalStatus.CORRECT: "bold green", EvalStatus.INCORRECT: "bold red", EvalStatus.REJECTED: "bold magenta"}


def add_arguments(ev: argparse.ArgumentParser) -> None:
    ev.description = ("Evaluate CANDIDATE (a Python file defining ModelNew) against PROBLEM (a KernelBench-format "
                      "file defining Model, get_inputs, get_init_inputs) in a sandboxed child process: correctness "
                      "on fresh secret inputs, then on a GPU the median runtime and the speedups over eager and "
                      "torch.compile. Without a GPU, Triton runs in its interpreter and timings are null.")
    ev.epilog = EXIT_STATUS_HELP
    ev.add_argument("problem", type=Path, help="KernelBench-format problem file")
    ev.add_argument("candidate", type=Path, help="candidate source defining class ModelNew")
    ev.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    ev.add_argument("--sandbox", type=SandboxKind, choices=list(SandboxKind), default=SandboxKind.PROCESS,
                    help="sandbox backend: process (default) or docker (see `kernelpilot sandbox check`)")
    ev.add_argument("--trials", type=positive_int, default=5, help="correctness trials, each on fresh inputs (default 5)")
    ev.add_argument("--timeout", type=positive_float, help="wall-clock limit in seconds for each step "
                    "(load, each call, the timed loop); default: 300 for load and first call, 60 per later call")
    ev.add_argument("--size", choices=["auto", "full", "small"], default="auto",
                    help="problem size: small uses the problem's SMALL_SIZES; auto = full on a GPU, small without one")
    ev.add_argument("--second-size", action="store_true",
                    help="also check a correct candidate at a second size set (the problem's sizes scaled by secret "
                         "factors, fresh inputs, loaded again in its own worker); one that fails there is flagged size_specialised")
    ev.add_argument("--cpu", action="store_true", help="use the Triton interpreter even if a GPU is present")
    ev.add_argument("--gpu", type=int, default=0, metavar="INDEX", help="CUDA device index (default 0)")
    ev.add_argument("--no-baselines", action="store_true", help="skip measuring the eager and torch.compile baselines")
    ev.add_argument("--db", metavar="URL", help="record the evaluation in this history store (SQLAlchemy URL); "
                    "default: $KERNELPILOT_HOME/history.db, or KERNELPILOT_DB_URL")
    ev.add_argument("--no-record", action="store_true", help="do not record the evaluation in the history store")


def run(args) -> ExitCode:
    if not args.candidate.is_file():
        raise UsageError(f"{args.candidate}: no such candidate file")
    try:
        source = args.candidate.read_text()
    except UnicodeDecodeError:
        raise UsageError(f"{args.candidate}: not a text file (a candidate is Python source)") from None
    index = pick_index(args.gpu, force_cpu=args.cpu)
    size = args.size if args.size != "auto" else ("small" if index is None else "full")
    problem = load_problem(args.problem, size=size)
    limits = Limits() if args.timeout is None else Limits().with_timeout(args.timeout)
    config = EvalConfig(trials=args.trials, limits=limits, baselines=not args.no_baselines,
                        second_size=args.second_size)
    prepare_home()                                   # its caches: one clear line if it cannot be written
    store = None if args.no_record else open_store(args.db)
    with open_sandbox(args.sandbox, index, limits, warm=0) as sandbox:    # before detect() touches CUDA
        device = detect(args.gpu, force_cpu=args.cpu)
        result = Evaluator(sandbox, device, config).evaluate(problem, source)
    unrecorded = store and record(store, problem, source, result)
    if args.json:
        print(json.dumps(result.summary()))
    else:
        render(result, device)
    if unrecorded:      # the verdict stands; only its record is lost
        return fail(f"infrastructure error: the verdict was not recorded: {unrecorded}", ExitCode.INFRA)
    return ExitCode.OK


def open_store(url: str | None) -> HistoryStore:
    """The store, opened before the evaluation: one that cannot be opened costs no evaluation."""
    try:
        return HistoryStore(url)
    except HistoryError as error:
        raise HistoryError(error.store, f"{error.cause} (--no-record evaluates without it)", "open") from error


def record(store: HistoryStore, problem, source: str, result: EvalResult) -> HistoryError | None:
    """Record one verdict; the store's failure (a full disk, a lost server) is returned, not raised."""
    try:
        store.record(problem, source, result, Origin(policy="cli"), session=f"cli-{uuid.uuid4().hex[:8]}")
    except HistoryError as error:
        return error
    return None


def render(result: EvalResult, device: DeviceInfo) -> None:
    out = Console(soft_wrap=True)
    style = STATUS_STYLE.get(result.status, "bold yellow")
    out.print(f"[{style}]{result.status.value}[/]  " + escape(clean(f"{result.problem} ({result.size} size, "
              f"{result.mode.value}, {result.device}, {result.sandbox} sandbox)")))
    if result.reason:      # cleaned where it entered (tools/sandbox/replies.py); cleaned again to be shown
        out.print(f"  reason: {indented(result.reason, 10)}", markup=False)
    out.print(f"  trials passed: {result.trials_passed}/{result.trials_run}"
              + (f"   max abs error {result.max_abs_error:.3g}   rel error {result.rel_error:.3g}"
                 if result.max_abs_error is not None and result.rel_error is not None else ""))
    if result.timing is not None:
        t = result.timing
        out.print(f"  runtime: {t.median_ms:.4g} ms median of {t.calls} calls (IQR {100 * t.spread:.1f}%, "
                  f"host clock {t.wall_median_ms:.4g} ms)")
        out.print(f"  eager: {_ms(result.eager_ms)} ({_x(result.speedup_vs_eager)})   "
                  f"torch.compile: {_ms(result.compile_ms)} ({_x(result.speedup_vs_compile)})")
    elif device.mode is Mode.CPU_INTERPRETER:
        out.print("  runtime: not measured (no GPU: Triton ran in its interpreter, which says nothing about speed)")
    out.print(f"  flags: {', '.join(f.value for f in result.flags) or 'none'}")
    if result.second_size is not None and result.second_size.holds:
        out.print(f"  second size: {result.second_size.text()}", markup=False)
    for finding in result.lint_findings:
        out.print(f"  problem lint: {indented(finding, 4)}", markup=False)
    for note in result.notes:
        out.print(f"  note: {indented(note, 8)}", markup=False)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g} ms"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
