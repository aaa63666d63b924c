"""Plan: a depthwise convolution (one input channel a group: `groups == C_in`, 1-, 2- or 3-d,
any stride, padding, dilation, channel multiplier) as a direct Triton kernel, with the bias
and the chain after it on the fp32 accumulator.

The implicit GEMM (conv_triton.py) sees such a convolution as N = the channel multiplier
(usually 1) and K = the taps (9 for 3x3), both padded to `tl.dot`'s 16: most of its work is
padding, and it ran at 0.08-0.15x of cuDNN on an H100 (KernelBench level 1, 85 and 86). Here
each program walks the taps unrolled (`tl.static_range`): one coalesced load of the input
and one scalar load of the weight a tap, neighbouring taps re-reading the input from cache.
Two layouts (`Config.conv_direct`):
- TILED (2, the default): a program owns a (BLOCK_H, BLOCK_W) tile of one output plane (one
  sample, channel and depth), so rows and columns come from `tl.arange` with no division, and
  a tap's bounds test is a row test and a column test;
- FLAT (1): a program owns BLOCK output positions of one channel in flat order, split into
  (sample, depth, row, column) by integer divisions; on an H100 it ran level 1's 82 at 1.27x
  eager but moved only about 1 TB/s, its divisions and per-tap index math the suspects.

    emitted = emit(stage, graph, Config(), "depthwise_conv_relu")   # conv_triton.emit calls it
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Operand, Stage
from agent.builtin.plans.common import (CONV_POSITIONS, Body, Config, Emitted, conv_epilogue, conv_keywords, dtype_name,
                                        forward_expr)

FLAT, TILED = 1, 2      # Config.conv_direct's layouts (0: the implicit GEMM, conv_triton.py)
# how an epilogue operand is read at the program's output positions (out_offs: the output's own
# offsets; `row`: the output row's index in the flattened (batch, C_out, OD, OH))
EPILOGUE_LOADS = {
    Operand.FULL: "tl.load({p} + out_offs, mask=m_mask, other=0.0)",
    Operand.CHANNEL: "tl.load({p} + co)",
    Operand.PLANE: "tl.load({p} + batch * C_out + co, mask=m_mask, other=0.0)",
    Operand.COL: "tl.load({p} + ow, mask=m_mask, other=0.0)",
    Operand.ROW: "tl.load({p} + row, mask=m_mask, other=0.0)",
    Operand.SCALAR: "tl.load({p})",
}


def fits(stage: Stage, graph: OpGraph) -> bool:
    """A plain (not transposed) convolution with one input channel a group, and several groups."""
    anchor = stage.anchor
    weight = graph.node(anchor.args[1].name)
    return not anchor.op.startswith("conv_transpose") and anchor.attrs["groups"] > 1 and weight.shape[1] == 1


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    x, weight = anchor.args[:2]
    body, kinds, outs, lines = conv_epilogue(stage, graph, EPILOGUE_LOADS, "m_mask", "the depthwise convolution")
    header = (_tiled if config.conv_direct == TILED else _flat)(name, _params(body, kinds, outs))
    kernel = header + "".join(f"    {line}\n" for line in lines)
    call_args = [forward_expr(n, graph) for n in [x.name, weight.name] + body.inputs] + conv_keywords(anchor.attrs)
    return Emitted(kernel, _wrapper(name, stage, graph, body, outs, config),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(call_args)})", frozenset(body.helpers))


def _params(body: Body, kinds: dict, outs: list[str]) -> str:
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} epilogue operand\n" for n in body.inputs)
    return params + "".join(f"    {o}_ptr,  # output (batch, C_out, OD, OH, OW), contiguous\n" for o in outs)


SIGNATURE = """    x_ptr,  # input (batch, C_in, D, H, W), read through its strides
    w_ptr,  # weight (C_out, 1, KD, KH, KW)
{params}    M, C_out, C_out_g,  # M = batch * OD * OH * OW; output channels, and per group (the multiplier)
    D, H, W, OD, OH, OW,  # input and output spatial sizes
    stride_xn, stride_xc, stride_xd, stride_xh, stride_xw,  # input strides, in elements
    stride_wo, stride_wd, stride_wh, stride_ww,  # weight strides: output channel, taps
    SD: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,  # stride
    PD: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,  # padding
    DD: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,  # dilation
    KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,  # kernel taps
"""
# the taps, unrolled; `inside_hw` is the tile's own bounds test of a tap's input row and column
TAPS = """    w_base = w_ptr + co.to(tl.int64) * stride_wo
    acc = tl.zeros({shape}, dtype=tl.float32)
    for kd in tl.static_range(KD):
        i_d = od * SD - PD + kd * DD
        for kh in tl.static_range(KH):
            i_h = oh * SH - PH + kh * DH
            for kw in tl.static_range(KW):
                i_w = ow * SW - PW + kw * DW
                inside = m_mask & (i_d >= 0) & (i_d < D) & (i_h >= 0) & (i_h < H) & (i_w >= 0) & (i_w < W)
                xv = tl.load(x_base + i_d * stride_xd + i_h * stride_xh + i_w * stride_xw, mask=inside, other=0.0)
                wv = tl.load(w_base + kd * stride_wd + kh * stride_wh + kw * stride_ww)
                acc += xv.to(tl.float32) * wv.to(tl.float32)

    # epilogue on the accumulator: bias, the chain, the stores
