"""Plan: softmax, log-softmax or logsumexp over a dim that is not the last (the channels
of an NCHW activation, most often), with the chain after it fused.

The input is viewed as (outer, n_reduce, n_inner), contiguous. The reduced dim is short
(channels), so each program holds all of it for BLOCK_I neighbouring positions: one
coalesced (BLOCK_R, BLOCK_I) tile, loaded once; the max, the exponentials and their sum
stay in registers, and the result (and its epilogue) is stored once. Eager PyTorch runs
such a softmax as a strided kernel and every op after it as another pass.
"""
from agent.builtin.ir import OpGraph
from agent.builtin.ops import MAX_STRIDED_MAP
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans.common import Body, Config, Emitted, dtype_name, epilogue, forward_expr, load_cast
from agent.builtin.plans.sizes import reduced_shape

MAPS = {"softmax", "log_softmax", "logsumexp"}
TILE = 4096                 # elements per (BLOCK_R, BLOCK_I) tile
NEG_INF = 'float("-inf")'


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    """The stage's kernel, wrapper and call; its anchor is the softmax, log-softmax or logsumexp."""
    anchor = stage.anchor
    source = graph.node(anchor.refs[0])
    dim = _dim(anchor, len(source.shape))
    n_reduce = source.shape[dim]
    if n_reduce > MAX_STRIDED_MAP:
        raise Unsupported(f"{anchor.name}: {anchor.op} over a strided dim of {n_reduce} (at most {MAX_STRIDED_MAP})")
    full = anchor.op != "logsumexp"         # softmax keeps the reduced dim; logsumexp drops it
    body = Body(stage, graph, "v_map")
    index = ({Operand.FULL: "base + offs_r[:, None] * n_inner + offs_i[None, :]",
              Operand.CHANNEL: "offs_r[:, None]", Operand.SCALAR: "0"} if full else
             {Operand.FULL: "pid_o.to(tl.int64) * n_inner + offs_i", Operand.SCALAR: "0"})
    if dim != 1:
        index.pop(Operand.CHANNEL, None)        # a (C, 1, 1) value lines up with dim 1 only
    chain = epilogue(stage, graph, body, index, f"a strided {anchor.op}", "mask" if full else "mask_i")
    lines, params, outs = chain.lines, chain.params, chain.outs
    kernel = f'''
@triton.jit
def {name}_kernel(
    x_ptr,  # input viewed as (outer, n_reduce, n_inner), contiguous
{params}    n_reduce, n_inner,  # the reduced dim and the product of the dims after it
    BLOCK_R: tl.constexpr, BLOCK_I: tl.constexpr,  # the whole reduced dim; positions per program
):
    pid_i = tl.program_id(axis=0)  # positions on axis 0: it takes 2**31 - 1 programs, axis 1 only 65535
    pid_o = tl.program_id(axis=1)
    offs_r = tl.arange(0, BLOCK_R)
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    mask_i = offs_i < n_inner
    mask = (offs_r[:, None] < n_reduce) & mask_i[None, :]
    base = pid_o.to(tl.int64) * n_reduce * n_inner
    x = tl.load(x_ptr + base + offs_r[:, None] * n_inner + offs_i[None, :], mask=mask, other={NEG_INF}){load_cast(source)}
    m = tl.max(x, axis=0)  # per position, over the reduced dim
    e = tl.where(mask, tl.exp(x - m[None, :]), 0.0)
    s = tl.sum(e, axis=0)
    v_map = {RESULT[anchor.op]}
''' + "".join(f"    {line}\n" for line in lines)
    call = [forward_expr(source.name, graph)] + [forward_expr(n, graph) for n in body.inputs]
    return Emitted(kernel, _wrapper(stage, graph, body, outs, name, config),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(call)})", frozenset(body.helpers))


RESULT = {"softmax": "e / s[None, :]", "log_softmax": "x - m[None, :] - tl.log(s)[None, :]",
          "logsumexp": "m + tl.log(s)"}


def _dim(anchor, rank: int) -> int:
    dim = anchor.attrs["dim"]
    return (dim[0] if isinstance(dim, (tuple, list)) else dim) % rank


def _wrapper(stage: Stage, graph: OpGraph, body: Body, outs: list[str], name: str, config: Config) -> str:
    source = graph.node(stage.anchor.refs[0])
    dim = _dim(stage.anchor, len(source.shape))
    args = ["x"] + [body.var[n] for n in body.inputs]
    rank = len(source.shape)    # softmax keeps x's shape; logsumexp drops dim (or keeps it as 1)
    shape = lambda v: "x.shape" if graph.node(v).shape == source.shape else \
        reduced_shape("x", dim, keepdim=len(graph.node(v).shape) == rank)   # noqa: E731
    allocs = "".join(f"    {o} = torch.empty({shape(v)}, device=x.device, dtype={dtype_name(graph.node(v).dtype)})\n"
                     for o, v in zip(outs, stage.outputs))
    return f'''
def {name}({", ".join(args)}):
    x = x.contiguous()
    n_reduce = x.shape[{dim}]
    assert n_reduce <= {MAX_STRIDED_MAP}, "the kernel holds the whole reduced dim: at most {MAX_STRIDED_MAP}"
    BLOCK_R = triton.next_power_of_2(n_reduce)
    n_inner = x[{"0, " * dim}0].numel() if x.dim() > {dim + 1} else 1
    outer = x.numel() // (n_reduce * n_inner)
{"".join(f"    {a} = {a}.contiguous(){chr(10)}" for a in args[1:])}{allocs}    BLOCK_I = min(max(16, {TILE} // BLOCK_R), triton.next_power_of_2(n_inner))
    grid = (triton.cdiv(n_inner, BLOCK_I), outer)
    {name}_kernel[grid]({", ".join(args + outs)}, n_reduce, n_inner,
        BLOCK_R=BLOCK_R, BLOCK_I=BLOCK_I, num_warps={config.warps})
    return {", ".join(outs)}
'''
