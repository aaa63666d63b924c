"""Where a bench run's sessions run: lanes, each a runtime on one device.

    options = BenchOptions(sources=(Path("benchmarks/problems"),), out=Path("out"),
                           policy=PolicySpec.parse("builtin"), budget=Budget(max_turns=5))
    rows = run_bench(options, on_row=print)

By default the run is one lane in this process: one runtime, `workers` sessions on threads
(`agent/bench/runner.py` runs each problem). Otherwise:

- **Lane processes** (`BenchOptions.lanes`, from `--gpus 0,1` or `--cpu --lanes N`): one
  spawned process per lane, each opening its own runtime (sandbox first, then CUDA) on its
  device, with `workers` sessions at once on threads. Problems wait in one queue and go to
  whichever lane has a free worker, so a slow problem never holds the others back. Lanes on
  one GPU (`--gpus 0 --lanes 6`) know how many share it: each evaluation is admitted by
  their GPU-memory admission (tools/gpu_share.py), a heavy problem's alone on the GPU.
- **Ray** (`BenchOptions.ray`, from `--ray local|auto|ADDRESS`; the optional `ray` extra,
  imported only here): one actor per lane, holding a runtime, with `num_gpus=1` on GPUs
  (Ray picks the card) and none in the interpreter. An actor that dies is restarted once
  and its problem tried once more (it resumes from its checkpoint where it got that far).

Lanes share the run folder, the history store and the checkpoint database: each lane
appends its own started.jsonl lines (one short write each, atomic under O_APPEND) and
returns its rows, which only the driver writes. SQLite handles several processes on one
machine's disk; Ray across machines needs DIR and $KERNELPILOT_HOME on storage every node
shares (and a PostgreSQL history store). A lane whose runtime breaks (sandbox, store,
checkpoints) or whose process dies stops the run with `LaneError`; the run is resumable.
"""
import multiprocessing
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace

from agent.bench.rows import BenchRow, RunLog
from agent.bench.runner import FATAL, BenchOptions, lane_name, problem_key, run_one, select
from agent.errors import LaneError
from agent.runtime import Runtime, RuntimeOptions
from tools.problems import ProblemFile
from tools.sandbox.forkserver_guard import die_with

POLL_S = 1.0
RAY_LOCAL = "local"

Task = tuple[ProblemFile, str | None]     # a problem and the session a killed run started for it


def lane_runtime(options: RuntimeOptions, device: int | None, sharing: int = 1) -> RuntimeOptions:
    """The runtime options of a lane on CUDA device `device` (None: the interpreter), one of
    `sharing` lanes on that device (tools/gpu_share.py admits their evaluations)."""
    return replace(options, force_cpu=device is None, cuda_index=device or 0,
                   share=replace(options.share, lanes=sharing))


class Lane:
    """A runtime on one device and the problems it runs: a lane process's or a Ray actor's."""

    def __init__(self, options: BenchOptions, device: int | None, sharing: int = 1):
        self.options, self.device, self.log = options, device, RunLog(options.out)
        self._runtime = Runtime.open(lane_runtime(options.runtime, device, sharing))
        self.runtime = self._runtime.__enter__()
        self.name = lane_name(self.runtime)

    def run(self, task: Task) -> BenchRow:
        """One problem; FATAL errors leave as LaneError (picklable, naming the lane)."""
        f, session_id = task
        try:
            return replace(run_one(self.runtime, self.options, f, self.log, session_id, None), lane=self.name)
        except FATAL as error:
            raise LaneError(f"lane on {self.runtime.device.name}: {type(error).__name__}: {error}") from None

    def close(self) -> None:
        self._runtime.__exit__(None, None, None)


def run_bench(options: BenchOptions, on_row: Callable[[BenchRow], None] | None = None,
              on_start: Callable[[str], None] | None = None) -> list[BenchRow]:
    """Run every selected problem without a row yet; the rows of this run, in finishing order."""
    files, log = select(options), RunLog(options.out)
    done, sessions = log.finished(), log.sessions()
    todo = [f for f in files if problem_key(f) not in done]
    rows: list[BenchRow] = []
    if not todo:
        return rows

    def finish(row: BenchRow) -> None:
        log.finish(row)
        rows.append(row)
        if on_row is not None:
            on_row(row)

    if options.lanes or options.ray is not None:
        run_lanes(options, todo, sessions, finish, on_start)
        return rows
    with Runtime.open(options.runtime) as runtime, ThreadPoolExecutor(max_workers=options.workers) as pool:
        futures = [pool.submit(run_one, runtime, options, f, log, sessions.get(problem_key(f)), on_start)
                   for f in todo]
        try:
            for future in as_completed(futures):
                finish(replace(future.result(), lane=lane_name(runtime)))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return rows


def run_lanes(options: BenchOptions, todo: list[ProblemFile], sessions: dict[str, str],
              finish: Callable[[BenchRow], None], on_start: Callable[[str], None] | None) -> None:
    """Run `todo` on the lanes `options` names; `finish` gets each row as it comes."""
    options = replace(options, out=options.out.resolve())     # a lane's working directory may be another
    tasks = [(replace(f, path=f.path.resolve()), sessions.get(problem_key(f))) for f in todo]
    if options.ray is not None:
        run_on_ray(options, tasks, finish, on_start)
    else:
        run_in_processes(options, tasks, finish, on_start)


