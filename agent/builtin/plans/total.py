"""Plan: a reduction over every element (a mean-squared error, a Frobenius norm, a sum).

Two kernels, as a tree: each program of the first reduces BLOCK elements of the fused
prologue (the elementwise chain that feeds the reduction, never written to memory) to
one fp32 partial; one program of the second reduces the partials in order (so the
result is deterministic, unlike atomics) and runs the scalar epilogue before the store.
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans.common import Body, Config, Emitted, dtype_name, forward_expr, load_cast

INDEX = {Operand.FULL: "offs", Operand.COL: "offs % n_cols", Operand.ROW: "offs // n_cols"}
COMBINE = {"sum": ("0.0", "tl.sum"), "mean": ("0.0", "tl.sum"), "norm": ("0.0", "tl.sum"),
           "amax": ('float("-inf")', "tl.max"), "max": ('float("-inf")', "tl.max"),
           "amin": ('float("inf")', "tl.min"), "min": ('float("inf")', "tl.min")}


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    if anchor.op == "norm" and anchor.attrs.get("p", 2) not in (2, 2.0, "fro"):
        raise Unsupported(f"{anchor.name}: norm with p={anchor.attrs.get('p')!r} over all elements")
    prologue = [n for n in stage.body if n.shape == stage.shape]
    epilogue = [n for n in stage.body if n.shape != stage.shape]
    body = Body(stage, graph, "v_red", (anchor.refs[0],) if anchor.refs[0] not in stage.names else ())
    kinds = body.kinds(stage.shape)
    early = _inputs_of(prologue, body) | ({anchor.refs[0]} if anchor.refs[0] in body.inputs else set())
    late = [n for n in body.inputs if n not in early]
    if any(kinds[n] is Operand.CHANNEL for n in early) or any(kinds[n] is not Operand.SCALAR for n in late):
        raise Unsupported(f"{anchor.name}: operands of a total reduction must be full, per-column or scalar")
    first = [f"{body.var[n]} = tl.load({body.var[n]}_ptr + {INDEX[kinds[n]]}, mask=mask, other=0.0)"
             f"{load_cast(graph.node(n))}" if kinds[n] is not Operand.SCALAR else
             f"{body.var[n]} = tl.load({body.var[n]}_ptr){load_cast(graph.node(n))}" for n in body.inputs if n in early]
    first += [body.pointwise(node) for node in prologue]
    neutral, combine = COMBINE[anchor.op]
    value = body.var[anchor.refs[0]]
    value = f"{value} * {value}" if anchor.op == "norm" else value
    second = [f"{body.var[n]} = tl.load({body.var[n]}_ptr){load_cast(graph.node(n))}" for n in late]
    finish = {"mean": "total / n_elements", "norm": "tl.sqrt(total)"}.get(anchor.op, "total")
    second += [f"v_red = {finish}"] + [body.pointwise(node) for node in epilogue]
    final = body.var[stage.outputs[0]]
    early_params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} operand\n" for n in body.inputs if n in early)
    late_params = "".join(f"    {body.var[n]}_ptr,  # scalar operand\n" for n in late)
    kernel = f'''
@triton.jit
def {name}_partials_kernel(
{early_params}    partial_ptr,  # (n_blocks,) fp32: one partial per program
    n_elements, n_cols,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(axis=0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
''' + "".join(f"    {line}\n" for line in first) + f'''    tl.store(partial_ptr + pid, {combine}(tl.where(mask, {value}, {neutral}), axis=0))


@triton.jit
def {name}_kernel(
    partial_ptr,  # the first kernel's partials
{late_params}    out_ptr,  # the one-element result
    n_partials, n_elements,
    BLOCK: tl.constexpr,
):
    acc = tl.full((BLOCK,), {neutral}, tl.float32)
    for start in range(0, n_partials, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        part = tl.load(partial_ptr + offs, mask=offs < n_partials, other={neutral})
        acc = {"acc + part" if combine == "tl.sum" else f"tl.{combine[3:]}imum(acc, part)"}
    total = {combine}(acc, axis=0)
''' + "".join(f"    {line}\n" for line in second) + f"    tl.store(out_ptr, {final}.to(out_ptr.dtype.element_ty))\n"
    return Emitted(kernel, _wrapper(stage, graph, body, early, late, name, config),
                   f"{stage.outputs[0]} = {name}({', '.join(forward_expr(n, graph) for n in body.inputs)})",
                   frozenset(body.helpers | {"_broadcast_shape"}))


def _inputs_of(nodes, body: Body) -> set[str]:
    return {r for n in nodes for r in n.refs if r in body.inputs}


def _wrapper(stage: Stage, graph: OpGraph, body: Body, early: set, late: list, name: str, config: Config) -> str:
    args = [body.var[n] for n in body.inputs]
    first = [body.var[n] for n in body.inputs if n in early]
    out = graph.node(stage.outputs[0])
    return f'''
def {name}({", ".join(args)}):
    shape = _broadcast_shape({"".join(f"{a}.shape, " for a in first)})
{"".join(f"    {a} = {a}.contiguous(){chr(10)}" for a in args)}    n_elements = 1
    for size in shape:
        n_elements *= size
    n_blocks = triton.cdiv(n_elements, {config.block})
    partials = torch.empty(n_blocks, device={first[0]}.device, dtype=torch.float32)
    out = torch.empty({tuple(out.shape)!r}, device={first[0]}.device, dtype={dtype_name(out.dtype)})
    {name}_partials_kernel[(n_blocks,)]({"".join(f"{a}, " for a in first)}partials, n_elements, shape[-1],
        BLOCK={config.block}, num_warps={config.warps})
    {name}_kernel[(1,)](partials, {"".join(f"{body.var[n]}, " for n in late)}out, n_blocks, n_elements,
        BLOCK=1024, num_warps=4)
    return out
'''
