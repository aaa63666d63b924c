"""Exact rewrites that fold a linear reduction after a GEMM into the GEMM's weights, and
the pieces the convolution folds (fold_conv.py) share with them.

A GEMM `G = x @ W.T` (a `linear`, or a `matmul` whose right side is `W.t()`) is linear in
its weight rows, so a linear reduction of its columns can be applied to W first:

- **a sum (or mean) over the output features** of `a * G + c` (a: a Python scalar from
  the multiplies and divides on the way; c: the bias and the vectors or scalars added
  or subtracted on the way) is `a * (x @ W.sum(0)) + c.sum()`: one pass over W and a
  matrix-vector product instead of an M x N x K GEMM (L2-14, 18, 51);
- **an average pool over the output features** (kernel k, stride k, no padding) is a
  linear layer whose weight rows and bias are the means of each group of k: the GEMM
  shrinks k times (L2-98).

Both are exact in real arithmetic; in fp32 they change only the order of the sums, and
the evaluator's tolerances judge the result like any other kernel's. Each reads the
weights on every call (no cached weights), so it stays right when they change.

    nodes, note = fold_sum(nodes, graph, node)      # note is None when it does not apply
"""
from dataclasses import dataclass, replace

from agent.builtin.ir import OpGraph, OpNode, Ref

AFFINE = ("mul", "div", "add", "sub")


@dataclass(frozen=True)
class Gemm:
    """`x @ W.T + bias` with x of shape (M, K) and W of shape (N, K)."""

    node: OpNode
    x: str
    weight: str
    bias: str | None
    transpose: str | None           # the `t(W)` node a matmul read W through, dropped with the GEMM


def gemm(node: OpNode, graph: OpGraph) -> Gemm | None:
    if node.op == "linear" and len(node.refs) >= 2:
        x, weight = node.refs[:2]
        bias = node.args[2] if len(node.args) > 2 else None
        found = Gemm(node, x, weight, bias.name if isinstance(bias, Ref) else None, None)
    elif node.op in ("matmul", "mm") and len(node.refs) == 2:
        x, right = node.refs
        transposed = graph.node(right)
        if transposed.op != "t" or len(graph.users(right)) != 1:
            return None
        found = Gemm(node, x, transposed.refs[0], None, right)
    else:
        return None
    shapes = graph.node(found.x).shape, graph.node(found.weight).shape
    if any(shape is None or len(shape) != 2 for shape in shapes) or shapes[0][1] != shapes[1][1]:
        return None
    return found


@dataclass
class Affine:
    """What a chain of scalar and per-column steps did to G: `scale * G + sum(terms)`."""

    scale: float = 1.0
    constant: float = 0.0
    vectors: tuple[tuple[float, str], ...] = ()     # (coefficient, node of one of the `shapes` given to step)

    def step(self, node: OpNode, source: str, graph: OpGraph, shapes: set[tuple[int, ...]]) -> bool:
        """Apply `node` (one of AFFINE, reading `source` once) in place; False when it is not
        affine (`c / G`), adds a tensor not of `shapes` (one value per output feature or
        channel), or has options (`alpha=`, `rounding_mode=`) that change what it computes."""
        if node.op not in AFFINE or len(node.args) != 2 or node.attrs or node.args.count(Ref(source)) != 1:
            return False
        flipped = node.args[1] == Ref(source)           # c + G, c * G, c - G
        other = node.args[0] if flipped else node.args[1]
        scalar = isinstance(other, (int, float)) and not isinstance(other, bool)
        vector = isinstance(other, Ref) and graph.node(other.name).shape in shapes and node.op in ("add", "sub")
        if not (scalar or vector) or (node.op == "div" and (flipped or other == 0)):
            return False            # c / G; a division by zero (a sum of infinities is not the scaled sum)
        if flipped and node.op == "sub":                # c - G = -G + c
            self._times(-1.0)
        sign = -1.0 if node.op == "sub" and not flipped else 1.0
        if node.op in ("mul", "div"):
            self._times(other if node.op == "mul" else 1.0 / other)
        elif scalar:
            self.constant += sign * other
        else:
            self.vectors += ((sign, other.name),)
        return True

    def _times(self, factor: float) -> None:
        self.scale, self.constant = self.scale * factor, self.constant * factor
        self.vectors = tuple((c * factor, v) for c, v in self.vectors)


