"""Typed records of an evaluation: statuses, flags, timing statistics, the result.

`EvalResult` is the contract every sandbox backend returns and every consumer (CLI,
agent, history store, RL reward) reads. Failures of the candidate are data here,
never exceptions.
"""
import math
import statistics
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class EvalStatus(StrEnum):
    CORRECT = "correct"
    INCORRECT = "incorrect"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    CRASHED = "crashed"
    REJECTED = "rejected"


class Flag(StrEnum):
    """Policy findings: they annotate a verdict, they do not change it (what each one keeps a
    correct result from — best, metrics, reward — is decided in tools/trust.py)."""

    DEGENERATE_PROBLEM = "degenerate_problem"
    TIMING_MISMATCH = "timing_mismatch"
    NETWORK_NOT_ISOLATED = "network_not_isolated"
    FILESYSTEM_NOT_ISOLATED = "filesystem_not_isolated"   # no Landlock: writes outside the scratch dir possible
    SHARED_USER = "shared_user"                # the worker ran as the trusted side's user: its /proc was readable
    NO_CUSTOM_KERNEL = "no_custom_kernel"      # a forward that ran none of the candidate's own kernels
    PRECISION_POLICY = "precision_policy"      # lower-precision math, or error far above fp32 rounding
    EXCESSIVE_SPEEDUP = "excessive_speedup"    # above 10x eager or above the roofline: audited again
    SIZE_SPECIALISED = "size_specialised"      # correct at the problem's sizes, not at a second size set


class Mode(StrEnum):
    GPU = "gpu"
    CPU_INTERPRETER = "cpu-interpreter"


class Phase(StrEnum):
    START = "start"
    LOAD = "load"
    RUN = "run"
    TIME = "time"
    PROFILE = "profile"


class Bound(StrEnum):
    """Which roofline floor is higher for one forward."""

    MEMORY = "memory"
    COMPUTE = "compute"


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
    median_low_ms: float | None = None    # the median's 95% confidence interval (`median_interval`);
    median_high_ms: float | None = None   # None in records written before it was kept

    @property
    def spread(self) -> float:
        """Interquartile range over the median."""
        return (self.p75_ms - self.p25_ms) / self.median_ms if self.median_ms > 0 else 0.0

    @classmethod
    def from_samples(cls, event_ms: list[float], wall_ms: list[float], loop_seconds: float) -> "TimingStats":
        quartiles = statistics.quantiles(event_ms, n=4) if len(event_ms) > 1 else [event_ms[0]] * 3
        low, high = median_interval(event_ms)
        return cls(
            median_ms=statistics.median(event_ms), mean_ms=statistics.fmean(event_ms),
            std_ms=statistics.pstdev(event_ms), p25_ms=quartiles[0], p75_ms=quartiles[2],
            min_ms=min(event_ms), max_ms=max(event_ms), calls=len(event_ms),
            wall_median_ms=statistics.median(wall_ms), loop_seconds=loop_seconds,
            median_low_ms=low, median_high_ms=high,
        )


def median_interval(samples: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: the order statistics
    n/2 ± 0.98·√n (the binomial's normal approximation)."""
    ordered, n = sorted(samples), len(samples)
    half = 0.98 * math.sqrt(n)
    low, high = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half))
    return ordered[low], ordered[high]


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
    bound: Bound              # which floor is higher
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


class SizeCheck(Frozen):
    """The candidate checked again at a second size set drawn for this evaluation
    (tools/second_size.py): the problem's size constants scaled, fresh inputs, the candidate's own worker."""

    sizes: dict[str, int]           # the size constants at the second size ({} when none could be made)
    status: EvalStatus | None       # the candidate's verdict there; None: not checked (reason says why)
    holds: bool                     # correct there, with its own kernels running
    reason: str                     # why it does not hold, or why it was not checked ('' when it holds)
    trials_run: int = 0
    trials_passed: int = 0

    def text(self) -> str:
        """One line: 'holds at a second size (batch_size=5, dim=217)', or why not."""
        at = ", ".join(f"{name}={value}" for name, value in self.sizes.items())
        if self.status is None:
            return f"not checked at a second size: {self.reason}"
        if self.holds:
            return f"holds at a second size ({at})"
        return f"does not hold at a second size ({at}): {self.reason}"


