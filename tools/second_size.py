"""A second size set for a problem: its size constants scaled by secret factors, so that a
candidate verified at the problem's sizes is checked again at sizes it could not prepare for.

The size constants are the module-level ints that show in a tensor's shape: among the names
the problem's SMALL_SIZES sets (ours), or else (KernelBench) its module-level ints of at
least 8, those whose change changes the shape of an input or of a parameter of the model
(`num_layers` changes neither: it is structure, not size; nor do a reduction's `dim = 1` or a
group norm's `num_groups`, whose doubling the problem may even refuse).
Each is scaled by a factor drawn from `secrets` — down at full size (the second check then
costs less than the first), either way at the small size — to a value other than its own.
Integer constraints between sizes (channels divisible by groups) are declared nowhere, so a
drawn set is tried on the reference: the first set whose Model builds and runs on fresh
inputs is the second size. Later draws keep the divisibility the sizes had (among themselves
and with the constants left as they are); the last ones scale one size alone. None of this
runs in the candidate's process. Only the tries on the reference (built on the device and run)
happen inside `guard`, the evaluator's device lock: the draws and the meta-device shape checks
around them keep it free for other lanes' timed calls.

    second = second_size(problem, torch.device("cpu"))   # SecondSize, or a str: why there is none
"""
import secrets
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from tools.inputs import Distribution, draw, secret_seed
from tools.problems import Problem, resized
from tools.reference import Reference

FULL_FACTORS = (0.5, 0.9)       # full size: smaller, so the second check is the cheaper one
SMALL_FACTORS = (0.6, 1.5)      # small size: either way (the small sizes are already small)
LEAST_UNDECLARED = 8            # without SMALL_SIZES, smaller ints are dims, kernel sizes, strides
ATTEMPTS = 12                   # 0-5 independent draws, 6-9 divisibility kept, 10-11 one size alone
LABEL = "second"


@dataclass(frozen=True)
class SecondSize:
    problem: Problem            # the problem at the second size (its own module)
    reference: Reference        # built and run once there, on the trusted side
    sizes: dict[str, int]       # the size constants that changed, with their new values


def second_size(problem: Problem, device: torch.device,
                guard: AbstractContextManager = nullcontext()) -> SecondSize | str:
    """A second size set drawn now, with its reference; or a one-line reason there is none."""
    before = shape_facts(problem)
    names = named_sizes(problem, before)
    if not names:
        return "the problem has no size constants that show in its tensors' shapes"
    rng, error = secrets.SystemRandom(), ""
    low, high = FULL_FACTORS if problem.size == "full" else SMALL_FACTORS
    for attempt in range(ATTEMPTS):
        chosen = list(names) if attempt < 10 else [rng.choice(list(names))]
        sizes = {name: scaled(names[name], rng, low, high) for name in chosen}
        if 6 <= attempt < 10:
            keep_divisible(int_constants(problem), sizes)
        try:
            candidate = resized(problem, sizes, LABEL)
            if before is not None and shape_facts(candidate) == before:
                error = f"{sizes} changes no tensor's shape"
                continue
            with guard:
                reference = Reference(candidate, device)
                reference.run(draw(candidate, secret_seed(), Distribution.OWN, device), copy=False)
        except Exception as failure:   # a size set the problem does not allow: the next draw
            error = f"{sizes}: {type(failure).__name__}: {str(failure).strip()[:200]}"
            continue
        return SecondSize(candidate, reference, sizes)
    return f"no scaled size set built and ran the reference ({ATTEMPTS} tried; the last, {error})"


def size_names(problem: Problem) -> dict[str, int]:
    """The problem's size constants with their values at its size, in the module's order."""
    return named_sizes(problem, shape_facts(problem))


def named_sizes(problem: Problem, before: tuple | None) -> dict[str, int]:
    """`size_names`, given the problem's `shape_facts` (`second_size` has them already)."""
    declared = getattr(problem.module, "SMALL_SIZES", None)
    values = int_constants(problem)
    if isinstance(declared, dict):
        names = [n for n in declared if n in values]
    else:
        names = [n for n, v in values.items() if v >= LEAST_UNDECLARED]
    return {n: values[n] for n in names if before is None or _shows(problem, n, values[n], before)}


def _shows(problem: Problem, name: str, value: int, before: tuple) -> bool:
    """Does doubling this constant change an input's or a parameter's shape? (A doubling the
    problem refuses does not: such a constant is a setting the shapes must fit, as groups are.)"""
    try:
        after = shape_facts(resized(problem, {name: 2 * value}, LABEL))
    except Exception:   # the problem refused the value: a setting, not a size
        return False
    return after is not None and after != before


def shape_facts(problem: Problem) -> tuple | None:
    """The shapes of the inputs (in order) and of the model's tensors, built on the meta device
    (no memory, no compute); None where the problem does not build there."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            inputs = problem.draw_inputs()
            model = problem.module.Model(*problem.init_inputs())
    except Exception:   # an op or a constructor with no meta support: the shapes stay unknown
        return None
    tensors = [*model.parameters(), *model.buffers()]
    return tuple(tuple(x.shape) for x in inputs), frozenset(tuple(t.shape) for t in tensors)


def scaled(value: int, rng: secrets.SystemRandom, low: float, high: float) -> int:
    """`value` times a factor in [low, high], rounded, at least 1 and never `value` itself."""
    new = max(1, round(value * rng.uniform(low, high)))
    if new != value:
        return new
    return value + 1 if value == 1 or (high > 1 and rng.random() < 0.5) else value - 1


def keep_divisible(original: dict[str, int], sizes: dict[str, int]) -> None:
    """Where a constant divided a size (groups and channels), it still does: each drawn size is
    rounded to a multiple of its largest divisor among the constants (drawn or left as they
    are), smallest sizes first."""
    for name in sorted(sizes, key=original.get):
        divisors = [d for d in original if d != name and 1 < original[d] < original[name]
                    and original[name] % original[d] == 0]
        if divisors:
            step = sizes.get(d := max(divisors, key=original.get), original[d])
            sizes[name] = max(1, round(sizes[name] / step)) * step


def int_constants(problem: Problem) -> dict[str, int]:
    return {n: v for n, v in problem.module.__dict__.items() if not n.startswith("_") and _is_int(v)}


def _is_int(value) -> bool:
    return type(value) is int
