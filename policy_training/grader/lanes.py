"""Where the grader's evaluations run: lanes, each a runtime on one device.

    lane = LocalLane(RuntimeOptions(force_cpu=True), session="grader-1")    # in this process
    lane = ProcessLane(RuntimeOptions(), device=1, session="grader-1")      # a spawned process on cuda:1
    evaluated = lane.evaluate(Job(problem=problem_source, candidate=source))
    lane.close()

A lane loads the problem from its source (written once under $KERNELPILOT_HOME/grader/problems/,
named by its hash, and kept loaded), evaluates the candidate on its runtime and records the
verdict in the history store (Origin policy "grader"). It does not score: the reward's running
statistics are the service's, one for all lanes (pool.py).

One lane runs in the server's own process (the default: one device). Several devices get a
spawned process each, as bench's lanes do (agent/bench/lanes.py): two runtimes in one process
would share torch's global RNG on the trusted side, which seeds the reference's weights.
A lane process dies with the server. `ProblemError` (a problem that cannot be used) crosses
back as itself; every other failure of a lane is `LaneFailure`, our side's.
"""
import multiprocessing
import os
import threading
from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from agent.bench.lanes import lane_runtime
from agent.runtime import Runtime, RuntimeOptions
from tools.files import write_atomic
from tools.history import Origin
from tools.history_errors import HistoryError
from tools.home import kernelpilot_home
from tools.problems import Problem, ProblemError, load_problem, source_hash
from tools.records import EvalResult
from tools.sandbox.forkserver_guard import die_with

KEPT_PROBLEMS = 64
START_S = 600.0             # a lane process's imports, fork server and device
FULL_LANES = 4              # lanes per GPU in the full protocol: all but the load waits for the device lock
CORES_PER_LANE = 2          # a lane process (references, comparisons) and its candidate's worker (import, compile)
MOST_REWARD_LANES = 8       # per GPU: about where the device lock is busy all the time (issue 20 part 5)


class LaneFailure(RuntimeError):
    """A lane could not grade (its sandbox, its process, its store at open): our side's fault."""


@dataclass(frozen=True)
class Job:
    problem: str                    # the problem's source
    candidate: str                  # the candidate's source
    tokens: int | None = None       # the answer's length, for the length penalty
    model: str | None = None        # the model that wrote the candidate
    policy: str = "grader"          # the history store's origin: the service, or a training stage grading on lanes
    analysis: str | None = None     # the text before the kernel, recorded with it


@dataclass(frozen=True)
class Evaluated:
    result: EvalResult
    evaluation_id: int | None       # None: the history store failed (`unrecorded` says why)
    unrecorded: str = ""


@dataclass(frozen=True)
class LaneDevice:
    device: str                     # the device's name
    mode: str                       # gpu or cpu-interpreter
    sandbox: str


class ProblemCache:
    """Problems by the hash of their source: written to a file once, loaded once per size."""

    def __init__(self, folder: Path):
        self.folder, self._loaded, self._lock = folder, OrderedDict(), threading.Lock()

    def load(self, source: str, size: str) -> Problem:
        digest = source_hash(source)
        with self._lock:
            if (digest, size) in self._loaded:
                self._loaded.move_to_end((digest, size))
                return self._loaded[(digest, size)]
        path = self.folder / f"grader_{digest[:16]}.py"
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(path, source)                  # another lane may write the same file
        problem = load_problem(path, size=size, suite="grader")
        with self._lock:
            self._loaded[(digest, size)] = problem
            while len(self._loaded) > KEPT_PROBLEMS:
                self._loaded.popitem(last=False)
        return problem