class PhaseSeconds(Frozen):
    """Where one evaluation's wall time went, phase by phase, in seconds: measured with
    time.perf_counter on the trusted side (tools/phases.py), never from what the candidate's
    worker reports. The phases do not overlap, so they add up to at most the evaluation's
    `seconds` (the rest: the static check, the verdict's bookkeeping). An audit run and the
    run at the second size are one phase each (their worker, trials and timing inside)."""

    PHASES: ClassVar[tuple[str, ...]] = (
        "context", "worker", "load", "first_trial", "trials", "reference", "lock_wait", "settle", "timing",
        "close", "baselines", "audit", "second_reference", "second_run")
    context: float = 0.0            # the problem's reference and lint built (0 when kept from an earlier call)
    worker: float = 0.0             # a started worker from the sandbox (a warm one, or one started now)
    load: float = 0.0               # the candidate imported in the worker (and its CUDA C++ built)
    first_trial: float = 0.0        # the first correctness call and its check: Triton compiles here
    trials: float = 0.0             # the other correctness calls and their checks
    reference: float = 0.0          # the trials' inputs drawn and the reference run on them (trusted side)
    lock_wait: float = 0.0          # waiting for the machine-wide device lock (tools/device_lock.py)
    settle: float = 0.0             # waiting for warm workers to finish starting, before the timed calls
    timing: float = 0.0             # the timed calls, sample-checked (tools/timing.py)
    close: float = 0.0              # the worker's log read, the worker closed, the arena collected
    baselines: float = 0.0          # eager and torch.compile baselines (cached per problem: ~0 when warm)
    audit: float = 0.0              # the stricter run after an excessive speedup, whole
    second_reference: float = 0.0   # a second size set drawn, its reference built and run (tools/second_size.py)
    second_run: float = 0.0         # the candidate's run at the second size, whole
    lock_held: float = 0.0          # not a phase (it overlaps trials, timing, baselines): the device lock held

    def total(self) -> float:
        """The phases' sum (`lock_held` is not one)."""
        return sum(getattr(self, name) for name in self.PHASES)


class EvalResult(Frozen):
    """One evaluation of one candidate on one problem: the verdict, its evidence, the numbers."""

    status: EvalStatus              # the verdict: correct, or how the candidate failed
    flags: list[Flag]               # policy findings on top of the verdict (they do not change it)
    reason: str                     # why it is not correct, in words ('' when correct)
    phase: Phase | None             # where it failed (load, run, time, ...); None when correct
    max_abs_error: float | None     # worst absolute error over the trials that ran
    rel_error: float | None         # worst relative L2 error over the trials that ran
    trials_run: int                 # correctness trials started
    trials_passed: int              # correctness trials whose outputs matched the reference
    runtime_ms: float | None        # median time of one forward (CUDA events); None untimed
    timing: TimingStats | None      # the timed loop's statistics; None untimed
    eager_ms: float | None          # the problem's own Model, eager, timed the same way
    compile_ms: float | None        # the problem's Model under torch.compile, timed the same way
    speedup_vs_eager: float | None  # eager_ms / runtime_ms
    speedup_vs_compile: float | None   # compile_ms / runtime_ms
    device: str                     # the device's name ("NVIDIA H100 80GB HBM3", "cpu")
    mode: Mode                      # GPU, or the CPU Triton interpreter (correctness only)
    size: str                       # the problem's input size ("full", "small")
    problem: str                    # the problem's name
    problem_hash: str               # sha256 of the problem's source: keys caches and the history store
    candidate_hash: str             # sha256 of the candidate's source
    sandbox: str                    # the sandbox backend that ran it ("process", "docker")
    network_isolated: bool          # the worker had no network
    versions: dict[str, str]        # torch, triton, python and CUDA versions
    lint_findings: list[str]        # the problem lint's findings (why a degenerate_problem flag)
    notes: list[str]                # what kept a number from being measured (a baseline that failed)
    log: str                        # the end of what the candidate printed
    seconds: float                  # wall-clock time of the whole evaluation
    kernels: list[str] = []         # kernels the candidate's forwards launched, "name x count" (own ones first)
    static_findings: list[str] = []   # tools/static_check.py's findings on the source
    second_size: SizeCheck | None = None   # the check at a second size set; None when not asked (or not correct)
    phases: PhaseSeconds | None = None     # where `seconds` went; None where not measured (records from the store)

    def summary(self) -> dict:
        """The flat JSON object `kernelpilot eval --json` prints."""
        data = self.model_dump(mode="json")
        data["timing"] = None if self.timing is None else {**data["timing"], "spread": self.timing.spread}
        return data
