"""Plan: max or average pooling over the last 1, 2 or 3 dims, one lane per output element.

Every leading dim (batch, channels) is flattened into `planes`; each program takes BLOCK
consecutive output elements, decodes each flat index into (plane, o_d, o_h, o_w), and
walks the window's taps (sizes known when the kernel is written, so the loops unroll)
with masked loads: -inf outside the input for a max, 0 for an average, whose divisor is
PyTorch's (the window clipped to the padded input, or to the input itself when
`count_include_pad=False`). The pointwise chain after the pool runs on the result before
the only store, so the pooled tensor crosses memory once.

    emitted = emit(stage, graph, Config(), "fused_max_pool")
"""
import math

from agent.builtin.ir import OpGraph, OpNode
from agent.builtin.partition import Operand, Stage
from agent.builtin.plans.common import Body, Config, Emitted, dtype_name, forward_expr, load_cast
from agent.builtin.plans.pointwise import INDEX

AXES = ("d", "h", "w")          # names of the spatial dims, the last `dims` of them used
MAX_UNROLLED = 256              # taps up to which the window loops are unrolled (tl.static_range)
NEG_INF = 'float("-inf")'


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    axes = AXES[-anchor.attrs["dims"]:]
    body = Body(stage, graph, "v_pool")
    kinds = body.kinds(stage.shape)
    lines = [_load(body.var[n], kinds[n], graph.node(n)) for n in body.inputs]
    lines += [body.pointwise(node) for node in stage.body]
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    lines += [f"tl.store({o}_ptr + offs, {body.var[v]}.to({o}_ptr.dtype.element_ty), mask=mask)"
              for o, v in zip(outs, stage.outputs)]
    kernel = _kernel(anchor, graph, axes, body, kinds, outs, name) + "".join(f"    {line}\n" for line in lines)
    call_args = [forward_expr(anchor.refs[0], graph)] + [forward_expr(n, graph) for n in body.inputs]
    return Emitted(kernel, _wrapper(stage, graph, axes, body, outs, name, config),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(call_args)})", frozenset(body.helpers))


def _kernel(anchor: OpNode, graph: OpGraph, axes: tuple[str, ...], body: Body, kinds: dict, outs: list[str],
            name: str) -> str:
    """The kernel's signature, index decoding and window loop, up to `v_pool`."""
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} operand of the epilogue\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output (planes, {', '.join(f'out_{a}' for a in axes)})\n"
                      for o in outs)
    consts = "".join(f"    {c}_{a.upper()}: tl.constexpr,{'  # ' + note if a == axes[0] else ''}\n"
                     for c, note in (("KERNEL", "window size"), ("STRIDE", "step between windows"),
                                     ("PAD", "implicit padding on each side"), ("DIL", "step between taps"))
                     for a in axes)
    return f'''
@triton.jit
def {name}_kernel(
    x_ptr,  # input (planes, {", ".join(f"in_{a}" for a in axes)}) contiguous: every leading dim flattened into planes
{params}    n_elements,  # output elements
    {", ".join(f"in_{a}" for a in axes)},  # input spatial sizes
    {", ".join(f"out_{a}" for a in axes)},  # output spatial sizes
    n_cols, n_inner, n_channels,  # epilogue operands: last dim; one channel's size and C of (N, C, ...)
{consts}    BLOCK: tl.constexpr,  # output elements per program
):
    pid = tl.program_id(axis=0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
''' + "".join(f"    {line}\n" for line in _decode(axes) + _window(anchor, graph, axes))


def _decode(axes: tuple[str, ...]) -> list[str]:
    """The flat output index as (plane, o_d, o_h, o_w) and each window's first tap."""
    lines, inner = [], []          # inner: the output dims after the one being decoded
    for a in reversed(axes):
        index = f"(offs // {' // '.join(inner)})" if inner else "offs"
        lines.append(f"o_{a} = {index} % out_{a}")
        inner.append(f"out_{a}")
    lines.append(f"plane = offs // {' // '.join(inner)}")
    plane = _paren(" * ".join(f"in_{a}" for a in axes))
    lines.append(f"x_plane = x_ptr + plane.to(tl.int64) * {plane}  # all planes together may pass 2**31 elements")
    lines += [f"start_{a} = o_{a} * STRIDE_{a.upper()} - PAD_{a.upper()}" + ("  # first tap, in input coordinates"
                                                                              if a == axes[0] else "") for a in axes]
    return lines


