"""Sizes in generated code: read from the tensors the forward has at run time, never the numbers
they were at capture, so a kernel verified at one size holds at the sizes its users call it at.

The op graph knows every shape only at the problem's size. A view the policy made of plain
ints (a batched product's (B*H, M, K) view and its way back, a norm's planes) is written as
expressions of its source's dims: the source's and the target's dims are grouped into runs of
equal product; a run of source dims is their product (`x.shape[0] * x.shape[1]`); a source dim
that splits into several is read from a forward input or parameter that has those dims side by
side (`q.shape[0], q.shape[1]`), else one of them is `-1`. A dim no rule finds stays the number it
was (the second-size check, tools/second_size.py, reports such a kernel: never silently).

    dims = view_dims(node, graph)          # ["x.shape[0] * x.shape[1]", "x.shape[2]"], or None
    reduced_shape("x", dim=1, keepdim=True)   # "(*x.shape[:1], 1, *x.shape[2:])"
"""
from agent.builtin.ir import OpGraph, OpNode
from agent.builtin.plans.common import forward_expr, module_expr

Run = tuple[list[int], list[int]]       # (source dim indices, target dims) of one run of equal product


def view_dims(node: OpNode, graph: OpGraph) -> list[str] | None:
    """The dims of a view of positive ints as run-time expressions; None to keep them as written
    (dims read from sizes already, or a -1 the writer chose)."""
    dims = node.attrs.get("dims") or ()
    if not dims or not all(type(d) is int and d > 0 for d in dims):
        return None
    source = graph.node(node.refs[0])
    runs = align(tuple(source.shape or ()), tuple(dims))
    if runs is None:
        return None
    a, written, free = forward_expr(source.name, graph), [], True
    for positions, targets in runs:
        if len(targets) == 1:
            written.append(" * ".join(f"{a}.shape[{p}]" for p in positions) or str(targets[0]))
            continue
        found = _side_by_side(targets, graph)
        if found is None and free:
            written += ["-1"] + [str(t) for t in targets[1:]]
            free = False
        else:
            written += found or [str(t) for t in targets]
    return written


def align(source: tuple[int, ...], target: tuple[int, ...]) -> list[Run] | None:
    """Source and target dims grouped into runs of equal product, in order; a target dim of 1
    is a run of its own with no source dims; None when they do not line up."""
    runs, i, k = [], 0, 0
    while k < len(target):
        if target[k] == 1:
            runs.append(([], [1]))
            k += 1
            continue
        while i < len(source) and source[i] == 1:
            i += 1
        if i == len(source):
            return None
        positions, targets, have, want = [i], [target[k]], source[i], target[k]
        i, k = i + 1, k + 1
        while have != want:
            if have < want and i < len(source):
                positions.append(i)
                have, i = have * source[i], i + 1
            elif have > want and k < len(target):
                targets.append(target[k])
                want, k = want * target[k], k + 1
            else:
                return None
        runs.append((positions, targets))
    return runs if all(s == 1 for s in source[i:]) else None


def _side_by_side(targets: list[int], graph: OpGraph) -> list[str] | None:
    """`targets` read from a forward input or a parameter whose shape holds them side by side."""
    for node in graph.nodes:
        if node.op not in ("input", "param") or not node.shape:
            continue
        shape, n = tuple(node.shape), len(targets)
        for start in range(len(shape) - n + 1):
            if list(shape[start:start + n]) == targets:
                name = node.attrs["arg"] if node.op == "input" else module_expr(node.attrs["path"])
                return [f"{name}.shape[{start + j}]" for j in range(n)]
    return None


def reduced_shape(x: str, dim: int, keepdim: bool) -> str:
    """The shape of a reduction of `x` over `dim`, from `x`'s shape at run time."""
    middle = "1, " if keepdim else ""
    return f"(*{x}.shape[:{dim}], {middle}*{x}.shape[{dim + 1}:])"
