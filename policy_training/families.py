"""The six families of generated problems, one builder each: `BUILDERS[family](rng, dtype) -> Draft`.

- elementwise: a chain of 2-5 activations, clamps, scales, shifts, learned scale/bias, a residual
- reduction: sum, mean, amax, amin, max(...)[0], logsumexp or a 2-norm over one dim, maybe after abs/square/tanh
- norm: LayerNorm, RMSNorm over the last dim or over channels, GroupNorm; then maybe a short chain
- softmax: softmax, log_softmax, scaled, causal-masked, or written out with exp and sum
- gemm_epilogue: nn.Linear, a chain of 1-3, then maybe a row reduction or a softmax
- conv_epilogue: nn.Conv2d, a chain of 1-3, then maybe a pooling mean, a channel reduction or softmax

Full sizes move at most 512 MiB of fp32 a tensor and at most ~0.3 TFLOP a problem (by
arithmetic milliseconds on an H100, not yet timed there; every tensor of a forward together
stays under 4 GiB); small sizes are a few thousand elements with irregular extents,
for the Triton interpreter on a CPU. Reductions stay fp32: a low-precision sum over thousands
of elements is dominated by its own rounding.

    draft = BUILDERS[Family.NORM](random.Random("seed"), DType.FP32)
"""
import math
import random

from policy_training.chains import Range, chain
from policy_training.drafts import DType, Draft, Family, number

ROWS = (256, 512, 1024, 2048, 4096, 8192, 16384)
COLS = (256, 384, 512, 768, 1000, 1024, 1536, 2048, 3000, 4096, 5120, 8192, 16384)
MID = (64, 128, 256, 384, 512, 1000, 1024, 2048, 4096)
SMALL_ROWS, SMALL_COLS, SMALL_MID = (3, 5, 7), (33, 47, 100, 300), (5, 9, 17)
INPUT_RANGE = {"rand": Range(0.0, 1.0), "randn": Range(-3.0, 3.0)}
LAYER_RANGE = {"rand": Range(-1.0, 1.0), "randn": Range(-1.5, 1.5)}   # a default-initialised Linear/Conv's output
NORMED = Range(-2.5, 2.5)
FP32_ONLY = frozenset({Family.REDUCTION})


def pick_sizes(rng: random.Random, choices: dict[str, tuple[int, ...]], fits) -> dict[str, int]:
    """One value per name from its choices, drawn again until `fits(values)` holds."""
    for _ in range(500):
        values = {name: rng.choice(options) for name, options in choices.items()}
        if fits(values):
            return values
    raise RuntimeError(f"no sizes among {choices} fit: the generator's size tables are wrong")


def _elements(values: dict[str, int], names: tuple[str, ...]) -> int:
    return math.prod(values[name] for name in names)


Shape = tuple[tuple[str, ...], dict[str, int], dict[str, int]]     # (input shape's names, full sizes, small sizes)


def _rows(rng: random.Random, rank: int) -> Shape:
    """A (batch_size, dim) or (batch_size, seq_len, dim) shape of 4M-134M elements: names, full, small."""
    if rank == 2:
        names, choices = ("batch_size", "dim"), {"batch_size": ROWS, "dim": COLS}
        small = {"batch_size": rng.choice(SMALL_ROWS), "dim": rng.choice(SMALL_COLS)}
    else:
        names, choices = ("batch_size", "seq_len", "dim"), {"batch_size": (8, 16, 32, 64, 128), "seq_len": MID, "dim": COLS}
        small = {"batch_size": rng.choice((2, 3)), "seq_len": rng.choice(SMALL_MID), "dim": rng.choice(SMALL_COLS)}
    full = pick_sizes(rng, choices, lambda v: 2**22 <= _elements(v, names) <= 2**27)
    return names, full, small


