"""Plan: the tap sums of a convolution, for the mean of its output over all positions
(or over its first spatial dim).

A convolution's output summed over every output position is, per output channel,
sum over (input channel, tap) of the weight times the sum of the input elements that
tap reads (zero padding reads nothing). `fold_conv.fold_conv_mean` rewrites such a mean into
`tap_sums(x)`, a small GEMM with the weights and the bias; this kernel computes the first.

One program per (sample, channel) plane, viewed as (rows = D*H, W) with 1 for missing
leading dims. Whether a tap reads an element is a product of one test per dim, so each
(BLOCK_R, BLOCK_W) tile is first summed along W once per W-tap (a (BLOCK_R,) vector), then
each of those along the rows once per (D, H)-tap; the input is read once.

Over the first spatial dim only (`over="first"`, fold_conv.fold_conv_depth_mean), each program
owns BLOCK positions of one plane's other dims and walks the first dim, adding each slice
into the taps that read it: (N, C, D, *rest) -> (N, C, KD, *rest).

A tap (index j, stride s, padding p, dilation d) reads input index i when
- plain:      u = i - (j*d - p) is in [0, s*(O-1)] and a multiple of s (O: output size);
- transposed: o = i*s - p + j*d is in [0, O) (the output position it writes).
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Stage
from agent.builtin.plans.common import Config, Emitted, dtype_name, forward_expr, load_cast

READS = '''
@triton.jit
def _tap_reads(i, j, STRIDE: tl.constexpr, PAD: tl.constexpr, DIL: tl.constexpr, size_out,
               TRANSPOSED: tl.constexpr):
    """Does tap j of one dim read input index i (a tensor of indices)?"""
    if TRANSPOSED:
        o = i * STRIDE - PAD + j * DIL
        return (o >= 0) & (o < size_out)
    u = i - (j * DIL - PAD)
    return (u >= 0) & (u <= STRIDE * (size_out - 1)) & (u % STRIDE == 0)
'''


def padded(values: tuple, fill: int) -> tuple:
    """A per-dim tuple for 1-3 spatial dims, as three (D, H, W), missing leading dims `fill`."""
    return (fill,) * (3 - len(values)) + tuple(values)


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    if stage.anchor.attrs.get("over") == "first":
        return _emit_first(stage, graph, config, name)
    anchor = stage.anchor
    source = graph.node(anchor.refs[0])
    a = anchor.attrs
    kernel_d, kernel_h, kernel_w = padded(a["kernel"], 1)
    stride, pad, dil = padded(a["stride"], 1), padded(a["padding"], 0), padded(a["dilation"], 1)
    taps = kernel_d * kernel_h * kernel_w
    constants = (f"KD={kernel_d}, KH={kernel_h}, KW={kernel_w}, " + ", ".join(
        f"{key}{axis}={value}" for key, values in (("S", stride), ("P", pad), ("DL", dil))
        for axis, value in zip("DHW", values)) + f", TRANSPOSED={bool(a['transposed'])}")
    kernel = f'''
@triton.jit
def {name}_kernel(
    x_ptr,  # input (N*C planes of D*H*W elements), contiguous
    out_ptr,  # (N*C, KD*KH*KW) fp32 tap sums
    D, H, W, OD, OH, OW,  # input and output spatial sizes (1 for a missing dim)
    KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,  # kernel taps per dim
    SD: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,  # strides
    PD: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,  # paddings
    DLD: tl.constexpr, DLH: tl.constexpr, DLW: tl.constexpr,  # dilations
    TRANSPOSED: tl.constexpr, TAPS: tl.constexpr,  # a transposed convolution; taps rounded up to a power of 2
    BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr,
):
    pid = tl.program_id(axis=0)
    base = pid.to(tl.int64) * D * H * W
    taps = tl.arange(0, TAPS)
    acc = tl.zeros((TAPS,), dtype=tl.float32)
    for r0 in range(0, D * H, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        d, h = rows // H, rows % H
        for w0 in range(0, W, BLOCK_W):
            w = w0 + tl.arange(0, BLOCK_W)
            mask = (rows[:, None] < D * H) & (w[None, :] < W)
            tile = tl.load(x_ptr + base + rows[:, None] * W + w[None, :], mask=mask, other=0.0){load_cast(source)}
            for kw in tl.static_range(KW):
                reads_w = _tap_reads(w, kw, SW, PW, DLW, OW, TRANSPOSED)
                row_sums = tl.sum(tl.where(reads_w[None, :], tile, 0.0), axis=1)  # (BLOCK_R,)
                for kd in tl.static_range(KD):
                    for kh in tl.static_range(KH):
                        reads = _tap_reads(d, kd, SD, PD, DLD, OD, TRANSPOSED) & \\
                            _tap_reads(h, kh, SH, PH, DLH, OH, TRANSPOSED)
                        total = tl.sum(tl.where(reads, row_sums, 0.0), axis=0)
                        acc += tl.where(taps == (kd * KH + kh) * KW + kw, total, 0.0)
    tl.store(out_ptr + pid * (KD * KH * KW) + taps, acc, mask=taps < KD * KH * KW)
'''
    out = graph.node(stage.outputs[0])
    rank = len(source.shape) - 2
    wrapper = f'''
def {name}(x):
    x = x.contiguous()
    D, H, W = (1,) * {3 - rank} + tuple(x.shape[2:])
    OD, OH, OW = {padded(tuple(a["out"]), 1)!r}
    out = torch.empty({tuple(out.shape)!r}, device=x.device, dtype=torch.float32)
    BLOCK_W = min(triton.next_power_of_2(W), 1024)
    BLOCK_R = max(1, 4096 // BLOCK_W)
    {name}_kernel[(x.shape[0] * x.shape[1],)](x, out, D, H, W, OD, OH, OW, {constants},
        TAPS=triton.next_power_of_2({taps}), BLOCK_R=BLOCK_R, BLOCK_W=BLOCK_W, num_warps={config.warps})
    return out{"" if dtype_name(out.dtype) == "torch.float32" else f".to({dtype_name(out.dtype)})"}
'''
    return Emitted(kernel, wrapper, f"{stage.outputs[0]} = {name}({forward_expr(source.name, graph)})",
                   frozenset({"_tap_reads"}))


def _emit_first(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    source, a = graph.node(anchor.refs[0]), anchor.attrs
    kernel = f'''
@triton.jit
def {name}_kernel(
    x_ptr,  # input (N*C, D, inner), contiguous
    out_ptr,  # (N*C, KD, inner) fp32: the slices each tap of the first dim reads, summed
    D, OD, inner,  # the first spatial dim in and out; the product of the other spatial dims
    KD: tl.constexpr, S: tl.constexpr, P: tl.constexpr, DL: tl.constexpr,  # taps, stride, padding, dilation
    TRANSPOSED: tl.constexpr, TAPS: tl.constexpr,  # a transposed convolution; KD rounded up to a power of 2
    BLOCK: tl.constexpr,
):
    pid_p = tl.program_id(axis=0)  # one (sample, channel) plane
    pid_i = tl.program_id(axis=1)
    offs = pid_i * BLOCK + tl.arange(0, BLOCK)
    mask = offs < inner
    taps = tl.arange(0, TAPS)
    acc = tl.zeros((TAPS, BLOCK), dtype=tl.float32)
    base = pid_p.to(tl.int64) * D * inner
    for d in range(0, D):
        v = tl.load(x_ptr + base + d * inner + offs, mask=mask, other=0.0){load_cast(source)}
        reads = _tap_reads(d, taps, S, P, DL, OD, TRANSPOSED) & (taps < KD)
        acc += tl.where(reads[:, None], v[None, :], 0.0)
    out = out_ptr + pid_p.to(tl.int64) * KD * inner + taps[:, None] * inner + offs[None, :]
    tl.store(out, acc, mask=(taps[:, None] < KD) & mask[None, :])
'''
    out = graph.node(stage.outputs[0])
    wrapper = f'''
def {name}(x):
    x = x.contiguous()
    inner = x[0, 0, 0].numel()
    out = torch.empty({tuple(out.shape)!r}, device=x.device, dtype=torch.float32)
    BLOCK = min(triton.next_power_of_2(inner), {config.block})
    grid = (x.shape[0] * x.shape[1], triton.cdiv(inner, BLOCK))
    {name}_kernel[grid](x, out, x.shape[2], {a["out"][0]}, inner, KD={a["kernel"][0]}, S={a["stride"][0]},
        P={a["padding"][0]}, DL={a["dilation"][0]}, TRANSPOSED={bool(a["transposed"])},
        TAPS=triton.next_power_of_2({a["kernel"][0]}), BLOCK=BLOCK, num_warps={config.warps})
    return out{"" if dtype_name(out.dtype) == "torch.float32" else f".to({dtype_name(out.dtype)})"}
'''
    return Emitted(kernel, wrapper, f"{stage.outputs[0]} = {name}({forward_expr(source.name, graph)})",
                   frozenset({"_tap_reads"}))