def fold_sum(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> tuple[list[OpNode], str | None]:
    """Fold a sum or mean over a GEMM's output features (through affine steps) into its weights."""
    found = gemm(node, graph)
    if found is None:
        return nodes, None
    (m, k), n = graph.node(found.x).shape, graph.node(found.weight).shape[0]
    over_features = lambda user: user.op in ("sum", "mean") and user.attrs.get("dim") in (1, -1, (1,), (-1,), [1], [-1])
    walked = affine_chain(node, graph, {(n,), (1, n)}, over_features, found.bias)
    if walked is None:
        return nodes, None
    chain, affine, total = walked
    dtype = node.dtype
    factor = 1.0 / n if total.op == "mean" else 1.0
    made = _vector_total(affine, factor, total.name, graph, dtype)
    offset = made[-1].name if made else None
    made.append(OpNode(f"{total.name}_weights", "sum", (Ref(found.weight),), {"dim": 0, "keepdim": False}, (k,),
                       dtype))
    made.append(OpNode(f"{total.name}_products", "mul", (Ref(found.x), Ref(made[-1].name)), {}, (m, k), dtype))
    made.append(OpNode(f"{total.name}_dot", "sum", (Ref(made[-1].name),), {"dim": -1, "keepdim": True}, (m, 1),
                       dtype))
    if affine.scale * factor != 1.0:
        made.append(scaled(made[-1], affine.scale * factor))
    if offset is not None:
        made.append(OpNode(f"{total.name}_offset", "add", (Ref(made[-1].name), Ref(offset)), {}, (m, 1), dtype))
    if affine.constant:
        made.append(OpNode(f"{total.name}_plus", "add", (Ref(made[-1].name), affine.constant * n * factor), {},
                           (m, 1), dtype))
    if tuple(total.shape) != (m, 1):
        made.append(OpNode(f"{total.name}_rows", "view", (Ref(made[-1].name),), {"dims": tuple(total.shape)},
                           tuple(total.shape), dtype))
    made[-1] = replace(made[-1], name=total.name)
    dropped = {c.name for c in chain} | ({found.transpose} if found.transpose else set())
    how = "mean" if total.op == "mean" else "sum"
    return splice(nodes, dropped, made, total.name), (
        f"{total.name}: the {how} over {node.name}'s output features became a matrix-vector product with its "
        f"weights summed first (an M x {n} x {k} GEMM became one pass over the weights)")


def affine_chain(node: OpNode, graph: OpGraph, shapes: set[tuple[int, ...]], is_end, bias: str | None):
    """(the nodes from `node` up to the reduction, what they did to `node`'s value, the
    reduction) when each is the only user of the one before and all but the last are affine
    steps (`Affine.step` with `shapes`) and `is_end` takes the last; else None."""
    chain, affine, last = [node], Affine(), node
    if bias is not None:
        affine.vectors = ((1.0, bias),)
    while True:
        users = graph.users(last.name)
        if len(users) != 1 or last.name == graph.output:
            return None
        user = users[0]
        if is_end(user):    # a reduction with options beyond its dims (dtype=) is not taken
            return (chain, affine, user) if set(user.attrs) <= {"dim", "keepdim"} else None
        if not affine.step(user, last.name, graph, shapes):
            return None
        chain.append(user)
        last = user


def _vector_total(affine: Affine, factor: float, prefix: str, graph: OpGraph, dtype) -> list[OpNode]:
    """Nodes that add up the vectors, each times (coefficient * factor), and total them: shape (1,) or (1, 1)."""
    made, combined = [], None           # combined: the node holding the weighted sum so far
    for i, (coefficient, vector) in enumerate(affine.vectors):
        term = graph.node(vector)
        if coefficient * factor != 1.0:
            term = OpNode(f"{prefix}_term{i}", "mul", (Ref(vector), coefficient * factor), {}, term.shape, dtype)
            made.append(term)
        if combined is not None:
            shape = max(combined.shape, term.shape, key=len)
            term = OpNode(f"{prefix}_terms{i}", "add", (Ref(combined.name), Ref(term.name)), {}, shape, dtype)
            made.append(term)
        combined = term
    if combined is None:
        return made
    made.append(OpNode(f"{prefix}_offset_total", "sum", (Ref(combined.name),), {"dim": -1, "keepdim": True},
                       tuple(combined.shape[:-1]) + (1,), dtype))
    return made


def scaled(source: OpNode, value: float) -> OpNode:
    return OpNode(f"{source.name}_scaled", "mul", (Ref(source.name), value), {}, source.shape, source.dtype)


def fold_pool(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> tuple[list[OpNode], str | None]:
    """Fold an average pool over a GEMM's output features (unsqueeze, pool, squeeze) into its weights."""
    found = gemm(node, graph)
    chain = _single_user_chain(node, graph, ("unsqueeze", "avg_pool", "squeeze"))
    if found is None or chain is None:
        return nodes, None
    (m, k), n = graph.node(found.x).shape, graph.node(found.weight).shape[0]
    unsqueeze, pool, squeeze = chain
    size = pool.attrs.get("kernel", (0,))[0]
    if (unsqueeze.attrs.get("dim") != 1 or squeeze.attrs.get("dim") != 1 or pool.attrs.get("dims") != 1
            or pool.attrs.get("stride") not in (None, (size,)) or pool.attrs.get("padding") != (0,)
            or pool.attrs.get("dilation") != (1,) or pool.attrs.get("divisor_override") is not None
            or pool.attrs.get("return_indices") or size < 1 or n % size):
        return nodes, None
    groups, dtype = n // size, node.dtype
    made = [OpNode(f"{squeeze.name}_grouped", "view", (Ref(found.weight),), {"dims": (groups, size, k)},
                   (groups, size, k), dtype),
            OpNode(f"{squeeze.name}_weight", "mean", (Ref(f"{squeeze.name}_grouped"),), {"dim": 1, "keepdim": False},
                   (groups, k), dtype)]
    bias = None
    if found.bias is not None:
        made += [OpNode(f"{squeeze.name}_bias_grouped", "view", (Ref(found.bias),), {"dims": (groups, size)},
                        (groups, size), dtype),
                 OpNode(f"{squeeze.name}_bias", "mean", (Ref(f"{squeeze.name}_bias_grouped"),),
                        {"dim": -1, "keepdim": False}, (groups,), dtype)]
        bias = Ref(made[-1].name)
    made.append(OpNode(squeeze.name, "linear", (Ref(found.x), Ref(f"{squeeze.name}_weight"), bias), {}, (m, groups),
                       dtype))
    dropped = {node.name, unsqueeze.name, pool.name} | ({found.transpose} if found.transpose else set())
    return splice(nodes, dropped, made, squeeze.name), (
        f"{pool.name}: the average pool over {node.name}'s output features (groups of {size}) became a linear "
        f"layer over the group means of its weights: an M x {groups} x {k} GEMM instead of M x {n} x {k}")


def _single_user_chain(node: OpNode, graph: OpGraph, ops: tuple[str, ...]) -> list[OpNode] | None:
    """The nodes after `node`, each the only user of the one before, when their ops are `ops`."""
    chain, last = [], node
    for op in ops:
        users = graph.users(last.name)
        if len(users) != 1 or last.name == graph.output or users[0].op != op:
            return None
        chain.append(users[0])
        last = users[0]
    return chain


def splice(nodes: list[OpNode], dropped: set[str], made: list[OpNode], at: str) -> list[OpNode]:
    """`nodes` without `dropped`, with `made` in place of the node named `at` (made's last)."""
    index = next(i for i, other in enumerate(nodes) if other.name == at)
    return [other for other in nodes[:index] if other.name not in dropped] + made + nodes[index + 1:]