def _draft(summary: str, category: str, shape: Shape, *, constants: dict[str, int] | None = None,
           init_args: tuple[str, ...] = (), init=(), forward=(), draw: str, dtype: DType,
           output: tuple[str, ...] | None = None) -> Draft:
    names, full, small = shape
    return Draft(summary, category, tuple(full.items()) + tuple((constants or {}).items()), tuple(small.items()),
                 init_args, tuple(init), tuple(forward), names, draw, dtype, output or names)


def _then(labels: tuple[str, ...]) -> str:
    return f", then {' -> '.join(labels)}." if labels else "."


def elementwise(rng: random.Random, dtype: DType) -> Draft:
    shape = _rows(rng, rng.choice((2, 3)))
    draw = rng.choice(("rand", "randn"))
    start = INPUT_RANGE[draw]
    steps = chain(rng, rng.randint(2, 5), "x", start, param_shape="dim" if rng.random() < 0.5 else None,
                  residual=start, dtype=dtype)
    summary = f"Elementwise chain {' -> '.join(steps.labels)} over a ({', '.join(shape[0])}) tensor."
    return _draft(summary, "elementwise", shape, init_args=("dim",) if steps.init_lines else (),
                  init=steps.init_lines, forward=steps.lines + ("return y",), draw=draw, dtype=dtype)


REDUCTIONS = {
    "sum": "torch.sum({v}, dim=self.reduce_dim, keepdim={k})",
    "mean": "torch.mean({v}, dim=self.reduce_dim, keepdim={k})",
    "amax": "torch.amax({v}, dim=self.reduce_dim, keepdim={k})",
    "amin": "torch.amin({v}, dim=self.reduce_dim, keepdim={k})",
    "max": "torch.max({v}, dim=self.reduce_dim, keepdim={k})[0]",
    "logsumexp": "torch.logsumexp({v}, dim=self.reduce_dim, keepdim={k})",
    "norm": "torch.norm({v}, dim=self.reduce_dim, keepdim={k})",
}
PRE_OPS = {"abs": "torch.abs(x)", "square": "x * x", "tanh": "torch.tanh(x)"}


def reduction(rng: random.Random, dtype: DType) -> Draft:
    if rng.random() < 0.5:
        shape, reduce_dim = _rows(rng, 2), 1
    else:
        names = ("batch_size", "dim1", "dim2")
        full = pick_sizes(rng, {"batch_size": (16, 32, 64, 128, 256), "dim1": MID, "dim2": MID},
                          lambda v: 2**22 <= _elements(v, names) <= 2**27)
        small = {"batch_size": rng.choice((2, 3)), "dim1": rng.choice(SMALL_MID), "dim2": rng.choice((13, 33))}
        shape, reduce_dim = (names, full, small), rng.choice((1, 2))
    op, keepdim = rng.choice(tuple(REDUCTIONS)), rng.choice((True, False))
    # |x| and x*x of signed values pile up near zero: their minimum says little about the input
    pre = rng.choice((None, None) + (() if op == "amin" else tuple(PRE_OPS)))
    forward = ([f"y = {PRE_OPS[pre]}"] if pre else []) + \
        [f"return {REDUCTIONS[op].format(v='y' if pre else 'x', k=keepdim)}"]
    output = list(shape[0])
    output[reduce_dim:reduce_dim + 1] = ["1"] if keepdim else []
    summary = f"{op} over dim {reduce_dim} of {pre + ' of ' if pre else ''}a ({', '.join(shape[0])}) tensor."
    # signed inputs: the maximum of thousands of rand() values is 1.0 whatever the input
    return _draft(summary, "reduction", shape, constants={"reduce_dim": reduce_dim}, init_args=("reduce_dim",),
                  init=["self.reduce_dim = reduce_dim"], forward=forward, draw="randn", dtype=dtype,
                  output=tuple(output))


