"""Plan: group norm, one program per (sample, group) slice, with the chain after it fused.

The channels of a group are adjacent in an NCHW tensor, so each slice is one contiguous
run of (C / G) * H * W elements, too long for registers: the program walks it three
times in BLOCK steps — the mean, then the variance around it (two passes keep fp32
exact), then the normalised, per-channel affine output — and the epilogue runs on the
last pass before the only store.
"""
from agent.builtin.ir import OpGraph, Ref
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans.common import Body, Config, Emitted, dtype_name, epilogue, forward_expr, load_cast


INDEX = {Operand.FULL: "base + offs", Operand.CHANNEL: "channel", Operand.SCALAR: "0"}   # epilogue operands


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    x, weight, bias = (list(anchor.args) + [None, None])[:3]
    if not (isinstance(weight, Ref) and isinstance(bias, Ref)):
        raise Unsupported(f"{anchor.name}: group norm without affine weight and bias")
    source = graph.node(x.name)
    body = Body(stage, graph, "v_norm")
    chain = epilogue(stage, graph, body, INDEX, "a group norm")
    lines, params, outs = chain.lines, chain.params, chain.outs
    kernel = f'''
@triton.jit
def {name}_kernel(
    x_ptr, w_ptr, b_ptr,  # input (N, C, *spatial) contiguous; weight and bias (C,)
{params}    group_size, channels_per_group, spatial, num_groups,  # (C / G) * HW elements; C / G; HW; G
    eps,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(axis=0)  # one (sample, group) slice
    base = pid.to(tl.int64) * group_size
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, group_size, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        total += tl.load(x_ptr + base + offs, mask=offs < group_size, other=0.0){load_cast(source)}
    mean = tl.sum(total, axis=0) / group_size
    total = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, group_size, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < group_size
        diff = tl.where(mask, tl.load(x_ptr + base + offs, mask=mask, other=0.0){load_cast(source)} - mean, 0.0)
        total += diff * diff
    rstd = 1.0 / tl.sqrt(tl.sum(total, axis=0) / group_size + eps)
    for start in range(0, group_size, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        mask = offs < group_size
        channel = (pid % num_groups) * channels_per_group + offs // spatial
        x = tl.load(x_ptr + base + offs, mask=mask, other=0.0){load_cast(source)}
        w = tl.load(w_ptr + channel, mask=mask, other=0.0){load_cast(graph.node(weight.name))}
        b = tl.load(b_ptr + channel, mask=mask, other=0.0){load_cast(graph.node(bias.name))}
        v_norm = (x - mean) * rstd * w + b
''' + "".join(f"        {line}\n" for line in lines)
    args = ["x", "w", "b"] + [body.var[n] for n in body.inputs]
    allocs = "".join(f"    {o} = torch.empty_like(x, dtype={dtype_name(graph.node(v).dtype)})\n"
                     for o, v in zip(outs, stage.outputs))
    wrapper = f'''
def {name}({", ".join(args)}):
    assert x.dim() >= 2 and x.shape[1] % {anchor.attrs["num_groups"]} == 0
    x = x.contiguous()
{"".join(f"    {a} = {a}.contiguous(){chr(10)}" for a in args[3:])}{allocs}    channels_per_group = x.shape[1] // {anchor.attrs["num_groups"]}
    spatial = x[0, 0].numel()
    grid = (x.shape[0] * {anchor.attrs["num_groups"]},)
    {name}_kernel[grid]({", ".join(args + outs)}, channels_per_group * spatial, channels_per_group, spatial,
        {anchor.attrs["num_groups"]}, {float(anchor.attrs["eps"])!r}, BLOCK={config.gn_block}, num_warps={config.warps})
    return {", ".join(outs)}
'''
    call_args = [forward_expr(n, graph) for n in (x.name, weight.name, bias.name)] + \
                [forward_expr(n, graph) for n in body.inputs]
    return Emitted(kernel, wrapper, f"{', '.join(stage.outputs)} = {name}({', '.join(call_args)})",
                   frozenset(body.helpers))
