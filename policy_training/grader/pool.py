"""The grader's pool: its lanes, the bounded queue in front of them, and the reward.

    with GraderPool.open(PoolOptions(runtime=RuntimeOptions(force_cpu=True), capacity=8)) as pool:
        future = pool.submit(Job(problem=problem_source, candidate=source), deadline_s=60)
        graded = future.result()        # Graded: the verdict, its reward, its history-store id
        pool.withdraw(future)           # True if it had not started: it leaves the queue, never graded

One thread per lane takes the oldest waiting job, has its lane evaluate it (lanes.py) and scores
the verdict against the service's one `ProblemStats` (policy_training/reward.py), so every lane
smooths against the same running statistics. At most `capacity` jobs wait: `submit` raises
`QueueFull` beyond that (the server's 429, with a Retry-After from the recent evaluation time).
A job whose deadline passed while it waited is dropped unstarted; one that had started runs to
its end (its sandbox's limits bound it) and is recorded, but counted `late`. A failed job's
future carries the error: `ProblemError` (the request's problem) or one of `INFRA` (our side's).

A lane process that dies (killed, out of host memory) is started again by its own thread, at
most `PoolOptions.restarts` times over the service's life, and the job it died under goes back
to the head of the queue once: a second death under the same job fails it (`LaneFailure`, the
server's 503), so a candidate that could kill lanes gets no verdict and costs a bounded number
of restarts. While a lane restarts, jobs wait for it rather than being refused.
"""
import logging
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

from agent.errors import CheckpointError
from agent.runtime import RuntimeOptions
from policy_training.grader.lanes import Job, LaneDevice, LaneFailure, LocalLane, ProcessLane
from policy_training.grader.protocol import QueueState
from policy_training.reward import ProblemStats, Reward, RewardConfig, score
from tools.history_errors import HistoryError
from tools.records import EvalResult
from tools.sandbox.contracts import SandboxError

log = logging.getLogger("kernelpilot.grader")
INFRA = (LaneFailure, SandboxError, HistoryError, CheckpointError, OSError, MemoryError)   # our side's: 503
CLOSE_WAIT_S = 10.0         # for a lane's running evaluation when the service stops
FIRST_GUESS_S = 5.0         # an evaluation's length before any was measured (Retry-After)


@dataclass(frozen=True)
class PoolOptions:
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    devices: tuple[int | None, ...] = ()    # a lane process each (CUDA index; None: the interpreter); () one lane here
    capacity: int = 64                      # jobs that may wait for a lane
    restarts: int = 3                       # times a dead lane process is started again, all lanes together
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass(frozen=True)
class Graded:
    result: EvalResult
    reward: Reward
    evaluation_id: int | None
    queued_s: float
    lane_s: float = 0.0     # its lane's whole time on it: the problem's load, the evaluation, the store's record


