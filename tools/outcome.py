"""What a candidate's run says, before baselines and bookkeeping turn it into an EvalResult:
the `Outcome` of one run, the static findings laid on top of it, and what its run at a second
size set (`tools/second_size.py`) does to the verdict. Pure functions; the evaluator
(`tools/evaluator.py`) runs the candidate and calls them.

    outcome = apply_static(outcome, check_source(source), context)     # correct -> rejected on a reject finding
    second = SecondRun(size_check(resized_outcome, sizes, own_kernels=True), resized_outcome.phase, log)
    result = with_second_size(result, second)                          # holds, size_specialised, or rejected
"""
from dataclasses import dataclass, replace

import torch

from tools.compare import TOLERANCES
from tools.contexts import ProblemContext
from tools.provenance import Provenance
from tools.records import EvalResult, EvalStatus, Flag, Phase, SizeCheck, TimingStats
from tools.sandbox.replies import Failure
from tools.static_check import Finding, Severity

PRECISION_FRACTION = 0.1       # an fp32 result using >10% of the tolerance was not computed in fp32


@dataclass(frozen=True)
class Outcome:
    """What happened to the candidate, before baselines and bookkeeping are added."""

    status: EvalStatus
    reason: str = ""
    phase: Phase | None = None
    max_abs_error: float | None = None
    rel_error: float | None = None
    trials_run: int = 0
    trials_passed: int = 0
    timing: TimingStats | None = None
    flags: tuple[Flag, ...] = ()
    provenance: Provenance | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecondRun:
    """The check at a second size set, as the verdict will take it: the check, the phase where
    the run there failed (None when it did not, or did not run) and its log tail."""

    check: SizeCheck
    phase: Phase | None = None
    log: str = ""


def failed(reply: Failure, label: str = "") -> Outcome:
    return Outcome(reply.status, f"{label}: {reply.message}" if label else reply.message, reply.phase)


def apply_static(outcome: Outcome, findings: list[Finding], context: ProblemContext) -> Outcome:
    """Static findings on top of the dynamic verdict: a reject finding turns `correct`
    into `rejected` (a failure keeps its own status); flags are added to a correct one."""
    if outcome.status is not EvalStatus.CORRECT:
        return outcome
    rejects = [f for f in findings if f.severity is Severity.REJECT]
    if rejects:
        return replace(outcome, status=EvalStatus.REJECTED, phase=Phase.LOAD,
                       reason="static check: " + "; ".join(f.text() for f in rejects[:3]))
    flags = list(outcome.flags)
    if outcome.provenance is not None and outcome.provenance.no_custom_kernel:
        flags.append(Flag.NO_CUSTOM_KERNEL)
    if fp32_outputs(context) and (any(f.rule == "low_precision" for f in findings) or imprecise(outcome)):
        flags.append(Flag.PRECISION_POLICY)
    notes = tuple(outcome.provenance.short[:2]) if Flag.NO_CUSTOM_KERNEL in flags else ()
    return replace(outcome, flags=tuple(dict.fromkeys(flags)), notes=outcome.notes + notes)


def fp32_outputs(context: ProblemContext) -> bool:
    """The reference answers in fp32 or fp64 (where fp16/bf16/TF32 math is a downgrade)."""
    dtypes = context.reference.output_dtypes
    return bool(dtypes) and all(d in (torch.float32, torch.float64) for d in dtypes)


def imprecise(outcome: Outcome) -> bool:
    """Passed, but with an error no fp32 computation makes: a share of the tolerance
    that only reduced-precision math uses up."""
    return outcome.rel_error is not None and outcome.rel_error > PRECISION_FRACTION * TOLERANCES[torch.float32].rel_l2


def size_check(outcome: Outcome, sizes: dict[str, int], own_kernels: bool) -> SizeCheck:
    """What the run at the second size says: it holds when correct with its own kernels running,
    where they ran at the first size (`own_kernels`): a candidate that falls back to PyTorch only
    away from the sizes it was verified at does not hold (one that always does is no_custom_kernel)."""
    own = not own_kernels or outcome.provenance is None or not outcome.provenance.no_custom_kernel
    holds = outcome.status is EvalStatus.CORRECT and own
    reason = f"{outcome.status.value}: {outcome.reason}" if outcome.status is not EvalStatus.CORRECT else (
        "" if own else "correct, but none of its own kernels ran there (a PyTorch fallback away from the sizes "
                       "it was checked at)")
    return SizeCheck(sizes=sizes, status=outcome.status, holds=holds, reason=reason,
                     trials_run=outcome.trials_run, trials_passed=outcome.trials_passed)


def with_second_size(result: EvalResult, second: SecondRun) -> EvalResult:
    """The verdict stays the first check's, unless the candidate was rejected at the second
    size; one that fails there otherwise is flagged `size_specialised`. A problem with no
    second size set is said in the notes, never flagged."""
    check = second.check
    if check.status is None:        # our side: no size set the problem allows
        return result.model_copy(update={"second_size": check, "notes": [*result.notes, check.text()]})
    if check.holds:
        return result.model_copy(update={"second_size": check})
    update = {"second_size": check, "log": second.log, "notes": [*result.notes, check.text()]}
    if check.status is EvalStatus.REJECTED:
        return result.model_copy(update={**update, "status": EvalStatus.REJECTED, "phase": second.phase,
                                         "reason": check.text()})
    return result.model_copy(update={**update, "flags": [*result.flags, Flag.SIZE_SPECIALISED]})