def _window(anchor: OpNode, graph: OpGraph, axes: tuple[str, ...]) -> list[str]:
    """The loops over the window's taps, then `v_pool`: the max, or the sum over PyTorch's divisor."""
    is_max = anchor.op == "max_pool"
    loop = "tl.static_range" if math.prod(anchor.attrs["kernel"]) <= MAX_UNROLLED else "range"
    init = f"tl.full((BLOCK,), {NEG_INF}, tl.float32)" if is_max else "tl.zeros((BLOCK,), dtype=tl.float32)"
    lines, ok, index = [f"acc = {init}"], "mask", ""
    for depth, a in enumerate(axes):
        pad = "    " * depth
        lines += [f"{pad}for k{a} in {loop}(KERNEL_{a.upper()}):",
                  f"{pad}    i_{a} = start_{a} + k{a} * DIL_{a.upper()}",
                  f"{pad}    ok_{a} = {ok} & (i_{a} >= 0) & (i_{a} < in_{a})"]
        ok, index = f"ok_{a}", f"i_{a}" if not index else f"{_paren(index)} * in_{a} + i_{a}"
    pad = "    " * len(axes)
    other = NEG_INF if is_max else "0.0"
    cast = load_cast(graph.node(anchor.refs[0]))
    lines.append(f"{pad}x = tl.load(x_plane + {index}, mask={ok}, other={other}){cast}")
    if is_max:
        return lines + [f"{pad}acc = tl.maximum(acc, x, propagate_nan=tl.PropagateNan.ALL)  # NaN wins, as in PyTorch",
                        "v_pool = acc  # max_pool"]
    return lines + [f"{pad}acc += x"] + _divisor(anchor, axes) + ["v_pool = acc / count.to(tl.float32)  # avg_pool"]


def _paren(expr: str) -> str:
    return expr if expr.isidentifier() else f"({expr})"


def _divisor(anchor: OpNode, axes: tuple[str, ...]) -> list[str]:
    """PyTorch's divisor: the window clipped to the padded input, and with count_include_pad=False
    clipped to the input itself."""
    lines = []
    for a in axes:
        lines.append(f"end_{a} = tl.minimum(start_{a} + KERNEL_{a.upper()}, in_{a} + PAD_{a.upper()})")
        if anchor.attrs["count_include_pad"]:
            lines.append(f"span_{a} = end_{a} - start_{a}")
        else:
            lines.append(f"span_{a} = tl.minimum(end_{a}, in_{a}) - tl.maximum(start_{a}, 0)")
    return lines + [f"count = {' * '.join(f'span_{a}' for a in axes)}"]


def _load(var: str, kind: Operand, node: OpNode) -> str:
    if kind is Operand.SCALAR:
        return f"{var} = tl.load({var}_ptr){load_cast(node)}"
    return f"{var} = tl.load({var}_ptr + {INDEX[kind]}, mask=mask, other=0.0){load_cast(node)}"


def _output_size(size: str, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> list[str]:
    """Wrapper lines computing PyTorch's pooled size of one dim from the input's `size`."""
    reach = 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = size.replace("in_", "out_")
    shifted = size if reach == 0 else f"({size} {'+' if reach > 0 else '-'} {abs(reach)})"
    lines = [f"{out} = {shifted} // {stride} + 1  # PyTorch's pooled size"]
    if ceil_mode:
        lines.append(f"{out} -= int(({out} - 1) * {stride} >= {size} + {padding})  # ceil_mode: none starts in the "
                     "right padding")
    return lines


def _wrapper(stage: Stage, graph: OpGraph, axes: tuple[str, ...], body: Body, outs: list[str], name: str,
             config: Config) -> str:
    a = stage.anchor.attrs
    args = ["x"] + [body.var[n] for n in body.inputs]
    lines = [f"{v} = {v}.contiguous()" for v in args]
    sizes_in, sizes_out = ", ".join(f"in_{d}" for d in axes), ", ".join(f"out_{d}" for d in axes)
    lines.append(f"*lead, {sizes_in} = x.shape")
    for i, d in enumerate(axes):
        lines += _output_size(f"in_{d}", a["kernel"][i], a["stride"][i], a["padding"][i], a["dilation"][i],
                              a["ceil_mode"])
    lines.append(f"shape = (*lead, {sizes_out})")
    lines += [f"{o} = torch.empty(shape, device=x.device, dtype={dtype_name(graph.node(v).dtype)})"
              for o, v in zip(outs, stage.outputs)]
    consts = ", ".join(f"{c}_{d.upper()}={a[key][i]}" for c, key in (("KERNEL", "kernel"), ("STRIDE", "stride"),
                                                                       ("PAD", "padding"), ("DIL", "dilation"))
                       for i, d in enumerate(axes))
    lines += [f"n_elements = {outs[0]}.numel()",
              f"assert n_elements < 2**31 and {' * '.join(f'in_{d}' for d in axes)} < 2**31, 'int32 indices'",
              "n_cols = shape[-1]",
              "n_channels, n_inner = (shape[1], n_elements // (shape[0] * shape[1])) if len(shape) >= 3 else (1, 1)",
              f"grid = (triton.cdiv(n_elements, {config.block}),)",
              f"{name}_kernel[grid]({', '.join(args + outs)}, n_elements, "
              f"{sizes_in}, {sizes_out}, n_cols, n_inner, n_channels,",
              f"    {consts}, BLOCK={config.block}, num_warps={config.warps})",
              f"return {', '.join(outs)}"]
    return f"\ndef {name}({', '.join(args)}):\n" + "".join(f"    {line}\n" for line in lines)
