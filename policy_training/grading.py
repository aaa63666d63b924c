"""Grading a model's completions for the training stages (rft, grpo, best-of, evaluate): the real evaluator,
the reward, and the write-back of every candidate to the history store.

Two graders with one interface, `grade(problem, completion, tokens) -> Graded`:
- `LocalGrader`: a runtime in this process (agent/runtime.py: sandbox, evaluator, store), the
  Triton interpreter on a machine without a GPU; each verdict is recorded with the stage as the
  origin's policy and the model directory as its model (unless `record` is off: the evaluation
  stage's choice), then scored by policy_training/reward.py against one `ProblemStats` for the
  run. One evaluation at a time (the evaluator's rule).
- `ServiceGrader`: `kernelpilot grader serve` at a URL (policy_training/grader/client.py); the
  service evaluates, records (origin policy `grader`, the model named here) and scores.
- `LaneGrader` (`lanes` > 1): the service's pool without the HTTP, lane processes on this GPU
  that evaluate, record with the stage's origin and score; `grade_each(grader, items)` grades a
  generate call's samples together on it (one by one on the others), the verdicts in order. A
  sample whose lane died under it twice gets no verdict (reward None), as the service's 503.

The candidate is the completion's last ```python block (any fenced block if none is tagged),
else the whole text: prose earns the evaluator's compile_error, never a guess of ours; the text
before that block is the analysis recorded with it. An infrastructure failure raises (a
sandbox that cannot start, a store that cannot be written, a grader that is gone), except a
grader's 429/503/504 after its retries, which leaves that sample out (reward None).

    with open_grader(GraderSettings(cpu=True, db=url), stage="rft", model="runs/sft/model") as grader:
        graded = grader.grade(problem, completion_text, tokens=32)
        graded.reward, graded.usable, grader.written, grader.device, grader.store
"""
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

from agent.policy import FENCE
from agent.runtime import Runtime, RuntimeOptions, auto_size
from policy_training.grader.client import GraderClient, GraderError
from policy_training.grader.lanes import Job, LaneFailure
from policy_training.grader.pool import Graded as PoolGraded
from policy_training.grader.pool import GraderPool, PoolOptions
from policy_training.grader.trl_reward import NO_VERDICT, extract_code
from policy_training.reward import ProblemStats, Reward, RewardConfig, RewardKind, score
from policy_training.training import TrainingError
from tools.device import DeviceInfo, detect
from tools.evaluator import EvalConfig, Protocol
from tools.history import HistoryStore, Origin
from tools.problems import Problem
from tools.records import EvalResult, EvalStatus, Flag, Mode, Phase
from tools.sandbox.backends import SandboxKind
from tools.trust import Use, allowed

LANE_CAPACITY = 4096            # a generate call's samples (rft: 20 problems x k, and their seeds) wait together
LANE_DEADLINE_S = 24 * 3600.0   # none, in effect: a stage waits for every verdict


@dataclass(frozen=True)
class GraderSettings:
    """Where candidates are graded (the grading keys every stage config carries)."""

    url: str | None = None                      # a grader service; None: a runtime in this process
    token: str | None = None                    # the service's token (else KERNELPILOT_GRADER_TOKEN)
    db: str | None = None                       # the local runtime's history store URL
    cpu: bool = False                           # the local runtime in the Triton interpreter even on a GPU
    sandbox: SandboxKind = SandboxKind.PROCESS
    timeout_s: float | None = None              # wall-clock limit per evaluation step
    protocol: Protocol = Protocol.REWARD        # the evaluator's protocol (tools/evaluator.py): reward or full
    reward: RewardConfig = field(default_factory=RewardConfig)
    record: bool = True                         # write each verdict to the store (a service records every one anyway)
    lanes: int = 1                              # >1: the local evaluations on that many lane processes of this GPU
                                                # (the grader service's pool): a generate call's samples graded together