class QueueFull(Exception):
    def __init__(self, capacity: int, retry_after_s: int):
        super().__init__(f"the queue is full ({capacity} waiting): retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class PoolClosed(RuntimeError):
    """The service is stopping, or none of its lanes is alive."""


@dataclass(frozen=True)
class Waiting:
    job: Job
    future: Future
    arrived: float          # time.monotonic()
    due: float
    retried: bool = False   # its lane died under it once already


class GraderPool:
    def __init__(self, lanes: list, options: PoolOptions):
        self.lanes, self.options, self.stats = lanes, options, ProblemStats()
        self.counts: Counter[str] = Counter()
        self._waiting: deque[Waiting] = deque()
        self._cond = threading.Condition()
        self._in_flight, self._closed, self._mean_s = 0, False, FIRST_GUESS_S
        self._restarts_left, self._restarting = options.restarts, 0
        self._threads = [threading.Thread(target=self._serve, args=(index,), name=f"grader-lane-{index}", daemon=True)
                         for index in range(len(lanes))]

    @staticmethod
    @contextmanager
    def open(options: PoolOptions) -> Iterator["GraderPool"]:
        """Open the lanes (from the main thread: a lane process dies with the thread that
        started it), serve, and on the way out drop what waits and close them."""
        session = f"grader-{uuid.uuid4().hex[:8]}"          # the history store's session of this service
        with ExitStack() as stack:
            lanes = []
            for device in options.devices or ("here",):
                lane = (LocalLane(options.runtime, session) if device == "here"
                        else ProcessLane(options.runtime, device, session, options.devices.count(device)))
                stack.callback(lane.close)
                lanes.append(lane)
            pool = GraderPool(lanes, options)
            stack.callback(pool.close)          # first out: no lane closes under a running job
            for thread in pool._threads:
                thread.start()
            yield pool

    def devices(self) -> list[tuple[LaneDevice, bool]]:
        return [(lane.device, lane.alive) for lane in self.lanes]

    def submit(self, job: Job, deadline_s: float) -> Future:
        now = time.monotonic()
        with self._cond:
            if self._closed or not (self._restarting or any(lane.alive for lane in self.lanes)):
                raise PoolClosed("the grader is stopping" if self._closed else "no runtime of the grader is alive")
            if len(self._waiting) >= self.options.capacity:
                self.counts["rejected"] += 1
                raise QueueFull(self.options.capacity, self._retry_after())
            future: Future = Future()
            self._waiting.append(Waiting(job, future, now, now + deadline_s))
            self._cond.notify()
        return future

    def withdraw(self, future: Future) -> bool:
        """Take a job off the queue if it has not started (its deadline passed, or its client left)."""
        with self._cond:
            for waiting in self._waiting:
                if waiting.future is future and not waiting.retried:   # a retried job had started
                    self._waiting.remove(waiting)
                    future.cancel()
                    self.counts["expired"] += 1
                    return True
        return False

    def state(self) -> QueueState:
        with self._cond:
            return QueueState(depth=len(self._waiting), capacity=self.options.capacity, in_flight=self._in_flight,
                              lanes=len(self.lanes), **{key: self.counts[key] for key in
                                                        ("graded", "rejected", "expired", "late", "refused",
                                                         "failed", "unrecorded", "retried", "restarts")})

    def retry_after(self) -> int:
        with self._cond:
            return self._retry_after()

    def _retry_after(self) -> int:
        """Seconds until the queue has likely moved: its work spread over the live lanes."""
        alive = max(1, sum(lane.alive for lane in self.lanes))
        return max(1, min(300, math.ceil(self._mean_s * (len(self._waiting) + self._in_flight) / alive)))

    def _serve(self, index: int) -> None:
        while (self.lanes[index].alive or self._restart(index)) and (waiting := self._take()) is not None:
            self._grade(self.lanes[index], waiting)
        with self._cond:
            if not self._closed and not self._restarting and not any(other.alive for other in self.lanes):
                while self._waiting:    # the last lane died for good
                    self._waiting.popleft().future.set_exception(LaneFailure("no runtime of the grader is alive"))

    def _restart(self, index: int) -> bool:
        """Start a dead lane process again (from this, its own thread: the new process dies with it,
        at the service's end), while the restart budget lasts."""
        dead = self.lanes[index]
        with self._cond:
            if self._closed or not isinstance(dead, ProcessLane) or self._restarts_left <= 0:
                return False
            self._restarts_left -= 1
            self._restarting += 1
            self.counts["restarts"] += 1
        log.warning("%s died (exit code %s): starting it again", dead.name, dead.process.exitcode)
        try:
            dead.close()
            self.lanes[index] = dead.restarted()
            return True
        except LaneFailure as error:
            log.error("%s could not be started again: %s", dead.name, error)
            return False
        finally:
            with self._cond:
                self._restarting -= 1
                self._cond.notify_all()

    def _take(self) -> Waiting | None:
        with self._cond:
            while True:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                waiting = self._waiting.popleft()
                if time.monotonic() >= waiting.due:     # its request has had its 504
                    self._expire(waiting)
                elif waiting.retried or waiting.future.set_running_or_notify_cancel():
                    self._in_flight += 1
                    return waiting

    def _expire(self, waiting: Waiting) -> None:
        if waiting.retried:     # started once, so not cancellable: it ends as its lane's failure
            waiting.future.set_exception(LaneFailure("its lane died under it, and its deadline passed before "
                                                     "it could run again"))
            self.counts["failed"] += 1
        else:
            waiting.future.cancel()
            self.counts["expired"] += 1

    def _grade(self, lane, waiting: Waiting) -> None:
        started = time.monotonic()
        try:
            evaluated = lane.evaluate(waiting.job)
            reward = score(evaluated.result, self.options.reward, self.stats, tokens=waiting.job.tokens)
        except LaneFailure as error:
            if not lane.alive and not waiting.retried and self._again(waiting, started):
                return
            self._done(started, "failed")
            waiting.future.set_exception(error)
            return
        except Exception as error:      # the request's handler answers it (422 or 503); the lane serves on
            self._done(started, "failed" if isinstance(error, INFRA) else "refused")
            waiting.future.set_exception(error)
            return
        self._done(started, "graded", late=time.monotonic() > waiting.due, unrecorded=bool(evaluated.unrecorded))
        if evaluated.unrecorded:
            log.warning("a verdict was not recorded: %s", evaluated.unrecorded)
        waiting.future.set_result(Graded(evaluated.result, reward, evaluated.evaluation_id, started - waiting.arrived,
                                         time.monotonic() - started))

    def _again(self, waiting: Waiting, started: float) -> bool:
        """Back to the head of the queue, once, after its lane died under it (the lane restarts)."""
        with self._cond:
            if self._closed:
                return False
            self._in_flight -= 1
            self.counts["retried"] += 1
            self._waiting.appendleft(replace(waiting, retried=True))
            self._cond.notify()
        log.warning("a lane died under a job: it goes back to the queue once (%.1fs after it started)",
                    time.monotonic() - started)
        return True

    def _done(self, started: float, outcome: str, late: bool = False, unrecorded: bool = False) -> None:
        with self._cond:
            self._in_flight -= 1
            self.counts[outcome] += 1
            self.counts["late"] += late
            self.counts["unrecorded"] += unrecorded
            self._mean_s = 0.7 * self._mean_s + 0.3 * (time.monotonic() - started)

    def close(self) -> None:
        """Stop taking jobs; what waits is cancelled (its requests get 503); a running job gets
        CLOSE_WAIT_S to finish before its lane is closed under it."""
        with self._cond:
            self._closed = True
            while self._waiting:
                self._waiting.popleft().future.cancel()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(CLOSE_WAIT_S)
