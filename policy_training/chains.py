"""Random elementwise chains for the generated problems, and the value ranges that keep them alive.

`chain` draws a chain of relu, gelu, silu, tanh, sigmoid, leaky_relu, hardtanh, clamp, a
scale, a shift, a learned scale and bias, and a residual (`y + x`, `y * x`), each at most
once, and follows a rough value range through it, so that a clamp's bounds fall inside
the values it sees, a relu never meets only negatives and no op squeezes the values into
a sliver (a sigmoid of tanh(x + 2)): no chain collapses to a near-constant, which would
make its problem degenerate (tools/lint.py). It draws only from the
`random.Random` it is given, so one seed gives one chain.

    steps = chain(random.Random(0), 3, "x", Range(-3.0, 3.0), param_shape="dim")
    print(steps.lines, steps.init_lines, steps.range)
"""
import math
import random
from dataclasses import dataclass

from policy_training.drafts import DType, number


@dataclass(frozen=True)
class Range:
    """Where most of a tensor's values lie (about three standard deviations, not a bound)."""

    lo: float
    hi: float

    def through(self, fn) -> "Range":
        values = [fn(self.lo + (self.hi - self.lo) * i / 64) for i in range(65)]
        return Range(min(values), max(values))

    def times(self, other: "Range") -> "Range":
        corners = [a * b for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return Range(min(corners), max(corners))

    def plus(self, other: "Range") -> "Range":
        return Range(self.lo + other.lo, self.hi + other.hi)


def _sigmoid(t: float) -> float:
    return 0.5 * (1.0 + math.tanh(t / 2))


UNARY = {   # name: (expression, scalar function for the range)
    "relu": ("torch.relu({v})", lambda t: max(t, 0.0)),
    "gelu": ("F.gelu({v})", lambda t: 0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0)))),
    "silu": ("F.silu({v})", lambda t: t * _sigmoid(t)),
    "tanh": ("torch.tanh({v})", math.tanh),
    "sigmoid": ("torch.sigmoid({v})", _sigmoid),
    "leaky_relu": ("F.leaky_relu({v}, negative_slope=0.1)", lambda t: t if t > 0 else 0.1 * t),
}
SCALES = (0.25, 0.5, 1.5, 2.0, 3.0, -1.0)
SHIFTS = (0.1, 0.25, 0.5, 1.0, 2.0)
LEARNED_SCALE, LEARNED_BIAS = Range(0.5, 1.5), Range(-0.3, 0.3)     # what the init lines below draw


@dataclass(frozen=True)
class Chain:
    lines: tuple[str, ...]          # forward lines, each `y = ...`
    labels: tuple[str, ...]         # for the docstring: "relu", "*1.5", "clamp[0.1, 0.9]", ...
    init_lines: tuple[str, ...]     # parameters the chain uses
    range: Range                    # of the chain's output


def chain(rng: random.Random, length: int, value: str, start: Range, *, param_shape: str | None = None,
          residual: Range | None = None, dtype: DType = DType.FP32) -> Chain:
    """`length` elementwise ops applied to `value` (a variable of the forward), the result in `y`.
    `param_shape` (say "dim" or "out_channels, 1, 1") allows a learned scale and bias of that
    shape; `residual` (the range of the input `x`, same shape as `value`) allows `y + x` / `y * x`."""
    lines, labels, inits, current, used = [], [], [], start, set()
    for _ in range(length):
        options = _options(current, used, param_shape is not None, residual is not None and bool(lines))
        while options:
            name = rng.choice(options)
            expression, label, after = _apply(rng, name, value, current, residual)
            if _varies(after):
                break
            options.remove(name)
        else:
            break       # every op left would squeeze the values together: a shorter chain
        current = after
        if name in ("scale_param", "bias_param"):
            inits.append(_param_line(name, param_shape, dtype))
        used.add(name)
        lines.append(f"y = {expression}")
        labels.append(label)
        value = "y"
    return Chain(tuple(lines), tuple(labels), tuple(inits), current)


def _varies(r: Range) -> bool:
    """Values still spread over a fifth of their magnitude: a sigmoid of tanh(x + 2) is not,
    and at fp16's 1e-2 tolerance any constant near 0.56 would pass for it."""
    return r.hi - r.lo >= 0.2 * max(1.0, abs(r.lo), abs(r.hi))


def _options(current: Range, used: set[str], params: bool, residual: bool) -> list[str]:
    """The ops worth applying next: each at most once a chain, a relu only where values
    straddle zero, a clamp only where there is a range to cut."""
    names = [n for n in UNARY if n not in used and (n not in ("relu", "leaky_relu") or current.lo < 0 < current.hi)]
    names += [n for n in ("scale", "shift") if n not in used]
    if current.hi - current.lo > 0.2:
        names += [n for n in ("hardtanh", "clamp") if n not in used]
    if params:
        names += [n for n in ("scale_param", "bias_param") if n not in used]
    if residual:
        names += [n for n in ("residual",) if n not in used]
    return names


def _apply(rng: random.Random, name: str, v: str, r: Range, residual: Range | None) -> tuple[str, str, Range]:
    if name in UNARY:
        template, fn = UNARY[name]
        return template.format(v=v), name, r.through(fn)
    if name == "scale":
        c = rng.choice(SCALES)
        return f"{v} * {number(c)}", f"*{number(c)}", r.times(Range(c, c))
    if name == "shift":
        c = rng.choice(SHIFTS) * rng.choice((1, -1))
        return f"{v} + {number(c)}", f"+{number(c)}", r.plus(Range(c, c))
    if name in ("hardtanh", "clamp"):
        return _bounded(rng, name, v, r)
    if name == "scale_param":
        return f"{v} * self.scale", "*scale", r.times(LEARNED_SCALE)
    if name == "bias_param":
        return f"{v} + self.bias", "+bias", r.plus(LEARNED_BIAS)
    if rng.random() < 0.5:      # the residual
        return f"{v} + x", "+x", r.plus(residual)
    return f"{v} * x", "*x", r.times(residual)


def _bounded(rng: random.Random, name: str, v: str, r: Range) -> tuple[str, str, Range]:
    """Bounds cut 10-30% off each end of the range, so some values pass and some are clipped."""
    width = r.hi - r.lo
    lo = float(number(r.lo + width * rng.choice((0.1, 0.2, 0.3))))
    hi = float(number(r.hi - width * rng.choice((0.1, 0.2, 0.3))))
    if name == "hardtanh":
        return f"F.hardtanh({v}, min_val={number(lo)}, max_val={number(hi)})", \
            f"hardtanh[{number(lo)}, {number(hi)}]", Range(lo, hi)
    side = rng.choice(("min", "max", "both"))
    if side == "min":
        return f"torch.clamp({v}, min={number(lo)})", f"clamp[{number(lo)},]", Range(lo, max(r.hi, lo))
    if side == "max":
        return f"torch.clamp({v}, max={number(hi)})", f"clamp[,{number(hi)}]", Range(min(r.lo, hi), hi)
    return f"torch.clamp({v}, min={number(lo)}, max={number(hi)})", f"clamp[{number(lo)}, {number(hi)}]", \
        Range(lo, hi)


def _param_line(name: str, shape: str, dtype: DType) -> str:
    if name == "scale_param":
        return f"self.scale = nn.Parameter(torch.rand({shape}{dtype.argument}) + 0.5)"
    return f"self.bias = nn.Parameter(torch.randn({shape}{dtype.argument}) * 0.1)"