def norm(rng: random.Random, dtype: DType) -> Draft:
    kind = rng.choice(("layernorm", "rmsnorm", "channel_rmsnorm", "groupnorm"))
    draw, eps = rng.choice(("rand", "randn")), rng.choice((1e-5, 1e-6))
    if kind == "groupnorm":
        return _groupnorm(rng, dtype, draw, eps)
    if kind == "channel_rmsnorm":
        names = ("batch_size", "features", "dim1", "dim2")
        full = pick_sizes(rng, {"batch_size": (8, 16, 32), "features": (16, 32, 64, 128), "dim1": MID, "dim2": MID},
                          lambda v: 2**22 <= _elements(v, names) <= 2**27)
        small = {"batch_size": 2, "features": rng.choice((3, 5, 7)), "dim1": rng.choice(SMALL_MID), "dim2": 11}
        shape, init, args, param_shape = (names, full, small), [], (), None
        forward = [f"rms = torch.sqrt(torch.mean(x * x, dim=1, keepdim=True) + {eps!r})", "y = x / rms"]
    else:
        shape, args, param_shape = _rows(rng, rng.choice((2, 3))), ("dim",), "dim"
        if kind == "layernorm":
            affine = rng.choice((True, False))
            init = [f"self.norm = nn.LayerNorm(dim, eps={eps!r}, elementwise_affine={affine}{dtype.argument})"]
            forward = ["y = self.norm(x)"]
        else:
            init = [f"self.weight = nn.Parameter(torch.ones(dim{dtype.argument}))"]
            forward = [f"y = x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + {eps!r})", "y = y * self.weight"]
    steps = chain(rng, rng.randint(0, 2), "y", NORMED, param_shape=param_shape, residual=INPUT_RANGE[draw], dtype=dtype)
    title = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm over the last dim",
             "channel_rmsnorm": "RMSNorm over channels (dim 1)"}[kind]
    return _draft(f"{title} of a ({', '.join(shape[0])}) tensor{_then(steps.labels)}", "norm", shape, init_args=args,
                  init=init + list(steps.init_lines), forward=forward + list(steps.lines) + ["return y"],
                  draw=draw, dtype=dtype)


def _groupnorm(rng: random.Random, dtype: DType, draw: str, eps: float) -> Draft:
    names = ("batch_size", "channels", "height", "width")
    full = pick_sizes(rng, {"batch_size": (4, 8, 16, 32), "channels": (16, 32, 64, 128, 256),
                            "height": (16, 32, 64, 128, 256), "width": (16, 32, 64, 128, 256)},
                      lambda v: 2**22 <= _elements(v, names) <= 2**27)
    groups = rng.choice(tuple(g for g in (2, 4, 8, 16, 32) if full["channels"] % g == 0))
    small_groups = rng.choice((2, 3))
    small = {"batch_size": 2, "channels": small_groups * rng.choice((2, 3)), "num_groups": small_groups,
             "height": rng.choice((5, 7)), "width": rng.choice((6, 9))}
    affine = rng.choice((True, False))
    init = [f"self.norm = nn.GroupNorm(num_groups, channels, eps={eps!r}, affine={affine}{dtype.argument})"]
    steps = chain(rng, rng.randint(0, 2), "y", NORMED, param_shape="channels, 1, 1", residual=INPUT_RANGE[draw],
                  dtype=dtype)
    return _draft(f"GroupNorm of a ({', '.join(names)}) tensor{_then(steps.labels)}", "norm", (names, full, small),
                  constants={"num_groups": groups}, init_args=("channels", "num_groups"),
                  init=init + list(steps.init_lines), forward=["y = self.norm(x)", *steps.lines, "return y"],
                  draw=draw, dtype=dtype)


