"""Plan: a depthwise convolution (one input channel a group: `groups == C_in`, 1-, 2- or 3-d,
any stride, padding, dilation, channel multiplier) as a direct Triton kernel, with the bias
and the chain after it on the fp32 accumulator.

The implicit GEMM (conv_triton.py) sees such a convolution as N = the channel multiplier
(usually 1) and K = the taps (9 for 3x3), both padded to `tl.dot`'s 16: most of its work is
padding, and it ran at 0.08-0.15x of cuDNN on an H100 (KernelBench level 1, 85 and 86). Here
each program owns BLOCK output positions of one output channel, contiguous along the last
spatial dim, and walks the taps unrolled (`tl.static_range`): one coalesced load of the input
and one scalar load of the weight a tap, neighbouring taps re-reading the input from cache.
The input is read about once and the output written once, so the kernel is bandwidth-bound.

    emitted = emit(stage, graph, Config(), "depthwise_conv_relu")   # conv_triton.emit calls it
"""
from agent.builtin.ir import OpGraph, Ref
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans.common import Body, Config, Emitted, dtype_name, forward_expr, load_cast

# how an epilogue operand is read at the program's output positions (out_offs: the output's own offsets)
EPILOGUE_LOADS = {
    Operand.FULL: "tl.load({p} + out_offs, mask=m_mask, other=0.0)",
    Operand.CHANNEL: "tl.load({p} + co)",
    Operand.PLANE: "tl.load({p} + batch * C_out + co, mask=m_mask, other=0.0)",
    Operand.COL: "tl.load({p} + ow, mask=m_mask, other=0.0)",
    Operand.ROW: "tl.load({p} + out_offs // OW, mask=m_mask, other=0.0)",
    Operand.SCALAR: "tl.load({p})",
}


def fits(stage: Stage, graph: OpGraph) -> bool:
    """A plain (not transposed) convolution with one input channel a group, and several groups."""
    anchor = stage.anchor
    weight = graph.node(anchor.args[1].name)
    return not anchor.op.startswith("conv_transpose") and anchor.attrs["groups"] > 1 and weight.shape[1] == 1


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    x, weight, bias = (list(anchor.args) + [None, None])[:3]
    bias = bias if isinstance(bias, Ref) else None
    body = Body(stage, graph, "acc", (bias.name,) if bias else ())
    kinds = body.kinds(stage.shape, {bias.name: Operand.CHANNEL} if bias else None)
    unsupported = [n for n in body.inputs if kinds[n] not in EPILOGUE_LOADS]
    if unsupported:
        raise Unsupported(f"{anchor.name}: an epilogue operand read as {kinds[unsupported[0]].value} "
                          "inside the depthwise convolution")
    lines = [f"{body.var[n]} = {EPILOGUE_LOADS[kinds[n]].format(p=body.var[n] + '_ptr')}{load_cast(graph.node(n))}"
             for n in body.inputs]
    if bias:
        lines.append(f"acc = acc + {body.var[bias.name]}  # bias")
    lines += [body.pointwise(node) for node in stage.body]
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    lines += [f"tl.store({o}_ptr + out_offs, {body.var[v]}.to({o}_ptr.dtype.element_ty), mask=m_mask)"
              for o, v in zip(outs, stage.outputs)]
    kernel = _kernel(name, body, kinds, outs) + "".join(f"    {line}\n" for line in lines)
    keys = ("stride", "padding", "dilation", "groups")
    call_args = [forward_expr(n, graph) for n in [x.name, weight.name] + body.inputs]
    call_args += [f"{k}={tuple(anchor.attrs[k]) if isinstance(anchor.attrs[k], (tuple, list)) else anchor.attrs[k]!r}"
                  for k in keys]
    return Emitted(kernel, _wrapper(name, stage, graph, body, outs, config),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(call_args)})", frozenset(body.helpers))


def _kernel(name: str, body: Body, kinds: dict, outs: list[str]) -> str:
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} epilogue operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output (batch, C_out, OD, OH, OW), contiguous\n" for o in outs)
    return f'''
@triton.jit
def {name}_kernel(
    x_ptr,  # input (batch, C_in, D, H, W), read through its strides
    w_ptr,  # weight (C_out, 1, KD, KH, KW)
{params}    M, C_out, C_out_g,  # M = batch * OD * OH * OW; output channels, and per group (the multiplier)
    D, H, W, OD, OH, OW,  # input and output spatial sizes
    stride_xn, stride_xc, stride_xd, stride_xh, stride_xw,  # input strides, in elements
    stride_wo, stride_wd, stride_wh, stride_ww,  # weight strides: output channel, taps
    SD: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,  # stride
    PD: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,  # padding
    DD: tl.constexpr, DH: tl.constexpr, DW: tl.constexpr,  # dilation
    KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,  # kernel taps
    BLOCK: tl.constexpr,  # output positions per program
):
    pid = tl.program_id(axis=0)
    co = tl.program_id(axis=1)  # output channel; its group reads input channel co // C_out_g
    offs_m = pid * BLOCK + tl.arange(0, BLOCK)
    m_mask = offs_m < M
    spatial = OD * OH * OW
    batch = offs_m // spatial
    pos = offs_m % spatial
    od = pos // (OH * OW)
    oh = (pos // OW) % OH
    ow = pos % OW
    x_base = x_ptr + batch.to(tl.int64) * stride_xn + (co // C_out_g).to(tl.int64) * stride_xc
    w_base = w_ptr + co.to(tl.int64) * stride_wo
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
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
    out_offs = (batch.to(tl.int64) * C_out + co) * spatial + pos
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
              "M = x.shape[0] * out_5d[0] * out_5d[1] * out_5d[2]",
              f"grid = (triton.cdiv(M, {config.block}), weight.shape[0])",
              f"{name}_kernel[grid](x5, w, {''.join(p + ', ' for p in extra + outs)}M, weight.shape[0], "
              "weight.shape[0] // groups,",
              "    *x5.shape[2:], *out_5d, *x5.stride(), *w.stride(),",
              "    *((1,) * len(lead) + tuple(stride)), *((0,) * len(lead) + tuple(padding)),",
              "    *((1,) * len(lead) + tuple(dilation)), *w.shape[1:],",
              f"    BLOCK={config.block}, num_warps={config.warps})",
              f"return {', '.join(outs)}"]
    return (f"\ndef {name}({', '.join(['x', 'weight'] + extra)}, stride, padding, dilation, groups):\n"
            + "".join(f"    {s}\n" for s in lines))
