"""What the built-in plans know about each canonical op: its family, and for pointwise
ops the Triton expression that computes it.

Pointwise ops render to one expression over kernel variables (fp32 values) and
literals; every family the partitioner uses is named here, so an op missing from these
tables is reported as unsupported instead of being guessed.

    render("hardtanh", ["v3"], {"min_val": -0.5, "max_val": 0.5})  # 'tl.minimum(tl.maximum(v3, -0.5), 0.5)'
"""
import math

VIEWS = {"t", "transpose", "view", "reshape", "permute", "unsqueeze", "squeeze", "flatten", "contiguous",
         "identity", "size"}
ROW_REDUCTIONS = {"sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "norm", "logsumexp",
                  "pick"}   # pick: the row's element at a per-row index (cross-entropy's target logit)
ROW_MAPS = {"softmax", "log_softmax", "layer_norm", "cumsum", "cumprod"}
STRIDED_REDUCTIONS = {"sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin"}   # over a dim not the last
STRIDED_MAPS = {"softmax", "log_softmax", "logsumexp"}   # over a short dim not the last, held whole
MAX_STRIDED_MAP = 1024      # the longest such dim a program holds
MAX_ROW = 65536             # the longest row a row program holds in registers
LOOPED_ROW_OPS = {"sum", "mean", "amax", "amin", "norm", "logsumexp", "softmax", "log_softmax", "layer_norm"}
# ^ what a row program that walks its row in steps computes (longer rows); scans and arg-reductions need the whole row
TOTALS = {"sum", "mean", "amax", "amin", "max", "min", "norm"}    # over every element, when dim is None
MATMULS = {"matmul", "mm", "bmm", "linear"}
CONVS = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
GROUP_NORMS = {"group_norm"}
POOLS = {"max_pool", "avg_pool"}   # over 1, 2 or 3 trailing spatial dims, window sizes as attrs
HELPERS = {"tanh": "_tanh", "gelu_tanh": "_tanh", "mish": "_tanh"}   # ops whose expression calls a jit helper

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

UNARY = {
    "relu": "tl.maximum({a}, 0.0)",
    "sigmoid": "(1.0 / (1.0 + tl.exp(-{a})))",
    "tanh": "_tanh({a})",
    "exp": "tl.exp({a})",
    "log": "tl.log({a})",
    "sqrt": "tl.sqrt({a})",
    "rsqrt": "(1.0 / tl.sqrt({a}))",
    "abs": "tl.abs({a})",
    "neg": "(-{a})",
    "sin": "tl.sin({a})",
    "cos": "tl.cos({a})",
    "square": "({a} * {a})",
    "silu": "({a} / (1.0 + tl.exp(-{a})))",
    "mish": "({a} * _tanh(tl.where({a} > 20.0, {a}, tl.log(1.0 + tl.exp({a})))))",
    "hardsigmoid": "tl.minimum(tl.maximum({a} / 6.0 + 0.5, 0.0), 1.0)",
    "hardswish": "({a} * tl.minimum(tl.maximum({a} / 6.0 + 0.5, 0.0), 1.0))",
    "softsign": "({a} / (1.0 + tl.abs({a})))",
    "selu": "(1.0507009873554805 * tl.where({a} > 0.0, {a}, 1.6732632423543772 * (tl.exp({a}) - 1.0)))",
    "identity": "{a}",
    "contiguous": "{a}",
    "clone": "{a}",         # the kernel writes a new tensor anyway
}
BINARY = {"add": "({a} + {b})", "sub": "({a} - {b})", "mul": "({a} * {b})", "div": "({a} / {b})",
          "rsub": "({b} - {a})", "maximum": "tl.maximum({a}, {b})", "minimum": "tl.minimum({a}, {b})"}


def is_pointwise(op: str) -> bool:
    return op in UNARY or op in BINARY or op in {"gelu", "hardtanh", "clamp", "leaky_relu", "elu", "softplus",
                                                 "pow", "smooth_l1_loss", "drop_ignored", "kept_target"}


