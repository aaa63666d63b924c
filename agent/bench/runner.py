"""The batch runner's parts: the options, the selection, and one problem as one agent
session on a runtime (`run_one`); `agent/bench/lanes.py` runs them (`run_bench`).

Each problem is a real agent session (graph, toolbox, history store, checkpoints), so LLM
policies and the built-in policy are measured the same way and every evaluation is
training data. The run is resumable (`agent/bench/rows.py`): a problem with a row in
DIR/results.jsonl is skipped; one whose session was started but has no row goes on from
that session's checkpoint (tool calls already recorded are not run again), so `kill -9`
at any moment loses nothing and runs nothing twice. Each problem's best.py, report.md and
summary.json go to DIR/problems/KEY/.

`workers` sessions run at once on a runtime (threads sharing it): an LLM policy waits for
tokens most of a turn, while the evaluator runs one evaluation at a time, so kernel
timings never overlap on the device. A policy that computes in this process (the built-in
one traces the problem with torch.fx, which patches `nn.Module.__call__` process-wide)
takes its turns under the evaluator's lock (`SerialPolicy`), so no turn overlaps another
or an evaluation's reference run; only an endpoint's policy turns concurrently. A problem that cannot be run (a bad file, the
trusted side out of memory, an endpoint that is down) is a FAILED row with its reason and
the run goes on; a broken sandbox, history store or checkpoint database stops the run.
"""
import fnmatch
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.bench.rows import BenchRow, RowStatus, RunLog
from agent.errors import CheckpointError
from agent.graph import Budget, attempts_of, session_config
from agent.policies import PolicyKind, PolicySpec
from agent.policy import Policy, PolicyTurn, TurnInput
from agent.report import answer, write_outputs
from agent.runtime import Runtime, RuntimeOptions
from agent.session import AgentSession, SessionOptions
from tools.history_errors import HistoryError
from tools.problems import ProblemFile, find_problem_files, load_problem
from tools.records import Mode
from tools.sandbox.contracts import SandboxError
from tools.trust import Use, allowed, why_not

FATAL = (SandboxError, HistoryError, CheckpointError)    # the runtime itself is broken: every later problem would fail
CONCURRENT = frozenset({PolicyKind.OPENAI})              # policies whose turns may overlap (they wait on an endpoint)


class SerialPolicy:
    """A policy whose turns hold `lock` (the evaluator's): one at a time, and never during an evaluation."""

    def __init__(self, policy: Policy, lock):
        self.policy, self.lock = policy, lock
        self.name, self.model = policy.name, policy.model

    def turn(self, turn_input: TurnInput) -> PolicyTurn:
        with self.lock:
            return self.policy.turn(turn_input)

    def __getattr__(self, name: str):
        return getattr(self.policy, name)


@dataclass(frozen=True)
class BenchOptions:
    sources: tuple[Path, ...]                   # problem files, folders, KernelBench checkouts
    out: Path
    policy: PolicySpec
    budget: Budget = field(default_factory=Budget)
    levels: frozenset[int] = frozenset()        # empty: every level found
    only: tuple[str, ...] = ("*",)              # globs over problem names (file stems)
    workers: int = 1
    size: str = "auto"
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    lanes: tuple[int | None, ...] = ()          # a lane process per entry: a CUDA index, or None (the interpreter)
    ray: str | None = None                      # lanes as Ray actors: "local", "auto" or a cluster address


def select(options: BenchOptions) -> list[ProblemFile]:
    """The run's problems, in order, each once (a file named twice counts once)."""
    return select_files(options.sources, options.levels, options.only)


def select_files(sources, levels: frozenset[int], only: tuple[str, ...]) -> list[ProblemFile]:
    """The problems of `sources` in `levels` (empty: all) whose names match a glob of `only`."""
    found: dict[str, ProblemFile] = {}
    for source in sources:
        for f in find_problem_files(source):
            if (not levels or f.level in levels) and any(fnmatch.fnmatch(f.path.stem, glob) for glob in only):
                found.setdefault(problem_key(f), f)
    return list(found.values())


def problem_key(f: ProblemFile) -> str:
    return f"L{f.level}/{f.path.stem}" if f.level is not None else f.path.stem


def lane_name(runtime: Runtime) -> str:
    """'host/pid device': which process on which machine ran a problem, on which device."""
    device = runtime.device
    where = "cpu" if device.cuda_index is None else f"cuda:{device.cuda_index} {device.name}"
    return f"{socket.gethostname()}/{os.getpid()} {where}"