"""


def _flat(name: str, params: str) -> str:
    return f'''
@triton.jit
def {name}_kernel(
{SIGNATURE.format(params=params)}    BLOCK: tl.constexpr,  # output positions per program
):
    pid = tl.program_id(axis=0)
    co = tl.program_id(axis=1)  # output channel; its group reads input channel co // C_out_g
    offs_m = pid * BLOCK + tl.arange(0, BLOCK)
    m_mask = offs_m < M
{CONV_POSITIONS}
    x_base = x_ptr + batch.to(tl.int64) * stride_xn + (co // C_out_g).to(tl.int64) * stride_xc
{TAPS.format(shape="(BLOCK,)")}    out_offs = (batch.to(tl.int64) * C_out + co) * spatial + pos
    row = out_offs // OW
'''


def _tiled(name: str, params: str) -> str:
    return f'''
@triton.jit
def {name}_kernel(
{SIGNATURE.format(params=params)}    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,  # output rows and columns a program
):
    pid = tl.program_id(axis=0)  # the tile within its plane
    co = tl.program_id(axis=1)  # output channel; its group reads input channel co // C_out_g
    plane = tl.program_id(axis=2)  # batch * OD + od
    batch = plane // OD
    od = plane % OD
    tiles_w = tl.cdiv(OW, BLOCK_W)
    oh = ((pid // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H))[:, None]
    ow = ((pid % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W))[None, :]
    m_mask = (oh < OH) & (ow < OW)
    x_base = x_ptr + batch.to(tl.int64) * stride_xn + (co // C_out_g).to(tl.int64) * stride_xc
{TAPS.format(shape="(BLOCK_H, BLOCK_W)")}    row = ((batch.to(tl.int64) * C_out + co) * OD + od) * OH + oh
    out_offs = row * OW + ow
'''


def _wrapper(name: str, stage: Stage, graph: OpGraph, body: Body, outs: list[str], config: Config) -> str:
    extra = [body.var[n] for n in body.inputs]
    lines = ["dims = x.dim() - 2", "assert weight.dim() == x.dim() and 1 <= dims <= 3, 'a 1-, 2- or 3-d convolution'",
             "assert weight.shape[1] == 1 and x.shape[1] == groups and weight.shape[0] % groups == 0, "
             "'a depthwise convolution: one input channel a group'",
             "taps = weight.shape[2:]",
             "out_spatial = [(i + 2 * p - d * (k - 1) - 1) // s + 1",
             "               for i, k, s, p, d in zip(x.shape[2:], taps, stride, padding, dilation)]",
             "x = x.contiguous()"] + [f"{e} = {e}.contiguous()" for e in extra]
    lines += [f"{o} = torch.empty((x.shape[0], weight.shape[0], *out_spatial), device=x.device, "
              f"dtype={dtype_name(graph.node(v).dtype)})" for o, v in zip(outs, stage.outputs)]
    lines += ["lead = (1,) * (3 - dims)  # seen as 3-d: missing spatial dims have size 1",
              "x5 = x.view(*x.shape[:2], *lead, *x.shape[2:])",
              "w = weight.view(weight.shape[0], *lead, *taps)",
              "out_5d = (*lead, *out_spatial)",
              "M = x.shape[0] * out_5d[0] * out_5d[1] * out_5d[2]"]
    if config.conv_direct == TILED:     # (BLOCK_H, BLOCK_W) tiles of each (sample, channel, depth) plane
        lines += ["BLOCK_W = min(128, triton.next_power_of_2(out_5d[2]))",
                  f"BLOCK_H = min(max(1, {config.block} // BLOCK_W), triton.next_power_of_2(out_5d[1]))",
                  "assert x.shape[0] * out_5d[0] <= 65535, 'a grid axis holds at most 65535 planes'",
                  "grid = (triton.cdiv(out_5d[1], BLOCK_H) * triton.cdiv(out_5d[2], BLOCK_W), weight.shape[0], "
                  "x.shape[0] * out_5d[0])"]
        blocks = "BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W"
    else:
        lines.append(f"grid = (triton.cdiv(M, {config.block}), weight.shape[0])")
        blocks = f"BLOCK={config.block}"
    lines += [f"{name}_kernel[grid](x5, w, {''.join(p + ', ' for p in extra + outs)}M, weight.shape[0], "
              "weight.shape[0] // groups,",
              "    *x5.shape[2:], *out_5d, *x5.stride(), *w.stride(),",
              "    *((1,) * len(lead) + tuple(stride)), *((0,) * len(lead) + tuple(padding)),",
              "    *((1,) * len(lead) + tuple(dilation)), *w.shape[1:],",
              f"    {blocks}, num_warps={config.warps})",
              f"return {', '.join(outs)}"]
    return (f"\ndef {name}({', '.join(['x', 'weight'] + extra)}, stride, padding, dilation, groups):\n"
            + "".join(f"    {s}\n" for s in lines))
