"""Typed records of an evaluation: statuses, flags, timing statistics, the result.

`EvalResult` is the contract every sandbox backend returns and every consumer (CLI,
agent, history store, RL reward) reads. Failures of the candidate are data here,
never exceptions.
"""
import statistics
from enum import Enum

from pydantic import BaseModel, ConfigDict


class EvalStatus(str, Enum):
    CORRECT = "correct"
    INCORRECT = "incorrect"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    REJECTED = "rejected"


class Flag(str, Enum):
    """Policy findings: they annotate a verdict, they do not change it."""

    DEGENERATE_PROBLEM = "degenerate_problem"
    TIMING_MISMATCH = "timing_mismatch"
    NETWORK_NOT_ISOLATED = "network_not_isolated"
    FILESYSTEM_NOT_ISOLATED = "filesystem_not_isolated"   # no Landlock: writes outside the scratch dir possible
    NO_CUSTOM_KERNEL = "no_custom_kernel"      # a forward that ran none of the candidate's own kernels
    PRECISION_POLICY = "precision_policy"      # lower-precision math, or error far above fp32 rounding
    EXCESSIVE_SPEEDUP = "excessive_speedup"    # above 10x eager or above the roofline: audited again


class Mode(str, Enum):
    GPU = "gpu"
    CPU_INTERPRETER = "cpu-interpreter"


class Phase(str, Enum):
    START = "start"
    LOAD = "load"
    RUN = "run"
    TIME = "time"


WORKER_FAILURES = {"compile_error", "runtime_error", "crashed", "timeout"}


def failure_verdict(reply: dict) -> tuple[EvalStatus, Phase | None, str]:
    """A worker's `failure` reply as (status, phase, reason). The reply crossed from the
    candidate's process, so a status a failure cannot have, or an unknown phase, is a
    forgery and itself the verdict."""
    if reply["status"] not in WORKER_FAILURES or reply["phase"] not in {p.value for p in Phase}:
        return EvalStatus.REJECTED, None, f"forged failure record from the worker (status {reply['status']!r})"
    return EvalStatus(reply["status"]), Phase(reply["phase"]), reply["message"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class TimingStats(Frozen):
    """Per-call times of one timed loop, in milliseconds (CUDA events; wall = host clock
    around a device-wide synchronize)."""

    median_ms: float
    mean_ms: float
    std_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    max_ms: float
    calls: int
    wall_median_ms: float
    loop_seconds: float       # host time of the whole timed loop (flushes and synchronizes included)

    @property
    def spread(self) -> float:
        """Interquartile range over the median."""
        return (self.p75_ms - self.p25_ms) / self.median_ms if self.median_ms > 0 else 0.0

    @classmethod
    def from_samples(cls, event_ms: list[float], wall_ms: list[float], loop_seconds: float) -> "TimingStats":
        quartiles = statistics.quantiles(event_ms, n=4) if len(event_ms) > 1 else [event_ms[0]] * 3
        return cls(
            median_ms=statistics.median(event_ms), mean_ms=statistics.fmean(event_ms),
            std_ms=statistics.pstdev(event_ms), p25_ms=quartiles[0], p75_ms=quartiles[2],
            min_ms=min(event_ms), max_ms=max(event_ms), calls=len(event_ms),
            wall_median_ms=statistics.median(wall_ms), loop_seconds=loop_seconds,
        )


class LintReport(Frozen):
    """What the problem lint found, once per problem: findings explain the flags."""

    problem_hash: str
    degenerate: bool
    findings: list[str]
    distributions: list[str]   # input distributions whose reference output is usable


class Baselines(Frozen):
    eager: TimingStats | None
    compiled: TimingStats | None
    notes: list[str]


class KernelShare(Frozen):
    name: str
    launches_per_call: float
    device_ms_per_call: float
    share: float              # of the device time of one forward


class Roofline(Frozen):
    """One forward's position against the device's measured ceilings."""

    flops: float              # counted on the reference (matmul, conv, attention)
    min_bytes: float          # every input read once, every output written once
    achieved_gbps: float
    achieved_tflops: float
    ceiling_gbps: float
    ceiling_tflops: float
    bound: str                # "memory" or "compute": which floor is higher
    fraction_of_roofline: float   # the floor's time over the measured time (1.0 = at the roof)


class ProfileResult(Frozen):
    """Where one forward's device time goes, kernel by kernel (GPU only)."""

    available: bool
    reason: str               # why not available, or a failure of the candidate
    status: EvalStatus | None  # a failure while loading or profiling, else None
    kernels: list[KernelShare]
    device_ms_per_call: float | None
    roofline: Roofline | None
    device: str


class EvalResult(Frozen):
    status: EvalStatus
    flags: list[Flag]
    reason: str
    phase: Phase | None
    max_abs_error: float | None
    rel_error: float | None
    trials_run: int
    trials_passed: int
    runtime_ms: float | None
    timing: TimingStats | None
    eager_ms: float | None
    compile_ms: float | None
    speedup_vs_eager: float | None
    speedup_vs_compile: float | None
    device: str
    mode: Mode
    size: str
    problem: str
    problem_hash: str
    candidate_hash: str
    sandbox: str
    network_isolated: bool
    versions: dict[str, str]
    lint_findings: list[str]
    notes: list[str]          # what kept a number from being measured (a baseline that failed)
    log: str
    seconds: float
    kernels: list[str] = []   # kernels the candidate's forwards launched, "name x count" (own ones first)
    static_findings: list[str] = []   # tools/static_check.py's findings on the source

    def summary(self) -> dict:
        """The flat JSON object `kernelpilot eval --json` prints."""
        data = self.model_dump(mode="json")
        data["timing"] = None if self.timing is None else {**data["timing"], "spread": self.timing.spread}
        return data
