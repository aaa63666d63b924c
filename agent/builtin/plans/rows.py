"""Plan: a row program — one Triton program per row of the last dim, the whole row in
registers (BLOCK_N = next power of two of the row length). Rows longer than MAX_ROW, and
the search's `row_block` variant, walk the row instead (long_rows.py).

The row is loaded once; pointwise prologue ops, reductions (sum, mean, max, min,
argmax, argmin, L1/L2 norm, logsumexp), row maps (softmax, log-softmax, layer norm, cumsum) and
the epilogue all run on it in fp32, and only what the graph needs is stored: a
softmax is one read and one write, an RMS norm written as five torch ops is too.
Masked lanes are set to each reduction's neutral element before it reduces.
"""
from agent.builtin import ops
from agent.builtin.ir import OpGraph, OpNode, Ref
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans import long_rows
from agent.builtin.plans.common import Body, Config, Emitted, forward_expr, load_cast
from agent.builtin.plans.row_wrapper import NEG_INF, POS_INF, row_level, wrapper


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    if stage.shape[-1] > ops.MAX_ROW or (config.row_block and long_rows.loopable(stage)):
        return long_rows.emit(stage, graph, config, name)     # a scan keeps its whole row whatever row_block says
    body = Body(stage, graph)
    kinds = body.kinds(stage.shape)
    lines = [_load(body.var[n], kinds[n], graph.node(n)) for n in body.inputs]
    for node in stage.body:
        lines += _row_op(body, node) if node.refs and _is_row_op(node) else [body.pointwise(node)]
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    lines += [_store(o, body.var[v], row_level(graph.node(v), stage)) for o, v in zip(outs, stage.outputs)]
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output\n" for o in outs)
    kernel = f'''
@triton.jit
def {name}_kernel(
{params}    n_cols,  # row length (the last dim)
    BLOCK_N: tl.constexpr,  # next power of two >= n_cols: the whole row in one block
):
    row = tl.program_id(axis=0)
    offs_n = tl.arange(0, BLOCK_N)
    mask = offs_n < n_cols
''' + "".join(f"    {line}\n" for line in lines)
    return Emitted(kernel, wrapper(stage, graph, body, kinds, outs, name, config),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(forward_expr(n, graph) for n in body.inputs)})",
                   frozenset(body.helpers))


def _is_row_op(node: OpNode) -> bool:
    return node.op in ops.ROW_REDUCTIONS | ops.ROW_MAPS


def _load(var: str, kind: Operand, node: OpNode) -> str:
    index = {Operand.FULL: "row * n_cols + offs_n", Operand.COL: "offs_n"}
    if kind in index:
        return f"{var} = tl.load({var}_ptr + {index[kind]}, mask=mask, other=0.0){load_cast(node)}"
    if kind is Operand.ROW:
        return f"{var} = tl.load({var}_ptr + row){load_cast(node)}"
    if kind is Operand.SCALAR:
        return f"{var} = tl.load({var}_ptr){load_cast(node)}"
    raise Unsupported(f"a {kind.value} operand in a row program")


def _store(out: str, var: str, row_level: bool) -> str:
    if row_level:
        return f"tl.store({out}_ptr + row * n_cols + offs_n, {var}.to({out}_ptr.dtype.element_ty), mask=mask)"
    return f"tl.store({out}_ptr + row, {var}.to({out}_ptr.dtype.element_ty))"


def _row_op(body: Body, node: OpNode) -> list[str]:
    a = body.var[node.refs[0]]
    op = node.op
    simple = {
        "sum": f"tl.sum(tl.where(mask, {a}, 0.0), axis=0)",
        "mean": f"tl.sum(tl.where(mask, {a}, 0.0), axis=0) / n_cols",
        "amax": f"tl.max(tl.where(mask, {a}, {NEG_INF}), axis=0)", "max": f"tl.max(tl.where(mask, {a}, {NEG_INF}), axis=0)",
        "amin": f"tl.min(tl.where(mask, {a}, {POS_INF}), axis=0)", "min": f"tl.min(tl.where(mask, {a}, {POS_INF}), axis=0)",
        "argmax": f"tl.argmax(tl.where(mask, {a}, {NEG_INF}), axis=0)",
        "argmin": f"tl.argmin(tl.where(mask, {a}, {POS_INF}), axis=0)",
        "cumsum": f"tl.cumsum(tl.where(mask, {a}, 0.0), axis=0)",
        "cumprod": f"tl.cumprod(tl.where(mask, {a}, 1.0), axis=0)",
    }
    if op in simple:
        return [f"{body.fresh(node.name)} = {simple[op]}  # {op} over the row"]
    if op == "pick":
        index = body.var[node.refs[1]]
        return [f"{body.fresh(node.name)} = tl.sum(tl.where(offs_n == {index}, {a}, 0.0), axis=0)"
                "  # the row's element at its index"]
    if op == "norm":
        p = node.attrs.get("p", 2)
        if p not in (1, 2, 1.0, 2.0, "fro"):
            raise Unsupported(f"{node.name}: norm with p={p!r}")
        term = f"tl.abs({a})" if p in (1, 1.0) else f"{a} * {a}"
        total = f"tl.sum(tl.where(mask, {term}, 0.0), axis=0)"
        return [f"{body.fresh(node.name)} = {total if p in (1, 1.0) else f'tl.sqrt({total})'}  # norm p={p}"]
    if op in ("softmax", "log_softmax"):
        return _softmax(body, node, a)
    if op == "logsumexp":
        m = f"m_{body.count}"
        return [f"{m} = tl.max(tl.where(mask, {a}, {NEG_INF}), axis=0)  # row max, for stability",
                f"{body.fresh(node.name)} = {m} + tl.log(tl.sum(tl.where(mask, tl.exp({a} - {m}), 0.0), axis=0))"
                "  # logsumexp"]
    if op == "layer_norm":
        return _layer_norm(body, node, a)
    raise Unsupported(f"{node.name}: {op} in a row program")


def _softmax(body: Body, node: OpNode, a: str) -> list[str]:
    m, e, s = f"m_{body.count}", f"e_{body.count}", f"s_{body.count}"
    lines = [f"{m} = tl.max(tl.where(mask, {a}, {NEG_INF}), axis=0)  # row max, for stability",
             f"{e} = tl.where(mask, tl.exp({a} - {m}), 0.0)",
             f"{s} = tl.sum({e}, axis=0)"]
    if node.op == "softmax":
        return lines + [f"{body.fresh(node.name)} = {e} / {s}  # softmax"]
    return lines + [f"{body.fresh(node.name)} = {a} - {m} - tl.log({s})  # log_softmax"]


def _layer_norm(body: Body, node: OpNode, a: str) -> list[str]:
    weight, bias = (node.args + (None, None))[1:3]
    mean, diff, rstd = f"mean_{body.count}", f"diff_{body.count}", f"rstd_{body.count}"
    y = f"{diff} * {rstd}"
    if isinstance(weight, Ref):
        y = f"{y} * {body.var[weight.name]}"
    if isinstance(bias, Ref):
        y = f"{y} + {body.var[bias.name]}"
    return [f"{mean} = tl.sum(tl.where(mask, {a}, 0.0), axis=0) / n_cols",
            f"{diff} = tl.where(mask, {a} - {mean}, 0.0)",
            f"{rstd} = 1.0 / tl.sqrt(tl.sum({diff} * {diff}, axis=0) / n_cols + {float(node.attrs['eps'])!r})",
            f"{body.fresh(node.name)} = {y}  # layer_norm"]
