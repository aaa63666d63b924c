"""Exact rewrites that fold a linear reduction after a GEMM or a convolution into its weights.

A GEMM `G = x @ W.T` (a `linear`, or a `matmul` whose right side is `W.t()`) is linear in
its weight rows, so a linear reduction of its columns can be applied to W first:

- **a sum (or mean) over the output features** of `a * G + c` (a: a Python scalar from
  the multiplies and divides on the way; c: the bias and the vectors or scalars added
  or subtracted on the way) is `a * (x @ W.sum(0)) + c.sum()`: one pass over W and a
  matrix-vector product instead of an M x N x K GEMM (L2-14, 18, 51);
- **an average pool over the output features** (kernel k, stride k, no padding) is a
  linear layer whose weight rows and bias are the means of each group of k: the GEMM
  shrinks k times (L2-98).

A convolution is linear in its input, so **a mean (or sum) over every output position**
of `a * conv(x) + c` (c per channel) is, per output channel, the weights times the sum of
the input elements each tap reads: `plans/tap_sums.py` computes those sums in one pass
over x, and a (batch, Cin * taps) x (Cin * taps, Cout) GEMM finishes (L2-42, 44). **A mean
over the first spatial dim** alone is the same sums along that dim only, followed by a
convolution of one dim less whose input channels are (channel, tap) pairs (L2-13). The
convolution's output is never written.

All are exact in real arithmetic; in fp32 they change only the order of the sums, and
the evaluator's tolerances judge the result like any other kernel's. Each reads the
weights on every call (no cached weights), so it stays right when they change.

    nodes, note = fold(nodes, graph, node)      # note is None when no fold applies to node
"""
from dataclasses import dataclass, replace

from agent.builtin.capture import OpGraph, OpNode, Ref
from agent.builtin.ops import CONVS

AFFINE = ("mul", "div", "add", "sub")


