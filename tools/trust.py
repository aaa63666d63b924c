"""The trust rules: what a verdict may earn, given its flags. One definition, used by the
agent (its best kernel, its answer, its report), the submit tool, batch metrics and the
RL reward alike.

A flag never changes the verdict (`status` stays what the evaluator found); it decides what
a correct result may be *used* for:

| flag                      | whose      | best | metrics | reward | why                                              |
|---------------------------|------------|:----:|:-------:|:------:|--------------------------------------------------|
| `timing_mismatch`         | candidate* |  no  |   no    |   no   | work ran outside the timer: the time is not believed |
| `no_custom_kernel`        | candidate  |  no  |   no    |   no   | none of its own kernels ran: a PyTorch fallback   |
| `precision_policy`        | candidate  |  no  |   no    |   no   | fp16/bf16/TF32 math on an fp32 problem, inside tolerance |
| `excessive_speedup`       | candidate  | yes  |  yes    |   no   | audited again and passed; unbelievable until a person looks |
| `size_specialised`        | candidate  |  no  |   no    |   no   | correct at the checked sizes only: shapes baked in  |
| `degenerate_problem`      | problem    | yes  |  yes    |   no   | the output barely depends on the input: a constant could pass |
| `network_not_isolated`    | our side   | yes  |  yes    |   no   | the worker could reach the network: a verdict not to train on |
| `filesystem_not_isolated` | our side   | yes  |  yes    |   no   | the worker could write outside its scratch dir    |
| `shared_user`             | our side   | yes  |  yes    |   no   | the worker ran as our user: our /proc was readable |

*or a machine too noisy to time on (benchmarks/cheat_suite.py counts it as the environment's):
an honest kernel flagged so keeps its `correct` verdict but is neither best nor counted until
it is timed again without the flag.

`size_specialised` (the check at a second size set, `EvalConfig.second_size`) rules out
everything: a kernel replaces a module that its users call at their own shapes, so one that
is wrong, crashes or falls back to PyTorch at another size is not a correct replacement, and
a reward for it would teach a policy to bake shapes in (skipping masks and bounds is faster).
It is the candidate's doing: the second sizes are ones the problem's own reference builds and
runs at (a size set the problem refuses is never used; none at all is a note, not a flag).
The flag exists only where the check ran: `submit` and `optimize`'s final check always run it.

"best" covers the session's best kernel, the accepted submit and what a report claims;
"metrics" covers a batch run's correct rate, fast_p and geomeans. Flags of our side (the
sandbox lacked isolation) withhold the reward without blaming the candidate:
`excluded_from_reward` says so, so the reward can leave the sample out rather than score it 0.

The speed a result reports (`trusted_speedup`, `trusted_runtime_ms`) is None unless the
result is correct and its timing is believed: a `timing_mismatch` result has no speed at all,
though its raw figures stay in the record and the history store as evidence.

    if allowed(result, Use.BEST): ...
    trusted_speedup(result, Versus.EAGER)      # float, or None: untimed, failed or not believed
"""
from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol

from tools.records import EvalStatus, Flag


class Use(StrEnum):
    BEST = "best"           # the session's best kernel, the accepted submit, a report's claim
    METRICS = "metrics"     # a batch run's counts and geomeans
    REWARD = "reward"       # the RL reward's speed term


class Versus(StrEnum):
    EAGER = "eager"
    COMPILE = "compile"


class Verdict(Protocol):
    """What the rules read: EvalResult, the agent's Attempt and the store's Entry all have it."""

    status: EvalStatus
    flags: Iterable[Flag | str]
    runtime_ms: float | None
    speedup_vs_eager: float | None
    speedup_vs_compile: float | None