def timing_on(runtime: Runtime) -> bool:
    """Does this runtime time kernels (a GPU, and not --untimed)? Its rows say so."""
    return runtime.device.mode is Mode.GPU and runtime.evaluator.config.timed


def run_one(runtime: Runtime, options: BenchOptions, f: ProblemFile, log: RunLog, session_id: str | None,
            on_start: Callable[[str], None] | None) -> BenchRow:
    key, start = problem_key(f), time.perf_counter()
    if on_start is not None:
        on_start(key)
    try:
        return run_problem(runtime, options, f, log, session_id, start)
    except FATAL:
        raise
    except Exception as error:  # this problem could not be run: a row with its reason, and the run goes on
        return BenchRow(key=key, level=f.level, name=f.path.stem, status=RowStatus.FAILED, session=session_id,
                        reason=f"{type(error).__name__}: {str(error)[:300]}{where(error)}", policy=options.policy.kind.value,
                        model=options.policy.model, seconds=round(time.perf_counter() - start, 1),
                        timed=timing_on(runtime))


def where(error: BaseException) -> str:
    """' (at file:line in function)' of the innermost frame, for a failed row's reason."""
    frames = traceback.extract_tb(error.__traceback__)
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""


def run_problem(runtime: Runtime, options: BenchOptions, f: ProblemFile, log: RunLog, session_id: str | None,
                start: float) -> BenchRow:
    """One agent session on one problem (a new one, or the one a killed run started)."""
    key = problem_key(f)
    problem = load_problem(f.path, size=runtime.size(options.size), suite=f.suite, level=f.level)
    saved = runtime.graph.get_state(session_config(session_id, options.budget)).values if session_id else {}
    resumed = "backend" in saved and "problem_path" in saved
    if not resumed:     # killed before its first whole checkpoint (so before any evaluation): start afresh
        session_id = None
    session_options = SessionOptions(problem=f.path, policy=options.policy, size=options.size,
                                     budget=options.budget, session_id=session_id)
    policy = options.policy.build(runtime.store, options.budget)
    if options.policy.kind not in CONCURRENT:
        policy = SerialPolicy(policy, runtime.evaluator.serial)
    session = AgentSession.open(runtime, session_options, policy, problem=problem, resumed=resumed)
    if session_id is None:
        log.started(key, session.id)
    final = session.run()
    folder = Path("problems") / key.replace("/", "_")
    summary = write_outputs(options.out / folder, final, session.id, runtime.device)
    row = row_of(key, f, final, summary, options, folder, time.perf_counter() - start)
    return replace(row, timed=timing_on(runtime))


def last_words(final: dict) -> str:
    """': ' and the last two lines of the policy's last message (why it proposed no kernel: the
    built-in policy names the construct it has no plan for), or ''."""
    said = next((m.get("content") or "" for m in reversed(final.get("messages", [])) if m.get("role") == "assistant"), "")
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    return ": " + " ".join(lines[-2:]) if lines else ""


def row_of(key: str, f: ProblemFile, final: dict, summary, options: BenchOptions, folder: Path,
           seconds: float) -> BenchRow:
    attempts = attempts_of(final)
    last = attempts[-1] if attempts else None
    if summary.status != "none":     # the answer's flags: the metrics read them (tools/trust.py)
        status, flags, reason = RowStatus(summary.status), tuple(answer(final).flags), ""
    elif last is not None:
        status, flags = RowStatus(last.status), tuple(last.flags)
        reason = last.reason or (why_not(last, Use.BEST) if not allowed(last, Use.BEST) else "")
    else:
        status, flags, reason = RowStatus.NO_KERNEL, (), "the policy evaluated no kernel" + last_words(final)
    return BenchRow(
        key=key, level=f.level, name=f.path.stem, status=status, speedup_vs_eager=summary.speedup_vs_eager,
        speedup_vs_compile=summary.speedup_vs_compile, runtime_ms=summary.runtime_ms, flags=flags,
        turns=summary.turns, attempts=summary.attempts, tokens=summary.tokens, gpu_seconds=summary.gpu_seconds,
        session=summary.session_id, stop=summary.stop_reason, reason=reason[:300], policy=options.policy.kind.value,
        model=options.policy.model, seconds=round(seconds, 1), outputs=str(folder))
