"""Plan: batch norm over (N, C, *spatial) with the batch's own statistics (a module in
training mode, as KernelBench builds them) or its running ones (eval mode), then the
chain after it fused into the normalising pass.

A channel's N * H * W elements are N runs of H * W, so the statistics are partial sums
over (channel, chunk) programs — enough programs to fill the GPU even with few channels —
in two passes (the mean, then the squared deviations around it, which keeps fp32 exact);
the (C, chunks) partials are summed by torch, C values. The normalising pass is one
elementwise kernel: x read once more, the output written once. The wrapper updates the
module's running statistics exactly as nn.BatchNorm does, so the module stays usable in
eval mode afterwards.
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Operand, Stage
from agent.builtin.plans.common import (Body, Config, Emitted, dtype_name, epilogue, forward_expr, load_cast,
                                        module_expr)

PROGRAMS = 1024      # statistics programs to aim for: (channel, chunk) pairs


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    """The statistics and normalising kernels, the wrapper (module in, statistics chosen
    by its mode) and the forward's call."""
    anchor = stage.anchor
    x = anchor.refs[0]
    body = Body(stage, graph, "v_norm")
    chain = epilogue(stage, graph, body, {Operand.FULL: "offs", Operand.CHANNEL: "channel", Operand.SCALAR: "0"},
                     "a batch norm")
    lines, params, outs = chain.lines, chain.params, chain.outs
    kernel = STATS_KERNEL.format(name=name, cast=load_cast(graph.node(x))) + f'''
@triton.jit
def {name}_kernel(
    x_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr,  # input (N, C, *spatial) contiguous; per-channel statistics and affine
{params}    total, channels, spatial,  # N * C * HW; C; HW
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(axis=0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    channel = (offs // spatial) % channels
    x = tl.load(x_ptr + offs, mask=mask, other=0.0){load_cast(graph.node(x))}
    mean = tl.load(mean_ptr + channel, mask=mask, other=0.0)
    rstd = tl.load(rstd_ptr + channel, mask=mask, other=0.0)
    w = tl.load(w_ptr + channel, mask=mask, other=0.0)
    b = tl.load(b_ptr + channel, mask=mask, other=0.0)
    v_norm = (x - mean) * rstd * w + b
''' + "".join(f"    {line}\n" for line in lines)
    args = ["x", "bn"] + [body.var[n] for n in body.inputs]
    call = [forward_expr(x, graph), module_expr(anchor.attrs["module"])] + [forward_expr(n, graph) for n in body.inputs]
    return Emitted(kernel, _wrapper(name, args, outs, stage, graph, config),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(call)})",
                   frozenset(body.helpers | {"update_running_stats"}))


STATS_KERNEL = '''
@triton.jit
def {name}_partial_kernel(
    x_ptr,  # input (N, C, *spatial) contiguous
    mean_ptr,  # (C,) channel means, read when CENTRED
    partial_ptr,  # (C, n_chunks) output: one partial sum per program
    channels, spatial, count, chunk,  # C; HW; N * HW elements per channel; elements per chunk
    CENTRED: tl.constexpr,  # False: sums of x; True: sums of (x - mean)^2
    BLOCK: tl.constexpr,
):
    channel = tl.program_id(axis=0)
    part = tl.program_id(axis=1)
    mean = 0.0
    if CENTRED:
        mean = tl.load(mean_ptr + channel)
    end = tl.minimum((part + 1) * chunk, count)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(part * chunk, end, BLOCK):
        i = start + tl.arange(0, BLOCK)  # position in the channel's N * HW elements
        mask = i < end
        sample = (i // spatial).to(tl.int64)
        x = tl.load(x_ptr + (sample * channels + channel) * spatial + i % spatial, mask=mask, other=0.0){cast}
        if CENTRED:
            x = tl.where(mask, x - mean, 0.0)
            x = x * x
        acc += x
    tl.store(partial_ptr + channel * tl.num_programs(axis=1) + part, tl.sum(acc, axis=0))
'''


def _wrapper(name: str, args: list[str], outs: list[str], stage: Stage, graph: OpGraph, config: Config) -> str:
    allocs = "".join(f"    {o} = torch.empty_like(x, dtype={dtype_name(graph.node(v).dtype)})\n"
                     for o, v in zip(outs, stage.outputs))
    block = config.block
    return f'''
def {name}({", ".join(args)}):
    assert x.dim() >= 3, "batch norm over (N, C, *spatial)"
    x = x.contiguous()
{"".join(f"    {a} = {a}.contiguous(){chr(10)}" for a in args[2:])}    batch, channels = x.shape[:2]
    spatial = x[0, 0].numel()
    count = batch * spatial
    if bn.training or not bn.track_running_stats:  # the batch's own statistics, as nn.BatchNorm
        chunks = max(1, min(triton.cdiv(count, {block}), {PROGRAMS} // channels))
        chunk = triton.cdiv(count, chunks)
        partial = torch.empty(channels, chunks, device=x.device, dtype=torch.float32)
        grid = (channels, chunks)
        {name}_partial_kernel[grid](x, partial, partial, channels, spatial, count, chunk, CENTRED=False, BLOCK={block})
        mean = partial.sum(dim=1) / count
        {name}_partial_kernel[grid](x, mean, partial, channels, spatial, count, chunk, CENTRED=True, BLOCK={block})
        var = partial.sum(dim=1) / count
        if bn.training and bn.track_running_stats:
            update_running_stats(bn, mean, var, count)
    else:
        mean, var = bn.running_mean.float(), bn.running_var.float()
    rstd = torch.rsqrt(var + bn.eps)
    w = bn.weight if bn.affine else torch.ones_like(mean)
    b = bn.bias if bn.affine else torch.zeros_like(mean)
{allocs}    grid = (triton.cdiv(x.numel(), {block}),)
    {name}_kernel[grid](x, mean, rstd, w, b, {", ".join(args[2:] + outs + [""])}x.numel(), channels, spatial,
        BLOCK={block}, num_warps={config.warps})
    return {", ".join(outs)}
'''


RUNNING_STATS = '''

def update_running_stats(bn, mean, var, count):
    """What nn.BatchNorm does in training mode: a momentum (or cumulative) average of the
    batch mean and of the unbiased batch variance."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        bn.running_mean.mul_(1.0 - momentum).add_(mean, alpha=momentum)
        bn.running_var.mul_(1.0 - momentum).add_(var * count / max(count - 1, 1), alpha=momentum)
'''