ALL_USES = frozenset(Use)
DISQUALIFIES: dict[Flag, frozenset[Use]] = {
    Flag.TIMING_MISMATCH: ALL_USES,
    Flag.NO_CUSTOM_KERNEL: ALL_USES,
    Flag.PRECISION_POLICY: ALL_USES,
    Flag.EXCESSIVE_SPEEDUP: frozenset({Use.REWARD}),
    Flag.SIZE_SPECIALISED: ALL_USES,
    Flag.DEGENERATE_PROBLEM: frozenset({Use.REWARD}),
    Flag.NETWORK_NOT_ISOLATED: frozenset({Use.REWARD}),
    Flag.FILESYSTEM_NOT_ISOLATED: frozenset({Use.REWARD}),
    Flag.SHARED_USER: frozenset({Use.REWARD}),
}
UNTIMED_BY = frozenset({Flag.TIMING_MISMATCH})       # flags under which no time or speedup is believed
OUR_SIDE = frozenset({Flag.NETWORK_NOT_ISOLATED, Flag.FILESYSTEM_NOT_ISOLATED, Flag.SHARED_USER})
# The candidate's doing: with a `rejected` verdict, what makes a hack case (tools/hack_cases.py).
CANDIDATES_DOING = frozenset({Flag.TIMING_MISMATCH, Flag.NO_CUSTOM_KERNEL, Flag.PRECISION_POLICY,
                              Flag.EXCESSIVE_SPEEDUP, Flag.SIZE_SPECIALISED})
PROBLEMS_DOING = frozenset({Flag.DEGENERATE_PROBLEM})

# A new flag must be decided here (what it rules out, and whose doing it is) before anything runs.
_undecided = set(Flag) - (set(DISQUALIFIES) & (OUR_SIDE | CANDIDATES_DOING | PROBLEMS_DOING))
if _undecided:
    raise RuntimeError(f"tools/trust.py decides no rule for {sorted(_undecided)}")


def flags_of(verdict: Verdict) -> frozenset[Flag]:
    """The verdict's flags as Flags; an unknown name (a newer store) raises ValueError."""
    return frozenset(Flag(f) for f in verdict.flags)


def disqualifying(verdict: Verdict, use: Use) -> list[Flag]:
    """The verdict's flags that keep it from `use`, in the enum's order."""
    return rules_out(verdict.flags, use)


def rules_out(flags: Iterable[Flag | str], use: Use) -> list[Flag]:
    """Which of these flags keep a result from `use` (for records that keep only flags, as a suite row)."""
    found = {Flag(f) for f in flags}
    return [f for f in Flag if f in found and use in DISQUALIFIES[f]]


def allowed(verdict: Verdict, use: Use) -> bool:
    """Correct, and no flag of it rules out `use`."""
    return verdict.status is EvalStatus.CORRECT and not disqualifying(verdict, use)


def timing_believed(verdict: Verdict) -> bool:
    return verdict.status is EvalStatus.CORRECT and not flags_of(verdict) & UNTIMED_BY


def trusted_speedup(verdict: Verdict, versus: Versus = Versus.EAGER) -> float | None:
    """The speedup the result may claim: None when untimed, not correct, or its timing is not believed."""
    if not timing_believed(verdict):
        return None
    return verdict.speedup_vs_eager if versus is Versus.EAGER else verdict.speedup_vs_compile


def trusted_runtime_ms(verdict: Verdict) -> float | None:
    return verdict.runtime_ms if timing_believed(verdict) else None


def excluded_from_reward(verdict: Verdict) -> bool:
    """Withheld for a fault of our side (no isolation), not the candidate's: leave the sample
    out of training rather than score it 0."""
    return bool(flags_of(verdict) & OUR_SIDE)


def why_not(verdict: Verdict, use: Use) -> str:
    """One line: why a result may not be used for `use` ('' when it may)."""
    if verdict.status is not EvalStatus.CORRECT:
        return f"it is {verdict.status.value}"
    flags = disqualifying(verdict, use)
    return f"flagged {', '.join(f.value for f in flags)}" if flags else ""