def literal(value) -> str:
    """A Python scalar as a Triton literal (floats keep full precision)."""
    if isinstance(value, bool):
        return "1.0" if value else "0.0"
    if isinstance(value, (int, float)):
        return repr(float(value))
    raise ValueError(f"not a scalar constant: {value!r}")


def render(op: str, args: list[str], attrs: dict) -> str:
    """The Triton expression of pointwise `op` over `args` (variable names or literals)."""
    changes = {k: v for k, v in attrs.items() if (k, v) not in (("alpha", 1), ("rounding_mode", None))}
    if op in BINARY and set(changes) & {"alpha", "rounding_mode", "out"}:
        raise ValueError(f"{op} with {', '.join(f'{k}={v!r}' for k, v in changes.items())} is not its plain form")
    if op in UNARY:
        return UNARY[op].format(a=args[0])
    if op in BINARY:
        return BINARY[op].format(a=args[0], b=args[1])
    a = args[0]
    if op == "gelu":
        if attrs.get("approximate", "none") == "tanh":
            return f"(0.5 * {a} * (1.0 + _tanh({SQRT_2_OVER_PI!r} * ({a} + 0.044715 * {a} * {a} * {a}))))"
        return f"(0.5 * {a} * (1.0 + tl.erf({a} * {1 / math.sqrt(2.0)!r})))"
    if op == "hardtanh":
        return f"tl.minimum(tl.maximum({a}, {literal(attrs['min_val'])}), {literal(attrs['max_val'])})"
    if op == "clamp":
        low, high = attrs.get("min"), attrs.get("max")
        expr = a if low is None else f"tl.maximum({a}, {literal(low)})"
        return expr if high is None else f"tl.minimum({expr}, {literal(high)})"
    if op == "leaky_relu":
        return f"tl.where({a} >= 0.0, {a}, {a} * {literal(attrs['negative_slope'])})"
    if op == "elu":
        return f"tl.where({a} > 0.0, {a}, {literal(attrs['alpha'])} * (tl.exp({a}) - 1.0))"
    if op == "softplus":
        beta, threshold = literal(attrs["beta"]), literal(attrs["threshold"])
        return f"tl.where({a} * {beta} > {threshold}, {a}, tl.log(1.0 + tl.exp({a} * {beta})) / {beta})"
    if op == "pow":
        return _pow(a, attrs["exponent"])
    if op == "smooth_l1_loss":
        return _smooth_l1(a, args[1], attrs)
    if op == "drop_ignored":    # a loss term, zero where the target is the ignored class
        return f"tl.where({args[1]} == {literal(attrs['ignore_index'])}, 0.0, {a})"
    if op == "kept_target":     # 1 for a target that counts, 0 for the ignored class
        return f"tl.where({a} == {literal(attrs['ignore_index'])}, 0.0, 1.0)"
    raise ValueError(f"no Triton expression for op {op!r}")


def _pow(a: str, exponent) -> str:
    if exponent == 0.5:
        return f"tl.sqrt({a})"
    if float(exponent).is_integer() and 1 <= exponent <= 4:
        return "(" + " * ".join([a] * int(exponent)) + ")"
    if float(exponent).is_integer() and exponent == -1:
        return f"(1.0 / {a})"
    raise ValueError(f"pow with exponent {exponent!r} (only 0.5, -1 and 1..4 are exact here)")


def _smooth_l1(a: str, b: str, attrs: dict) -> str:
    if attrs.get("reduction") != "none":
        raise ValueError(f"smooth_l1_loss with reduction={attrs.get('reduction')!r} (only 'none' is pointwise)")
    beta = literal(attrs.get("beta", 1.0))
    return (f"tl.where(tl.abs({a} - {b}) < {beta}, 0.5 * ({a} - {b}) * ({a} - {b}) / {beta}, "
            f"tl.abs({a} - {b}) - 0.5 * {beta})")


TANH_HELPER = '''
@triton.jit
def _tanh(z):
    # tanh(z) = sign(z) * (1 - e^{-2|z|}) / (1 + e^{-2|z|}): no overflow for large |z|
    t = tl.exp(-2.0 * tl.abs(z))
    mag = (1.0 - t) / (1.0 + t)
    return tl.where(z >= 0, mag, -mag)
'''