def softmax(rng: random.Random, dtype: DType) -> Draft:
    kind = rng.choice(("softmax", "log_softmax", "scaled", "masked", "written"))
    draw = rng.choice(("rand", "randn"))
    if kind == "masked":
        names = ("batch_size", "seq_len", "seq_len")
        full = pick_sizes(rng, {"batch_size": (4, 8, 16, 32, 64), "seq_len": (128, 256, 512, 1024, 2048)},
                          lambda v: 2**22 <= v["batch_size"] * v["seq_len"] ** 2 <= 2**27)
        small = {"batch_size": rng.choice((2, 3)), "seq_len": rng.choice((5, 9, 17))}
        mask = "torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=1)"
        return _draft(f"Causal-masked softmax over the last dim of a ({', '.join(names)}) score tensor.", "softmax",
                      (names, full, small), init_args=("seq_len",), init=[f'self.register_buffer("mask", {mask})'],
                      forward=['y = x.masked_fill(self.mask, float("-inf"))', "return torch.softmax(y, dim=-1)"],
                      draw=draw, dtype=dtype)
    shape = _rows(rng, rng.choice((2, 3)))
    dim = -1 if len(shape[0]) == 2 else rng.choice((1, -1))
    c = rng.choice((0.125, 0.5, 2.0, 4.0))
    forward = {
        "softmax": [f"return torch.softmax(x, dim={dim})"],
        "log_softmax": [f"return torch.log_softmax(x, dim={dim})"],
        "scaled": [f"return torch.softmax(x * {number(c)}, dim={dim})"],
        "written": [f"e = torch.exp(x - torch.amax(x, dim={dim}, keepdim=True))",
                    f"return e / torch.sum(e, dim={dim}, keepdim=True)"],
    }[kind]
    title = {"softmax": "Softmax", "log_softmax": "Log-softmax", "scaled": f"Softmax of x * {number(c)}",
             "written": "Softmax written out (exp of x - max, over its sum)"}[kind]
    return _draft(f"{title} over dim {dim} of a ({', '.join(shape[0])}) tensor.", "softmax", shape, forward=forward,
                  draw=draw, dtype=dtype)


def _tail(rng: random.Random, tails: tuple[str, ...], dtype: DType) -> str | None:
    """Half the time None (the chain's result is the output). Below fp32 only a softmax:
    a sum or mean over thousands of values varies less with the input than fp16's 1e-2
    tolerance, so any answer near the average would pass."""
    if rng.random() < 0.5:
        return None
    return rng.choice(tuple(t for t in tails if dtype is DType.FP32 or "softmax" in t))


GEMM_TAILS = {"sum": "torch.sum(y, dim=1, keepdim=True)", "mean": "torch.mean(y, dim=1, keepdim=True)",
              "logsumexp": "torch.logsumexp(y, dim=1, keepdim=True)", "softmax": "torch.softmax(y, dim=1)",
              "amax": "torch.amax(y, dim=1, keepdim=True)"}


def gemm_epilogue(rng: random.Random, dtype: DType) -> Draft:
    sizes = (128, 256, 512, 768, 1000, 1024, 2048, 3072, 4096, 8192)
    full = pick_sizes(rng, {"batch_size": sizes, "in_features": sizes, "out_features": sizes},
                      lambda v: 2**30 <= 2 * v["batch_size"] * v["in_features"] * v["out_features"] <= 2**38)
    small = {"batch_size": rng.choice((5, 7, 33)), "in_features": rng.choice((16, 47, 64)),
             "out_features": rng.choice((20, 24, 33))}
    draw, bias = rng.choice(("rand", "randn")), rng.choice(("", ", bias=False"))
    steps = chain(rng, rng.randint(1, 3), "y", LAYER_RANGE[draw], param_shape="out_features", dtype=dtype)
    tail = _tail(rng, tuple(GEMM_TAILS), dtype)
    summary = " -> ".join([f"Linear{' (no bias)' if bias else ''}", *steps.labels, *([tail] if tail else [])]) + "."
    return _draft(summary, "matmul_epilogue", (("batch_size", "in_features"), full, small),
                  init_args=("in_features", "out_features"),
                  init=[f"self.linear = nn.Linear(in_features, out_features{bias}{dtype.argument})", *steps.init_lines],
                  forward=["y = self.linear(x)", *steps.lines, f"return {GEMM_TAILS[tail]}" if tail else "return y"],
                  draw=draw, dtype=dtype,
                  output=("batch_size", "1" if tail not in (None, "softmax") else "out_features"))