def fold(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> tuple[list[OpNode], str | None]:
    """The first fold that applies to `node` (a GEMM or a convolution): the new node list and
    one sentence for the analysis; else `nodes` unchanged and None."""
    for attempt in (fold_sum, fold_pool, fold_conv_mean, fold_conv_depth_mean):
        folded, note = attempt(nodes, graph, node)
        if note:
            return folded, note
    return nodes, None


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
    walked = _affine_chain(node, graph, {(n,), (1, n)}, over_features, found.bias)
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
        made.append(_scaled(made[-1], affine.scale * factor))
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
    return _splice(nodes, dropped, made, total.name), (
        f"{total.name}: the {how} over {node.name}'s output features became a matrix-vector product with its "
        f"weights summed first (an M x {n} x {k} GEMM became one pass over the weights)")


def _affine_chain(node: OpNode, graph: OpGraph, shapes: set[tuple[int, ...]], is_end, bias: str | None):
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


def _scaled(source: OpNode, value: float) -> OpNode:
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
    return _splice(nodes, dropped, made, squeeze.name), (
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


def _splice(nodes: list[OpNode], dropped: set[str], made: list[OpNode], at: str) -> list[OpNode]:
    """`nodes` without `dropped`, with `made` in place of the node named `at` (made's last)."""
    index = next(i for i, other in enumerate(nodes) if other.name == at)
    return [other for other in nodes[:index] if other.name not in dropped] + made + nodes[index + 1:]


@dataclass(frozen=True)
class Conv:
    """A convolution the folds can read: groups 1; stride, padding and dilation per dim."""

    node: OpNode
    x: str
    weight: str
    bias: str | None
    per_dim: dict                   # "stride", "padding", "dilation" -> one int per spatial dim
    transposed: bool

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.node.shape[2:])


def conv(node: OpNode, graph: OpGraph) -> Conv | None:
    """A convolution module's node (its settings bound by name); a functional call with
    settings by position, a keyword bias or an unbatched input is left alone."""
    named = {"stride", "padding", "dilation", "groups"} <= set(node.attrs) and "bias" not in node.attrs
    if node.op not in CONVS or len(node.refs) < 2 or len(node.args) > 3 or not named or node.attrs["groups"] != 1:
        return None
    rank = len(node.shape) - 2
    if {len(graph.node(node.refs[0]).shape), len(graph.node(node.refs[1]).shape)} != {rank + 2}:
        return None
    per_dim = {key: _per_dim(node.attrs[key], rank) for key in ("stride", "padding", "dilation")}
    if None in per_dim.values():
        return None                                         # padding="same" and the like
    bias = node.args[2] if len(node.args) > 2 and isinstance(node.args[2], Ref) else None
    return Conv(node, node.refs[0], node.refs[1], bias.name if bias else None, per_dim,
                node.op.startswith("conv_transpose"))


def _conv_chain(found: Conv, graph: OpGraph, dims: set[int]):
    """`_affine_chain` from the convolution to a sum or mean over exactly `dims`."""
    rank, channels = len(found.node.shape), found.node.shape[1]
    over = lambda user: user.op in ("sum", "mean") and _dims(user, rank) == dims
    return _affine_chain(found.node, graph, {(channels,) + (1,) * (rank - 2), (1, channels) + (1,) * (rank - 2)},
                         over, found.bias)


def _finish(made: list[OpNode], affine: Affine, total: OpNode, reduced: int, shape: tuple[int, ...]) -> list[OpNode]:
    """After the folded product (`made[-1]`, of `shape` = (batch, channels, *rest)): the scale,
    the per-channel values (each one's mean over the reduced positions is itself) and the
    constant, then the reduction's own shape under its name. `reduced`: how many positions
    the reduction covers."""
    name, dtype, mean = total.name, total.dtype, total.op == "mean"
    channel = (shape[1],) + (1,) * (len(shape) - 2)
    values = []                 # made first, so the epilogue of the product can add them
    for i, (coefficient, vector) in enumerate(affine.vectors):
        values.append(OpNode(f"{name}_channel{i}", "view", (Ref(vector),), {"dims": channel}, channel, dtype))
        if coefficient * (1 if mean else reduced) != 1.0:
            values.append(_scaled(values[-1], coefficient * (1 if mean else reduced)))
    added = [n.name for n in values if not any(n.name in m.refs for m in values)]
    made = values + made
    if affine.scale / (reduced if mean else 1) != 1.0:
        made.append(_scaled(made[-1], affine.scale / (reduced if mean else 1)))
    for i, value in enumerate(added):
        made.append(OpNode(f"{name}_plus{i}", "add", (Ref(made[-1].name), Ref(value)), {}, shape, dtype))
    if affine.constant:
        made.append(OpNode(f"{name}_plus", "add", (Ref(made[-1].name), affine.constant * (1 if mean else reduced)),
                           {}, shape, dtype))
    made.append(OpNode(name, "view", (Ref(made[-1].name),), {"dims": tuple(total.shape)}, tuple(total.shape), dtype))
    return made


def fold_conv_mean(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> tuple[list[OpNode], str | None]:
    """Fold a mean or sum over every output position of a convolution (through affine steps)
    into the sums of the input each tap reads and a GEMM with the weights (`plans/tap_sums.py`)."""
    found = conv(node, graph)
    walked = found and _conv_chain(found, graph, set(range(2, len(node.shape))))
    if not walked:
        return nodes, None
    chain, affine, total = walked
    (batch, channels), spatial, dtype, name = node.shape[:2], found.spatial, node.dtype, total.name
    kernel = tuple(graph.node(found.weight).shape[2:])
    inputs, taps = graph.node(found.x).shape[1], _product(kernel)
    made = [OpNode(f"{name}_taps", "tap_sums", (Ref(found.x),), {"transposed": found.transposed, "kernel": kernel,
                                                                "out": spatial, **found.per_dim},
                   (batch, inputs) + kernel, dtype),
            OpNode(f"{name}_tap_rows", "view", (Ref(f"{name}_taps"),), {"dims": (batch, inputs * taps)},
                   (batch, inputs * taps), dtype)]
    if found.transposed:    # (in, out, *kernel) -> (out, in, *kernel)
        made.append(OpNode(f"{name}_weight_t", "transpose", (Ref(found.weight),), {"dim0": 0, "dim1": 1},
                           (channels, inputs) + kernel, dtype))
    made += [OpNode(f"{name}_weight", "view", (Ref(made[-1].name if found.transposed else found.weight),),
                    {"dims": (channels, inputs * taps)}, (channels, inputs * taps), dtype),
             OpNode(f"{name}_product", "linear", (Ref(f"{name}_tap_rows"), Ref(f"{name}_weight"), None), {},
                    (batch, channels), dtype)]
    made = _finish(made, affine, total, _product(spatial), (batch, channels))
    return _splice(nodes, {c.name for c in chain}, made, name), (
        f"{name}: the {total.op} over every output position of {node.name} became the sums of the input each of its "
        f"{taps} taps reads and a {batch} x {channels} x {inputs * taps} GEMM with its weights (the "
        f"{'x'.join(map(str, spatial))} output is never written)")


def fold_conv_depth_mean(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> tuple[list[OpNode], str | None]:
    """Fold a mean or sum over the first spatial dim of a 2-d or 3-d convolution into the sums
    of the input slices each tap of that dim reads (`plans/tap_sums.py`, over="first") and a
    convolution of one dim less whose input channels are (channel, tap) pairs."""
    found = conv(node, graph)
    walked = found and len(node.shape) >= 4 and _conv_chain(found, graph, {2})
    if not walked:
        return nodes, None
    chain, affine, total = walked
    (batch, channels), spatial, dtype, name = node.shape[:2], found.spatial, node.dtype, total.name
    x_shape, w_shape = graph.node(found.x).shape, graph.node(found.weight).shape
    inputs, depth_taps, rest_kernel = x_shape[1], w_shape[2], tuple(w_shape[3:])
    first = {key: values[:1] for key, values in found.per_dim.items()}
    made = [OpNode(f"{name}_taps", "tap_sums", (Ref(found.x),), {"over": "first", "transposed": found.transposed,
                                                                "kernel": (depth_taps,), "out": spatial[:1], **first},
                   (batch, inputs, depth_taps) + tuple(x_shape[3:]), dtype),
            OpNode(f"{name}_tap_channels", "view", (Ref(f"{name}_taps"),),
                   {"dims": (batch, inputs * depth_taps) + tuple(x_shape[3:])},
                   (batch, inputs * depth_taps) + tuple(x_shape[3:]), dtype)]
    if found.transposed:    # (in, out, KD, *k) -> (in, KD, out, *k) -> (in * KD, out, *k)
        made += [OpNode(f"{name}_weight_t", "transpose", (Ref(found.weight),), {"dim0": 1, "dim1": 2},
                        (inputs, depth_taps, channels) + rest_kernel, dtype),
                 OpNode(f"{name}_weight", "view", (Ref(f"{name}_weight_t"),),
                        {"dims": (inputs * depth_taps, channels) + rest_kernel},
                        (inputs * depth_taps, channels) + rest_kernel, dtype)]
    else:                   # (out, in, KD, *k) -> (out, in * KD, *k)
        made.append(OpNode(f"{name}_weight", "view", (Ref(found.weight),),
                           {"dims": (channels, inputs * depth_taps) + rest_kernel},
                           (channels, inputs * depth_taps) + rest_kernel, dtype))
    op = f"{'conv_transpose' if found.transposed else 'conv'}{len(spatial) - 1}d"
    attrs = {key: values[1:] for key, values in found.per_dim.items()} | {"groups": 1}
    if found.transposed:
        attrs["output_padding"] = tuple(_per_dim(node.attrs.get("output_padding", 0), len(spatial)))[1:]
    made.append(OpNode(f"{name}_product", op, (Ref(f"{name}_tap_channels"), Ref(f"{name}_weight"), None), attrs,
                       (batch, channels) + spatial[1:], dtype))
    made = _finish(made, affine, total, spatial[0], (batch, channels) + spatial[1:])
    return _splice(nodes, {c.name for c in chain}, made, name), (
        f"{name}: the {total.op} over dim 2 of {node.name} became the sums of the input slices each of its "
        f"{depth_taps} taps along that dim reads and a {op} over {inputs * depth_taps} (channel, tap) inputs (the "
        f"{'x'.join(map(str, spatial))} output is never written)")


def _per_dim(value, rank: int) -> tuple[int, ...] | None:
    if isinstance(value, int):
        return (value,) * rank
    if isinstance(value, (tuple, list)) and len(value) == rank and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def _dims(node: OpNode, rank: int) -> set[int]:
    dim = node.attrs.get("dim")
    dims = dim if isinstance(dim, (tuple, list)) else (dim,) if dim is not None else ()
    return {d % rank for d in dims}


def _product(values: tuple[int, ...]) -> int:
    result = 1
    for v in values:
        result *= v
    return result