@dataclass(frozen=True)
class Graded:
    """One graded completion: what the evaluator said, what it earned, where it was recorded."""

    problem_hash: str
    candidate: str
    analysis: str
    status: EvalStatus | None                   # None: the grader gave no verdict (our side's, after retries)
    flags: tuple[str, ...]
    reward: float | None                        # None: left out (our side's fault)
    kind: RewardKind | None
    evaluation_id: int | None
    seconds: float
    hack: bool = False                          # rejected, or flagged for the candidate's own doing (reward.py)
    phase: Phase | None = None                  # where it failed (load, run, time, ...); None when correct
    mode: Mode | None = None                    # gpu (timed) or cpu-interpreter (correctness only)
    runtime_ms: float | None = None             # the evaluator's figures, raw: tools/trust.py says which to believe
    speedup_vs_eager: float | None = None
    speedup_vs_compile: float | None = None

    @property
    def usable(self) -> bool:
        """Correct and allowed as a best by the trust rules (what rejection sampling keeps)."""
        return allowed(self, Use.BEST)


def split_completion(text: str) -> tuple[str, str]:
    """(analysis, candidate): the candidate as the reward reads it, the analysis the text before its block."""
    candidate = extract_code(text)
    blocks = list(FENCE.finditer(text))
    ends = [m for m in blocks if m.group(2) == candidate]
    analysis = text[:ends[-1].start()].strip() if ends else ""
    return analysis, candidate


class LocalGrader:
    """A runtime in this process: evaluate, record with the stage's origin (unless `record` is
    off: evaluation_id None), score."""

    def __init__(self, runtime: Runtime, stage: str, model: str, reward: RewardConfig, record: bool = True):
        self.runtime, self.stage, self.model, self.reward, self.record = runtime, stage, model, reward, record
        self.stats, self.session = ProblemStats(), f"{stage}-{uuid.uuid4().hex[:12]}"
        self.written, self.statuses = 0, Counter()
        self.device, self.size, self.store = runtime.device, runtime.size("auto"), runtime.store

    def grade(self, problem: Problem, completion: str, tokens: int | None = None) -> Graded:
        started = time.monotonic()
        analysis, candidate = split_completion(completion)
        result = self.runtime.evaluator.evaluate(problem, candidate)
        evaluation_id = None
        if self.record:
            evaluation_id = self.runtime.store.record(problem, candidate, result, Origin(
                policy=self.stage, model=self.model, analysis=analysis or None), session=self.session)
            self.written += 1
        self.statuses[result.status.value] += 1
        return judged(problem, candidate, analysis, result, score(result, self.reward, self.stats, tokens),
                      evaluation_id, started)


class ServiceGrader:
    """`kernelpilot grader serve` at a URL: it evaluates, records and scores."""

    def __init__(self, client: GraderClient, stage: str, model: str, store: HistoryStore):
        self.client, self.stage, self.model, self.store = client, stage, model, store
        self.written, self.statuses, self.session = 0, Counter(), "grader"
        lane = client.health().lanes[0]             # no grader there: one line now, not a failed step later
        mode = Mode(lane.mode)
        self.device = DeviceInfo(mode, lane.device, 0 if mode is Mode.GPU else None)
        self.size = auto_size(mode)

    def grade(self, problem: Problem, completion: str, tokens: int | None = None) -> Graded:
        started = time.monotonic()
        analysis, candidate = split_completion(completion)
        try:
            answer = self.client.grade(problem.source, candidate, tokens=tokens, model=self.model[-128:])
        except GraderError as error:
            if error.status not in NO_VERDICT:
                raise
            return Graded(problem.hash, candidate, analysis, None, (), None, None, None, time.monotonic() - started)
        self.written += answer.evaluation_id is not None
        self.statuses[answer.status.value] += 1
        return Graded(problem.hash, candidate, analysis, answer.status, tuple(answer.flags), answer.reward, answer.kind,
                      answer.evaluation_id, time.monotonic() - started, answer.hack, **figures(answer.result))