CONV_TAILS = {"pool": "torch.mean(y, dim=(2, 3))", "channel_sum": "torch.sum(y, dim=1, keepdim=True)",
              "channel_max": "torch.amax(y, dim=1, keepdim=True)", "channel_softmax": "torch.softmax(y, dim=1)"}


def _conv_size(extent: int, kernel: int, stride: int, padding: int) -> int:
    return (extent + 2 * padding - kernel) // stride + 1


def _conv_size_text(name: str, kernel: int, stride: int, padding: int) -> str:
    """The output extent as the docstring states it: `height - 2`, `(width - 3) // 2 + 1`."""
    lost = kernel - 1 - 2 * padding
    if stride == 1:
        return f"{name} - {lost}" if lost else name
    return f"({name} - {lost + 1}) // {stride} + 1"


def conv_epilogue(rng: random.Random, dtype: DType) -> Draft:
    names = ("batch_size", "in_channels", "height", "width")
    kernel, stride = rng.choice((1, 3, 5)), rng.choice((1, 1, 2))
    padding = rng.choice((0, kernel // 2))

    def fits(v: dict[str, int]) -> bool:
        pixels = _conv_size(v["height"], kernel, stride, padding) * _conv_size(v["width"], kernel, stride, padding)
        flops = 2 * v["batch_size"] * v["out_channels"] * pixels * v["in_channels"] * kernel * kernel
        moved = _elements(v, names) + v["batch_size"] * v["out_channels"] * pixels
        return 2**28 <= flops <= 2**37 and moved <= 2**28
    full = pick_sizes(rng, {"batch_size": (4, 8, 16, 32, 64), "in_channels": (3, 8, 16, 32, 64, 128),
                            "out_channels": (16, 32, 64, 128, 256), "height": (32, 56, 64, 112, 128, 224),
                            "width": (32, 56, 64, 112, 128, 224)}, fits)
    small = {"batch_size": 2, "in_channels": rng.choice((3, 4, 5)), "out_channels": rng.choice((4, 6, 8)),
             "height": rng.choice((9, 11)), "width": rng.choice((10, 13))}
    draw, bias = rng.choice(("rand", "randn")), rng.choice(("", ", bias=False"))
    options = (f", stride={stride}" if stride != 1 else "") + (f", padding={padding}" if padding else "") + bias
    steps = chain(rng, rng.randint(1, 3), "y", LAYER_RANGE[draw], param_shape="out_channels, 1, 1", dtype=dtype)
    tail = _tail(rng, tuple(CONV_TAILS), dtype)
    extents = tuple(_conv_size_text(name, kernel, stride, padding) for name in ("height", "width"))
    output = {"pool": ("batch_size", "out_channels"), "channel_sum": ("batch_size", "1", *extents),
              "channel_max": ("batch_size", "1", *extents)}.get(tail, ("batch_size", "out_channels", *extents))
    summary = " -> ".join([f"Conv2d {kernel}x{kernel} (stride {stride}, padding {padding})", *steps.labels,
                           *([tail] if tail else [])]) + "."
    return _draft(summary, "conv_epilogue", (names, full, small), constants={"kernel_size": kernel},
                  init_args=("in_channels", "out_channels", "kernel_size"),
                  init=[f"self.conv = nn.Conv2d(in_channels, out_channels, kernel_size{options}{dtype.argument})",
                        *steps.init_lines],
                  forward=["y = self.conv(x)", *steps.lines, f"return {CONV_TAILS[tail]}" if tail else "return y"],
                  draw=draw, dtype=dtype, output=output)


BUILDERS = {Family.ELEMENTWISE: elementwise, Family.REDUCTION: reduction, Family.NORM: norm,
            Family.SOFTMAX: softmax, Family.GEMM_EPILOGUE: gemm_epilogue, Family.CONV_EPILOGUE: conv_epilogue}
