"""Plan: a whole convolution stage (1-, 2- or 3-d, plain or transposed, any stride,
padding, dilation, groups, output padding) as one Triton implicit-GEMM kernel, with the
bias and the chain after it on the fp32 accumulator.

GEMM view, per group g: M = batch * output positions, N = C_out / groups,
K = (C_in / groups) * kernel taps. A[m, k] is the input element output position m meets
at tap k (gathered on the fly, never materialised as an im2col buffer), B[k, n] the
weight. Every conv is seen as 3-d (missing spatial dims have size 1), so one kernel
template covers all six ops. The M tile walks contiguous output positions of one channel,
so input loads and output stores coalesce along the last spatial dim; the output-side
index math is done once per tile, outside the K loop. For a transposed conv, output
position o meets input i = (o + pad - k * dil) / stride only where that division is
exact; the other taps are masked.

Memory traffic: eager (cuDNN) writes the convolution's output, then the bias and every
op of the chain read and write it again; here the input and weight are read (the
weight once per M tile, the input once per N tile), and only the values the graph needs
are written, once. Exact fp32 uses `input_precision="ieee"` (no tensor cores), so cuDNN
usually wins in fp32; the search measures both.
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Operand, Stage
from agent.builtin.plans import conv_depthwise
from agent.builtin.plans.common import (CONV_POSITIONS, GROUPED_TILES, MATMUL_TILES, Body, Config, Emitted,
                                        conv_epilogue, conv_keywords, dtype_name, forward_expr)
from agent.builtin.plans.matmul import is_fp32

# how an epilogue operand is read at output tile (offs_m, offs_n); out_offs is the output's own offset
EPILOGUE_LOADS = {
    Operand.FULL: "tl.load({p} + out_offs, mask=mask, other=0.0)",
    Operand.CHANNEL: "tl.load({p} + co, mask=n_mask, other=0.0)[None, :]",
    Operand.PLANE: "tl.load({p} + batch[:, None] * C_out + co[None, :], mask=mask, other=0.0)",
    Operand.COL: "tl.load({p} + ow, mask=m_mask, other=0.0)[:, None]",
    Operand.ROW: "tl.load({p} + out_offs // OW, mask=mask, other=0.0)",
    Operand.SCALAR: "tl.load({p})",
}


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    """The implicit-GEMM kernel with the stage's bias and chain on its accumulator, the
    wrapper and the forward's call (the convolution's parameters as keywords); a depthwise
    convolution is conv_depthwise.py's direct kernel unless `config.conv_direct` is 0."""
    if config.conv_direct and conv_depthwise.fits(stage, graph):
        return conv_depthwise.emit(stage, graph, config, name)
    anchor = stage.anchor
    x, weight = anchor.args[:2]
    body, kinds, outs, lines = conv_epilogue(stage, graph, EPILOGUE_LOADS, "mask", "the Triton convolution")
    precision = ', input_precision="ieee"' if is_fp32(stage, graph) else ""
    kernel = _kernel(name, body, kinds, outs, precision) + "".join(f"    {line}\n" for line in lines)
    transposed = anchor.op.startswith("conv_transpose")
    wrapper = _wrapper(name, stage, graph, body, outs, _tile(config, graph.node(weight.name).shape, transposed,
                                                                anchor.attrs["groups"]), transposed)
    call_args = [forward_expr(n, graph) for n in [x.name, weight.name] + body.inputs] + conv_keywords(anchor.attrs)
    return Emitted(kernel, wrapper, f"{', '.join(stage.outputs)} = {name}({', '.join(call_args)})",
                   frozenset(body.helpers))