def default_lanes(protocol: str, cores: int | None, gpus: int = 1) -> int:
    """Lanes per GPU where none are asked for: in the reward protocol, where the first trial
    (the candidate's compile) and the load run beside other lanes' measurements, as many as the
    CPU cores allow, two a lane, up to MOST_REWARD_LANES; FULL_LANES in the full protocol."""
    if protocol != "reward":
        return FULL_LANES
    return max(1, min(MOST_REWARD_LANES, (cores or 1) // (CORES_PER_LANE * max(gpus, 1))))


def describe(runtime: Runtime) -> LaneDevice:
    return LaneDevice(runtime.device.name, runtime.device.mode.value, runtime.options.sandbox.value)


def evaluate(runtime: Runtime, problems: ProblemCache, job: Job, session: str) -> Evaluated:
    """One job on one runtime: the verdict, recorded."""
    problem = problems.load(job.problem, runtime.size("auto"))
    result = runtime.evaluator.evaluate(problem, job.candidate)
    try:
        evaluation_id = runtime.store.record(problem, job.candidate, result,
                                             Origin(policy=job.policy, model=job.model, analysis=job.analysis),
                                             session=session)
    except HistoryError as error:       # the verdict stands; only its record is lost
        return Evaluated(result, None, str(error))
    return Evaluated(result, evaluation_id)


def problem_folder() -> Path:
    return kernelpilot_home() / "grader" / "problems"


class LocalLane:
    """A runtime in this process."""

    def __init__(self, options: RuntimeOptions, session: str):
        self.session, self._stack = session, ExitStack()
        self.runtime = self._stack.enter_context(Runtime.open(options))
        self.device, self.problems, self.alive = describe(self.runtime), ProblemCache(problem_folder()), True

    def evaluate(self, job: Job) -> Evaluated:
        return evaluate(self.runtime, self.problems, job, self.session)

    def close(self) -> None:
        self._stack.close()


class ProcessLane:
    """A runtime in a spawned process on one CUDA device (None: the interpreter); jobs go
    over a pipe, one at a time. It dies when the thread that started it ends: the main thread,
    or the pool's thread of its lane when the pool starts it again (pool.py)."""

    def __init__(self, options: RuntimeOptions, device: int | None, session: str, sharing: int = 1):
        context = multiprocessing.get_context("spawn")      # a fresh interpreter: no CUDA, no fork server
        self.options, self.device_index, self.session, self.sharing = options, device, session, sharing
        self.name = f"lane-{'cpu' if device is None else device}"
        self._pipe, child = context.Pipe()
        runtime = lane_runtime(options, device, sharing)    # one of `sharing` lanes on its GPU (tools/gpu_share.py)
        self.process = context.Process(target=lane_main, args=(runtime, session, child, os.getpid()), name=self.name)
        self.process.start()
        child.close()
        self._usable = True
        self.device = self._receive(START_S, "start")

    @property
    def alive(self) -> bool:
        return self._usable and self.process.is_alive()

    def evaluate(self, job: Job) -> Evaluated:
        try:
            self._pipe.send(job)
        except OSError as error:
            self._usable = False
            raise LaneFailure(f"{self.name} is gone: {error}") from None
        return self._receive(None, "evaluation")

    def _receive(self, timeout: float | None, during: str):
        if timeout is not None and not self._pipe.poll(timeout):
            self.close()
            raise LaneFailure(f"{self.name} did not answer within {timeout:.0f}s ({during})")
        try:
            kind, payload = self._pipe.recv()
        except (EOFError, OSError):
            self._usable = False
            self.process.join(5)
            raise LaneFailure(f"{self.name} died during its {during} (exit code {self.process.exitcode})") from None
        if kind == "problem":
            raise ProblemError(payload)
        if kind == "failure":
            if during == "start":
                self._usable = False
            raise LaneFailure(f"{self.name}: {payload}")
        return payload

    def restarted(self) -> "ProcessLane":
        """A new lane process in this one's place (close this one first)."""
        return ProcessLane(self.options, self.device_index, self.session, self.sharing)

    def close(self) -> None:
        self._usable = False
        try:
            self._pipe.send(None)
        except OSError:
            pass            # it is gone already
        self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()        # its fork server and workers die with it
            self.process.join(10)
        self._pipe.close()


def lane_main(options: RuntimeOptions, session: str, pipe, parent: int) -> None:
    """A lane process: open the runtime, then evaluate each job until None."""
    die_with(parent)
    try:
        stack = ExitStack()
        runtime = stack.enter_context(Runtime.open(options))
    except Exception as error:      # every failure to start goes back as one line
        pipe.send(("failure", f"cannot open its runtime: {type(error).__name__}: {error}"))
        return
    with stack:
        pipe.send(("ready", describe(runtime)))
        problems = ProblemCache(problem_folder())
        while (job := pipe.recv()) is not None:
            pipe.send(answer(runtime, problems, job, session))


def answer(runtime: Runtime, problems: ProblemCache, job: Job, session: str) -> tuple[str, object]:
    try:
        return "ok", evaluate(runtime, problems, job, session)
    except ProblemError as error:
        return "problem", str(error)
    except Exception as error:      # our side's: it crosses back as a LaneFailure, the lane serves on
        return "failure", f"{type(error).__name__}: {error}"
