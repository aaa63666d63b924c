"""Plan: a fused elementwise chain as one flat Triton kernel.

Each program handles BLOCK contiguous elements of the output; every operand is loaded
once with the index its broadcast needs (full tensors by offset, last-dim vectors by
column, per-row values by row, per-channel values by channel, per-position values by
sample and position), the chain runs in fp32
registers, and each value the graph needs later is stored once: one read of each input
and one write of each output instead of one pass per eager op.
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Operand, Stage
from agent.builtin.plans.common import Body, Config, Emitted, dtype_name, forward_expr, load_cast

INDEX = {Operand.FULL: "offs", Operand.COL: "offs % n_cols", Operand.ROW: "offs // n_cols",
         Operand.CHANNEL: "(offs // n_inner) % n_channels", Operand.PLANE: "offs // n_inner",
         Operand.SPATIAL: "offs // (n_inner * n_channels) * n_inner + offs % n_inner"}


def emit(stage: Stage, graph: OpGraph, config: Config, name: str, forced: dict | None = None,
         views: dict[str, str] | None = None) -> Emitted:
    """`forced` fixes operand kinds; `views` rewrites how the forward passes an operand."""
    body = Body(stage, graph)
    kinds = body.kinds(stage.shape, forced)
    loads = [_load(body.var[n], kinds[n], graph.node(n)) for n in body.inputs]
    lines = [body.pointwise(node) for node in stage.body]
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    stores = [f"tl.store({o}_ptr + offs, {body.var[v]}.to({o}_ptr.dtype.element_ty), mask=mask)"
              for o, v in zip(outs, stage.outputs)]
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output\n" for o in outs)
    kernel = f'''
@triton.jit
def {name}_kernel(
{params}    n_elements, n_cols, n_inner, n_channels,  # output size; last dim; C and the size of one channel of (N, C, ...)
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(axis=0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
''' + _indent(loads + lines + stores)
    return Emitted(kernel, _wrapper(stage, graph, body, kinds, outs, name, config), _call(stage, graph, body, name, views or {}),
                   frozenset(body.helpers | {"_broadcast_shape", "_pointwise_sizes"}))


def _load(var: str, kind: Operand, node) -> str:
    if kind is Operand.SCALAR:
        return f"{var} = tl.load({var}_ptr){load_cast(node)}"
    return f"{var} = tl.load({var}_ptr + {INDEX[kind]}, mask=mask, other=0.0){load_cast(node)}"


def _wrapper(stage: Stage, graph: OpGraph, body: Body, kinds: dict, outs: list[str], name: str,
             config: Config) -> str:
    args = [body.var[n] for n in body.inputs]
    contiguous = "".join(f"    {a} = {a}.contiguous()\n" for a, n in zip(args, body.inputs)
                         if kinds[n] is not Operand.SCALAR)
    allocs = "".join(f"    {o} = torch.empty(shape, device={args[0]}.device, dtype={dtype_name(graph.node(v).dtype)})\n"
                     for o, v in zip(outs, stage.outputs))
    return f'''
_{name}_sizes = {{}}  # operand shapes -> launch sizes, worked out once per shape set


def {name}({", ".join(args)}):
    key = ({"".join(f"{a}.shape, " for a in args)})
    sizes = _{name}_sizes.get(key)
    if sizes is None:
        sizes = _{name}_sizes[key] = _pointwise_sizes(key, {len(stage.shape)}, {config.block})
    shape, n_elements, n_cols, n_inner, n_channels, grid = sizes
{contiguous}{allocs}    {name}_kernel[grid]({", ".join(args + outs)}, n_elements, n_cols, n_inner, n_channels,
        BLOCK={config.block}, num_warps={config.warps})
    return {", ".join(outs)}
'''


def _call(stage: Stage, graph: OpGraph, body: Body, name: str, views: dict[str, str]) -> str:
    args = ", ".join(views.get(n, forward_expr(n, graph)) for n in body.inputs)
    return f"{', '.join(stage.outputs)} = {name}({args})"


def _indent(lines: list[str]) -> str:
    return "".join(f"    {line}\n" for line in lines)