def _tile(config: Config, weight_shape: tuple[int, ...], transposed: bool, groups: int) -> tuple[int, ...]:
    """The configured tile, with BLOCK_N and BLOCK_K cut to the GEMM's N and K (never below
    16, the smallest `tl.dot` dim the GPU compiler takes): a depthwise conv has N = 1, K = taps."""
    bm, bn, bk, group_m, warps, stages = MATMUL_TILES[config.tile]
    taps = 1
    for k in weight_shape[2:]:
        taps *= k
    n_gemm = weight_shape[1] if transposed else weight_shape[0] // groups
    k_gemm = (weight_shape[0] // groups if transposed else weight_shape[1]) * taps
    fit = lambda block, size: min(block, max(16, 1 << (size - 1).bit_length()))
    return bm, fit(bn, n_gemm), fit(bk, k_gemm), group_m, warps, stages


def _kernel(name: str, body: Body, kinds: dict, outs: list[str], precision: str) -> str:
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} epilogue operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output (batch, C_out, OD, OH, OW), contiguous\n" for o in outs)
    return f'''
@triton.jit
def {name}_kernel(
    x_ptr,  # input (batch, C_in, D, H, W), read through its strides
    w_ptr,  # weight: conv (C_out, C_in / groups, KD, KH, KW), transposed (C_in, C_out / groups, KD, KH, KW)
{params}    M, K,  # GEMM view per group: M = batch * OD * OH * OW, K = C_in / groups * KD * KH * KW
    C_out, C_in_g, C_out_g,  # output channels; input and output channels per group (C_out_g is the GEMM's N)
    D, H, W, OD, OH, OW,  # input and output spatial sizes
    stride_xn, stride_xc, stride_xd, stride_xh, stride_xw,  # input strides, in elements
    stride_wg, stride_wn, stride_wc, stride_wd, stride_wh, stride_ww,  # weight strides: group, out and in channel, taps
    SD: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,  # stride
    PD: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,  # padding
    DD: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,  # dilation
    KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,  # kernel taps
    TRANSPOSED: tl.constexpr,  # conv_transpose: output o meets input (o + pad - k * dil) / stride
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile shape
    GROUP_M: tl.constexpr,  # tile rows per L2-friendly group
):
    pid = tl.program_id(axis=0)
    pid_g = tl.program_id(axis=1)  # convolution group
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(C_out_g, BLOCK_N)
{GROUPED_TILES}

    # output side, once per tile: m -> (batch, od, oh, ow) with ow fastest, so lanes walk contiguous positions
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < M
    n_mask = offs_n < C_out_g
{CONV_POSITIONS}
    if TRANSPOSED:  # input index = (base - k * dil) / stride
        base_d, base_h, base_w = od + PD, oh + PH, ow + PW
    else:  # input index = base + k * dil
        base_d, base_h, base_w = od * SD - PD, oh * SH - PH, ow * SW - PW
    x_rows = x_ptr + batch.to(tl.int64) * stride_xn + (pid_g * C_in_g).to(tl.int64) * stride_xc
    w_cols = w_ptr + pid_g.to(tl.int64) * stride_wg + offs_n * stride_wn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        # k -> (input channel in the group, kd, kh, kw) with kw fastest, as the weight lies in memory
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < K
        ci = offs_k // (KD * KH * KW)
        tap = offs_k % (KD * KH * KW)
        kd = tap // (KH * KW)
        kh = (tap // KW) % KH
        kw = tap % KW
        if TRANSPOSED:
            td = base_d[:, None] - (kd * DD)[None, :]
            th = base_h[:, None] - (kh * DH)[None, :]
            tw = base_w[:, None] - (kw * DW)[None, :]
            i_d, i_h, i_w = td // SD, th // SH, tw // SW
            inside = (td >= 0) & (td % SD == 0) & (th >= 0) & (th % SH == 0) & (tw >= 0) & (tw % SW == 0)
        else:
            i_d = base_d[:, None] + (kd * DD)[None, :]
            i_h = base_h[:, None] + (kh * DH)[None, :]
            i_w = base_w[:, None] + (kw * DW)[None, :]
            inside = (i_d >= 0) & (i_h >= 0) & (i_w >= 0)
        inside = inside & (i_d < D) & (i_h < H) & (i_w < W) & m_mask[:, None] & k_mask[None, :]
        a_ptrs = x_rows[:, None] + (ci * stride_xc)[None, :] + i_d * stride_xd + i_h * stride_xh + i_w * stride_xw
        a = tl.load(a_ptrs, mask=inside, other=0.0)
        w_offs = ci * stride_wc + kd * stride_wd + kh * stride_wh + kw * stride_ww
        b = tl.load(w_cols[None, :] + w_offs[:, None], mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        acc = tl.dot(a, b, acc{precision})

    # epilogue on the accumulator: bias, the chain, the stores
    mask = m_mask[:, None] & n_mask[None, :]
    co = pid_g * C_out_g + offs_n  # output channel
    out_offs = (batch.to(tl.int64) * C_out * spatial + pos)[:, None] + co.to(tl.int64)[None, :] * spatial
'''