# ----------------------------------------------------------------------------- lane processes

def run_in_processes(options: BenchOptions, tasks: list[Task], finish: Callable[[BenchRow], None],
                     on_start: Callable[[str], None] | None) -> None:
    context = multiprocessing.get_context("spawn")    # a fresh interpreter: no CUDA, no fork server inherited
    inbox, outbox = context.Queue(), context.Queue()
    for task in tasks:
        inbox.put(task)
    for _ in range(len(options.lanes) * options.workers):
        inbox.put(None)
    processes = [context.Process(target=lane_main, args=(options, device, options.lanes.count(device), inbox, outbox,
                                                         os.getpid()),
                                 name=f"lane-{'cpu' if device is None else device}")
                 for device in options.lanes]
    for process in processes:
        process.start()
    left = len(tasks)
    try:
        while left:
            try:
                kind, payload = outbox.get(timeout=POLL_S)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise LaneError(f"lane process {dead[0].name} died (exit code {dead[0].exitcode}); "
                                    "run the same command again to resume") from None
                continue
            if kind == "start" and on_start is not None:
                on_start(payload)
            elif kind == "row":
                finish(payload)
                left -= 1
            elif kind == "fatal":
                raise LaneError(payload)
        for process in processes:
            process.join(60)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()       # its fork server and workers die with it
                process.join(10)


def lane_main(options: BenchOptions, device: int | None, sharing: int, inbox, outbox, parent: int) -> None:
    """A lane process, one of `sharing` on its device: `options.workers` threads take tasks until
    they meet None. It dies with the driver (a killed run's lanes must not go on beside its restart)."""
    die_with(parent)
    try:
        lane = Lane(options, device, sharing)
    except FATAL as error:
        outbox.put(("fatal", f"lane on {'cpu' if device is None else f'cuda:{device}'}: {type(error).__name__}: "
                             f"{error}"))
        return
    try:
        threads = [threading.Thread(target=serve, args=(lane, inbox, outbox)) for _ in range(options.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        lane.close()


def serve(lane: Lane, inbox, outbox) -> None:
    while (task := inbox.get()) is not None:
        outbox.put(("start", problem_key(task[0])))
        try:
            outbox.put(("row", lane.run(task)))
        except LaneError as error:
            outbox.put(("fatal", str(error)))
            return


# ----------------------------------------------------------------------------- Ray

def import_ray():
    try:
        import ray
    except ImportError:
        raise LaneError("--ray needs Ray: pip install 'kernelpilot[ray]'") from None
    return ray


def run_on_ray(options: BenchOptions, tasks: list[Task], finish: Callable[[BenchRow], None],
               on_start: Callable[[str], None] | None) -> None:
    ray = import_ray()
    cpu = options.runtime.force_cpu
    count = len(options.lanes)
    if options.ray == RAY_LOCAL:
        ray.init(num_cpus=max(count, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    else:
        env = {k: v for k, v in os.environ.items() if k.startswith("KERNELPILOT_")}
        ray.init(address=options.ray, runtime_env={"env_vars": env}, log_to_driver=False)
    try:
        if not count:
            count = 1 if cpu else int(ray.cluster_resources().get("GPU", 0))
            if not count:
                raise LaneError("the Ray cluster has no GPU: use --cpu --lanes N for interpreter lanes")
        actor = ray.remote(num_gpus=0 if cpu else 1, num_cpus=1 if cpu else 0, max_restarts=1, max_task_retries=1,
                           max_concurrency=options.workers)(Lane)
        # Ray hands each GPU actor one card, visible to it as device 0.
        lanes = [actor.remote(options, None if cpu else 0) for _ in range(count)]
        feed(ray, lanes, options.workers, deque(tasks), finish, on_start)
    finally:
        ray.shutdown()


def feed(ray, lanes: list, workers: int, waiting: deque, finish: Callable[[BenchRow], None],
         on_start: Callable[[str], None] | None) -> None:
    """Keep every actor at `workers` problems in flight until none waits."""
    running: dict = {}      # object ref -> the actor running it
    load = {id(lane): 0 for lane in lanes}
    while waiting or running:
        for lane in lanes:
            while waiting and load[id(lane)] < workers:
                task = waiting.popleft()
                if on_start is not None:
                    on_start(problem_key(task[0]))
                running[lane.run.remote(task)] = lane
                load[id(lane)] += 1
        done, _ = ray.wait(list(running), num_returns=1)
        lane = running.pop(done[0])
        load[id(lane)] -= 1
        try:
            finish(ray.get(done[0]))
        except ray.exceptions.RayTaskError as error:
            raise LaneError(str(error.cause) if error.cause is not None else str(error)) from None
        except ray.exceptions.RayActorError as error:
            raise LaneError(f"a Ray lane died twice: {error}") from None
