"""Plan: a reduction or arg-reduction over a dim that is not the last.

The input is viewed as (outer, n_reduce, n_inner), contiguous. Each program owns
BLOCK_I neighbouring outputs of one outer slice and walks the reduced dim in chunks of
BLOCK_R rows, so every load is a coalesced (BLOCK_R, BLOCK_I) tile; sums accumulate in
fp32, arg-reductions keep the first index of the extreme value, as torch does. Softmax,
log-softmax and logsumexp over such a dim are channel_map.py's.
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans import channel_map
from agent.builtin.plans.common import Body, Config, Emitted, dtype_name, forward_expr, load_cast
from agent.builtin.plans.sizes import reduced_shape

START = {"sum": "tl.zeros((BLOCK_I,), dtype=tl.float32)", "mean": "tl.zeros((BLOCK_I,), dtype=tl.float32)",
         "amax": 'tl.full((BLOCK_I,), float("-inf"), tl.float32)', "amin": 'tl.full((BLOCK_I,), float("inf"), tl.float32)',
         "argmax": 'tl.full((BLOCK_I,), float("-inf"), tl.float32)', "argmin": 'tl.full((BLOCK_I,), float("inf"), tl.float32)'}
START["max"], START["min"] = START["amax"], START["amin"]
STEP = {"sum": ["acc += tl.sum(tile, axis=0)"], "mean": ["acc += tl.sum(tile, axis=0)"],
        "amax": ['acc = tl.maximum(acc, tl.max(tl.where(mask, tile, float("-inf")), axis=0))'],
        "amin": ['acc = tl.minimum(acc, tl.min(tl.where(mask, tile, float("inf")), axis=0))'],
        "argmax": ['tile = tl.where(mask, tile, float("-inf"))', "best = tl.max(tile, axis=0)",
                   "better = best > acc  # strict: ties keep the first index",
                   "idx = tl.where(better, tl.argmax(tile, axis=0) + r0, idx)", "acc = tl.where(better, best, acc)"],
        "argmin": ['tile = tl.where(mask, tile, float("inf"))', "best = tl.min(tile, axis=0)",
                   "better = best < acc  # strict: ties keep the first index",
                   "idx = tl.where(better, tl.argmin(tile, axis=0) + r0, idx)", "acc = tl.where(better, best, acc)"]}
STEP["max"], STEP["min"] = STEP["amax"], STEP["amin"]


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    if anchor.op in channel_map.MAPS:
        return channel_map.emit(stage, graph, config, name)
    if anchor.op not in STEP:
        raise Unsupported(f"{anchor.name}: {anchor.op} over a dim that is not the last")
    source = graph.node(anchor.refs[0])
    arg = anchor.op in ("argmax", "argmin")
    result = {"mean": "acc / n_reduce", "argmax": "idx", "argmin": "idx"}.get(anchor.op, "acc")
    body = Body(stage, graph, "v_red")
    kinds = body.kinds(stage.shape)
    if any(k is not Operand.FULL for k in kinds.values()):
        raise Unsupported(f"{anchor.name}: an epilogue operand that is not full-size after a strided reduction")
    lines = [f"{body.var[n]} = tl.load({body.var[n]}_ptr + pid_o * n_inner + offs_i, mask=mask_i, other=0.0)"
             f"{load_cast(graph.node(n))}" for n in body.inputs]
    lines += [body.pointwise(node) for node in stage.body]
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    lines += [f"tl.store({o}_ptr + pid_o * n_inner + offs_i, {body.var[v]}.to({o}_ptr.dtype.element_ty), mask=mask_i)"
              for o, v in zip(outs, stage.outputs)]
    params = "".join(f"    {body.var[n]}_ptr,  # full operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output (outer, n_inner)\n" for o in outs)
    loop = "".join(f"        {line}\n" for line in STEP[anchor.op])
    kernel = f'''
@triton.jit
def {name}_kernel(
    x_ptr,  # input viewed as (outer, n_reduce, n_inner), contiguous
{params}    n_reduce, n_inner,  # the reduced dim and the product of the dims after it
    BLOCK_R: tl.constexpr, BLOCK_I: tl.constexpr,  # reduced rows per step, outputs per program
):
    pid_o = tl.program_id(axis=0)
    pid_i = tl.program_id(axis=1)
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    mask_i = offs_i < n_inner
    acc = {START[anchor.op]}
{"    idx = tl.zeros((BLOCK_I,), dtype=tl.int32)" + chr(10) if arg else ""}    for r0 in range(0, n_reduce, BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R)
        mask = (offs_r[:, None] < n_reduce) & mask_i[None, :]
        tile = tl.load(x_ptr + pid_o * n_reduce * n_inner + offs_r[:, None] * n_inner + offs_i[None, :],
                       mask=mask, other=0.0){load_cast(source)}
{loop}    v_red = {result}
''' + "".join(f"    {line}\n" for line in lines)
    return Emitted(kernel, _wrapper(stage, graph, body, outs, name, config),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(forward_expr(n, graph) for n in [source.name] + body.inputs)})",
                   frozenset(body.helpers))


def _wrapper(stage: Stage, graph: OpGraph, body: Body, outs: list[str], name: str, config: Config) -> str:
    anchor = stage.anchor
    rank = len(graph.node(anchor.refs[0]).shape)
    dim = anchor.attrs["dim"]
    dim = (dim[0] if isinstance(dim, (tuple, list)) else dim) % rank
    args = ["x"] + [body.var[n] for n in body.inputs]
    shape = lambda v: reduced_shape("x", dim, keepdim=len(graph.node(v).shape) == rank)   # noqa: E731 (x's, less dim)
    allocs = "".join(f"    {o} = torch.empty({shape(v)}, device=x.device, dtype={dtype_name(graph.node(v).dtype)})\n"
                     for o, v in zip(outs, stage.outputs))
    return f'''
def {name}({", ".join(args)}):
    x = x.contiguous()
    n_reduce = x.shape[{dim}]
    n_inner = x[{"0, " * dim}0].numel() if x.dim() > {dim + 1} else 1
    outer = x.numel() // (n_reduce * n_inner)
{"".join(f"    {a} = {a}.contiguous(){chr(10)}" for a in args[1:])}{allocs}    BLOCK_I = min({config.reduce_inner}, triton.next_power_of_2(n_inner))
    grid = (outer, triton.cdiv(n_inner, BLOCK_I))
    {name}_kernel[grid]({", ".join(args + outs)}, n_reduce, n_inner,
        BLOCK_R={config.reduce_block}, BLOCK_I=BLOCK_I, num_warps={config.warps})
    return {", ".join(outs)}
'''