class LaneGrader:
    """The grader service's pool without the HTTP (policy_training/grader/pool.py): lane processes
    on this machine's GPU evaluate, record with the stage's origin and score; `grade_many` keeps
    them all busy. Its one `ProblemStats` is the pool's, as a LocalGrader's is its own."""

    def __init__(self, pool: GraderPool, stage: str, model: str, store: HistoryStore, device: DeviceInfo):
        self.pool, self.stage, self.model, self.store, self.device = pool, stage, model, store, device
        self.written, self.statuses, self.session = 0, Counter(), "lanes"
        self.size = auto_size(device.mode)      # as a lane's runtime.size("auto")

    def grade(self, problem: Problem, completion: str, tokens: int | None = None) -> Graded:
        return next(self.grade_many([(problem, completion, tokens)]))

    def grade_many(self, items: Sequence[tuple[Problem, str, int | None]]) -> Iterator[Graded]:
        """Every item submitted now; the verdicts in the items' order, each as soon as it and those
        before it are in."""
        started, submitted = time.monotonic(), []
        for problem, completion, tokens in items:
            analysis, candidate = split_completion(completion)
            job = Job(problem.source, candidate, tokens, self.model[-128:], policy=self.stage, analysis=analysis or None)
            submitted.append((problem, analysis, candidate, self.pool.submit(job, deadline_s=LANE_DEADLINE_S)))
        return (self._graded(problem, analysis, candidate, future, started)
                for problem, analysis, candidate, future in submitted)

    def _graded(self, problem: Problem, analysis: str, candidate: str, future: Future, started: float) -> Graded:
        try:
            done: PoolGraded = future.result()
        except LaneFailure:         # its lane died under it twice: no verdict, the sample left out
            return Graded(problem.hash, candidate, analysis, None, (), None, None, None, time.monotonic() - started)
        self.written += done.evaluation_id is not None
        self.statuses[done.result.status.value] += 1
        return judged(problem, candidate, analysis, done.result, done.reward, done.evaluation_id, started)


def grade_each(grader, items: Sequence[tuple[Problem, str, int | None]]) -> Iterator[Graded]:
    """A grader's verdicts on several completions, in order: graded together on a LaneGrader's
    lanes, else one by one as the caller takes them (a stage killed midway loses at most one)."""
    if isinstance(grader, LaneGrader):
        yield from grader.grade_many(items)
        return
    for item in items:
        yield grader.grade(*item)


def judged(problem: Problem, candidate: str, analysis: str, result: EvalResult, reward: Reward,
           evaluation_id: int | None, started: float) -> Graded:
    """A verdict and its reward as the stage keeps them (`started`: when grading it began)."""
    return Graded(problem.hash, candidate, analysis, result.status, tuple(Flag(f).value for f in result.flags),
                  reward.value, reward.kind, evaluation_id, time.monotonic() - started, reward.hack, **figures(result))


def figures(result: EvalResult) -> dict:
    """The verdict's phase, mode and raw timings, as Graded keeps them."""
    return {"phase": result.phase, "mode": result.mode, "runtime_ms": result.runtime_ms,
            "speedup_vs_eager": result.speedup_vs_eager, "speedup_vs_compile": result.speedup_vs_compile}


@contextmanager
def open_grader(settings: GraderSettings, stage: str, model: str) -> Iterator[LocalGrader | LaneGrader | ServiceGrader]:
    """The grader the settings name, open for the block; its `store` is where the stage reads exemplars
    and seeds (a service's own store only if `db` names the same database)."""
    options = RuntimeOptions(sandbox=settings.sandbox, db=settings.db, force_cpu=settings.cpu,
                             timeout_s=settings.timeout_s, eval=EvalConfig(protocol=settings.protocol, second_size=True))
    if settings.url is not None and not settings.record:
        raise TrainingError("a grader service records every verdict: record=false needs the in-process grader")
    if settings.url is None and settings.lanes <= 1:
        with Runtime.open(options) as runtime:
            yield LocalGrader(runtime, stage, model, settings.reward, settings.record)
        return
    if settings.url is None and not settings.record:
        raise TrainingError("record=false needs lanes = 1 (lane processes record every verdict)")
    store = HistoryStore(settings.db)        # where exemplars and seeds are read: give a service's own store
    try:
        if settings.url is None:
            device = detect(force_cpu=settings.cpu)
            index = device.cuda_index if device.mode is Mode.GPU else None
            with GraderPool.open(PoolOptions(runtime=options, devices=(index,) * settings.lanes, capacity=LANE_CAPACITY,
                                             reward=settings.reward)) as pool:
                yield LaneGrader(pool, stage, model, store, device)
        else:
            with GraderClient(settings.url, settings.token) as client:
                yield ServiceGrader(client, stage, model, store)
    finally:
        store.engine.dispose()