SHAPES = {
    False: ["c_out_g, c_in_g = weight.shape[0] // groups, weight.shape[1]",
            "assert x.shape[1] == c_in_g * groups and weight.shape[0] % groups == 0, 'channels do not match groups'",
            "out_spatial = [(i + 2 * p - d * (k - 1) - 1) // s + 1",
            "               for i, k, s, p, d in zip(x.shape[2:], taps, stride, padding, dilation)]"],
    True: ["c_out_g, c_in_g = weight.shape[1], weight.shape[0] // groups",
           "assert x.shape[1] == weight.shape[0] and weight.shape[0] % groups == 0, 'channels do not match groups'",
           "out_spatial = [(i - 1) * s - 2 * p + d * (k - 1) + op + 1 for i, k, s, p, d, op",
           "               in zip(x.shape[2:], taps, stride, padding, dilation, output_padding)]"],
}
# weight strides (group, GEMM column n, input channel in the group) of the 5-d weight w
WEIGHT_STRIDES = {False: "c_out_g * w.stride(0), w.stride(0), w.stride(1)",
                  True: "c_in_g * w.stride(0), w.stride(1), w.stride(0)"}


def _wrapper(name: str, stage: Stage, graph: OpGraph, body: Body, outs: list[str], tile: tuple[int, ...],
             transposed: bool) -> str:
    extra = [body.var[n] for n in body.inputs]
    keywords = "stride, padding, dilation, groups" + (", output_padding" if transposed else "")
    lines = ["dims = x.dim() - 2", "assert weight.dim() == x.dim() and 1 <= dims <= 3, 'a 1-, 2- or 3-d convolution'",
             "taps = weight.shape[2:]"] + SHAPES[transposed]
    lines += ["x = x.contiguous()"] + [f"{e} = {e}.contiguous()" for e in extra]
    lines += [f"{o} = torch.empty((x.shape[0], c_out_g * groups, *out_spatial), device=x.device, "
              f"dtype={dtype_name(graph.node(v).dtype)})" for o, v in zip(outs, stage.outputs)]
    lines += _launch(name, extra + outs, tile, transposed) + [f"return {', '.join(outs)}"]
    return f"\ndef {name}({', '.join(['x', 'weight'] + extra)}, {keywords}):\n" + "".join(f"    {s}\n" for s in lines)


def _launch(name: str, pointers: list[str], tile: tuple[int, ...], transposed: bool) -> list[str]:
    """Every conv seen as 3-d (leading spatial dims of size 1), then one launch per tile and group."""
    bm, bn, bk, group_m, warps, stages = tile
    return ["lead = (1,) * (3 - dims)  # seen as 3-d: missing spatial dims have size 1",
            "x5 = x.view(*x.shape[:2], *lead, *x.shape[2:])",
            "w = weight.view(*weight.shape[:2], *lead, *taps)",
            "out_5d = (*lead, *out_spatial)",
            "stride3 = (1,) * len(lead) + tuple(stride)",
            "padding3 = (0,) * len(lead) + tuple(padding)",
            "dilation3 = (1,) * len(lead) + tuple(dilation)",
            "M = x.shape[0] * out_5d[0] * out_5d[1] * out_5d[2]",
            "K = c_in_g * w.shape[2] * w.shape[3] * w.shape[4]",
            f"grid = (triton.cdiv(M, {bm}) * triton.cdiv(c_out_g, {bn}), groups)",
            f"{name}_kernel[grid](x5, w, {''.join(p + ', ' for p in pointers)}M, K, c_out_g * groups, c_in_g, c_out_g,",
            f"    *x5.shape[2:], *out_5d, *x5.stride(), {WEIGHT_STRIDES[transposed]}, *w.stride()[2:],",
            "    *stride3, *padding3, *dilation3, *w.shape[2:],",
            f"    TRANSPOSED={transposed}, BLOCK_M={bm}, BLOCK_N={bn}, BLOCK_K={bk}, GROUP_M={group_m},",
            f"    num_warps={warps}, num_stages={stages})"]
