"""Common ops written out as their definitions, in ops the plans already hold (run before
the other rewrites). Each is the same arithmetic PyTorch documents for the op:

- `clamp_min(x, m)` / `clamp_max(x, m)` are `clamp` with one bound; a clamp whose bound is a
  tensor is `maximum` / `minimum` with it (the clamp expression takes numbers only);
- `F.normalize(x, p, dim, eps)` over the last dim (p 1 or 2) is `x / clamp_min(norm(x, p,
  dim, keepdim=True), eps)`: one row program, x read once and written once;
- `F.cosine_similarity(a, b, dim, eps)` over the last dim of two tensors of one shape is
  `sum(a * b) / (max(||a||, eps) * max(||b||, eps))`: the three row sums in one row program
  (PyTorch divides each operand by its clamped norm before the sum; the same value, rounded
  in another order).

Over another dim, another p or operands that broadcast, the op stays in PyTorch as written
(its `kept` call), and the analysis says why.

    nodes, notes = define(graph)
"""
from dataclasses import replace

from agent.builtin.ir import OpGraph, OpNode, Ref


def define(graph: OpGraph) -> tuple[list[OpNode], list[str]]:
    """The graph's nodes with each op above written as its definition; one note per op."""
    made, notes = [], []
    for node in graph.nodes:
        expanded, note = _definition(node, graph)
        made += expanded
        if note:
            notes.append(f"{node.name}: {note}")
    return made, notes


def _definition(node: OpNode, graph: OpGraph) -> tuple[list[OpNode], str | None]:
    if node.op in ("clamp_min", "clamp_max"):
        return _one_bound(node)
    if node.op == "clamp" and len(node.refs) > 1:
        return _tensor_bounds(node)
    if node.op == "normalize" and _along_rows(node, graph) and node.attrs.get("p") in (1, 2, 1.0, 2.0):
        return _normalize(node, graph), (f"F.normalize as its definition, x / max(||x||_{node.attrs['p']:g}, eps) "
                                         "over the last dim: one row program")
    if node.op == "cosine_similarity" and _along_rows(node, graph) \
            and graph.node(node.refs[0]).shape == graph.node(node.refs[1]).shape:
        return _cosine(node, graph), ("F.cosine_similarity as its definition, sum(a * b) / (max(||a||, eps) * "
                                      "max(||b||, eps)) over the last dim: one row program")
    return [node], None


def why_kept(node: OpNode, graph: OpGraph) -> str | None:
    """Why an op this module writes out stayed as it was (it stays in PyTorch); None for others."""
    if node.op not in ("normalize", "cosine_similarity"):
        return None
    call = f"F.{node.op}"
    if not _along_rows(node, graph):
        rank = len(graph.node(node.refs[0]).shape or ()) if node.refs else 0
        return f"{call} over dim {node.attrs.get('dim')!r} of a rank-{rank} tensor (the row program takes the last dim)"
    if node.op == "normalize":
        return f"{call} with p={node.attrs.get('p')!r} (written out for p 1 and 2)"
    return f"{call} of operands of different shapes (written out for one shape)"


def _along_rows(node: OpNode, graph: OpGraph) -> bool:
    """Over the last dim (the row program's), into no `out=` tensor."""
    shape = graph.node(node.refs[0]).shape if node.refs else None
    dim = node.attrs.get("dim")
    return bool(shape) and isinstance(dim, int) and dim % len(shape) == len(shape) - 1 and node.attrs.get("out") is None


def _one_bound(node: OpNode) -> tuple[list[OpNode], str | None]:
    key = "min" if node.op == "clamp_min" else "max"
    if key not in node.attrs:       # a tensor bound: the elementwise maximum / minimum with it
        return [replace(node, op={"min": "maximum", "max": "minimum"}[key], attrs={})], None
    return [replace(node, op="clamp", attrs={"min": None, "max": None, key: node.attrs[key]})], None


def _tensor_bounds(node: OpNode) -> tuple[list[OpNode], str | None]:
    """clamp(x, min=t, max=u) with a tensor among the bounds: a maximum with t (or a clamp
    with a number), then a minimum with u; the capture bound the tensors as refs, min first."""
    tensors, value, made = iter(node.args[1:]), node.args[0], []
    for key, pairwise in (("min", "maximum"), ("max", "minimum")):
        if key in node.attrs and node.attrs[key] is None:
            continue
        step = (OpNode(f"{node.name}_{key}", pairwise, (value, next(tensors)), {}, node.shape, node.dtype)
                if key not in node.attrs else
                OpNode(f"{node.name}_{key}", "clamp", (value,), {"min": None, "max": None, key: node.attrs[key]},
                       node.shape, node.dtype))
        made.append(step)
        value = Ref(step.name)
    made[-1] = replace(made[-1], name=node.name)
    return made, None


def _normalize(node: OpNode, graph: OpGraph) -> list[OpNode]:
    x, shape, dtype = node.args[0], graph.node(node.refs[0]).shape, node.dtype
    row = tuple(shape[:-1]) + (1,)
    norm = OpNode(f"{node.name}_norm", "norm", (x,), {"p": node.attrs["p"], "dim": -1, "keepdim": True}, row, dtype)
    floor = OpNode(f"{node.name}_clamped", "clamp", (Ref(norm.name),), {"min": node.attrs["eps"], "max": None}, row,
                   dtype)
    return [norm, floor, OpNode(node.name, "div", (x, Ref(floor.name)), {}, node.shape, dtype)]


def _cosine(node: OpNode, graph: OpGraph) -> list[OpNode]:
    a, b = node.args[:2]
    shape, dtype, n, eps = graph.node(a.name).shape, node.dtype, node.name, node.attrs["eps"]
    rows = tuple(shape[:-1])

    def row_sum(name: str, left: Ref, right: Ref) -> list[OpNode]:
        product = OpNode(f"{n}_{name}_terms", "mul", (left, right), {}, shape, dtype)
        return [product, OpNode(f"{n}_{name}", "sum", (Ref(product.name),), {"dim": -1, "keepdim": False}, rows,
                                dtype)]

    made = row_sum("dot", a, b) + row_sum("a_squares", a, a) + row_sum("b_squares", b, b)
    for side in ("a", "b"):
        length = OpNode(f"{n}_{side}_norm", "sqrt", (Ref(f"{n}_{side}_squares"),), {}, rows, dtype)
        made += [length, OpNode(f"{n}_{side}_clamped", "clamp", (Ref(length.name),), {"min": eps, "max": None}, rows,
                                dtype)]
    made.append(OpNode(f"{n}_scale", "mul", (Ref(f"{n}_a_clamped"), Ref(f"{n}_b_clamped")), {}, rows, dtype))
    return made + [OpNode(n, "div", (Ref(f"{n}_dot"), Ref(f"{n}_scale")), {}, node.shape, dtype)]
