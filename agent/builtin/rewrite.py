"""Exact algebraic rewrites on the captured graph, before partitioning.

- `A @ x` with x of shape (K, 1) is a matrix-vector product: each output is the sum of
  one row of A times x, i.e. a row program (`(A * x.T).sum(-1, keepdim=True)`) that
  streams A once instead of a GEMM tile that wastes all but one column.
- a loss with `reduction="mean"` or `"sum"` (MSE, L1, smooth L1) is its elementwise
  terms followed by a total reduction, which the plans fuse into one pass.
- a layer norm over several trailing dims is a layer norm over one: the contiguous view
  with those dims flattened (weight and bias flattened alike), so the row program takes it.
- `diag(v) @ B` is a row scaling `v[:, None] * B`; `B @ diag(v)` a column scaling
  `B * v`: an O(N^2) elementwise pass instead of an O(N^3) matmul of a mostly-zero
  matrix, with identical results (each output is one product, no sums).
- a product of stacks of matrices, (..., M, K) @ (..., K, N) with the same leading
  dims, is one batched product over their flattened leading dims.
- attention with no mask, dropout or scale of its own is its definition: softmax(Q K^T /
  sqrt(E)) V as two batched products and a row softmax (the scores are written once).
- a linear reduction after a GEMM or a convolution folds into its weights (fold.py,
  fold_conv.py).
- not a rewrite of the math: an elementwise operand broadcast in a pattern the kernels do
  not index is expanded to the op's shape in PyTorch first.

    graph, notes = rewrite(capture(problem))
"""
import math
from dataclasses import replace

from agent.builtin import ops
from agent.builtin.definitions import define
from agent.builtin.fold import fold_pool, fold_sum
from agent.builtin.fold_conv import fold_conv_depth_mean, fold_conv_mean
from agent.builtin.ir import OpGraph, OpNode, Ref
from agent.builtin.partition import Unsupported, classify
from agent.builtin.torch_call import TorchCall


def rewrite(graph: OpGraph) -> tuple[OpGraph, list[str]]:
    """The rewritten graph and one sentence per rewrite applied."""
    nodes, notes = define(graph)
    graph = replace(graph, nodes=tuple(nodes))
    for node in graph.nodes:
        if node.op in LOSSES and len(node.refs) == 2 and not (node.op == "smooth_l1_loss"
                                                              and node.attrs.get("reduction") == "none"):
            nodes = _loss_terms(nodes, graph, node)
            notes.append(f"{node.name}: {node.op} split into elementwise terms and a {node.attrs.get('reduction')} "
                         "over every element")
        if node.op == "layer_norm" and len(node.attrs["normalized_shape"]) > 1:
            nodes = _flat_layer_norm(nodes, graph, node)
            notes.append(f"{node.name}: a layer norm over {len(node.attrs['normalized_shape'])} dims became a row "
                         "program over their flattened view (the same elements, the same order)")
        if node.op == "scaled_dot_product_attention" and _plain_attention(node, graph):
            nodes = _attention(nodes, graph, node)
            notes.append(f"{node.name}: attention as its definition: batched Q K^T, scaled, a row softmax, "
                         "then a batched product with V (the scores are written once)")
            continue
        nodes, note = fold(nodes, replace(graph, nodes=tuple(nodes)), node)
        if note:
            notes.append(note)
            continue
        if node.op in ("matmul", "mm") and len(node.refs) == 2:
            changed = _diagonal_product(nodes, graph, node)
            if changed != nodes:
                notes.append(f"{node.name}: a product with a diagonal matrix became an elementwise scaling (exact)")
            elif _is_matvec(node, graph):
                changed = _matvec(nodes, graph, node)
                notes.append(f"{node.name}: a matrix-vector product became a row program (rows of A dotted with x)")
            elif _is_stacked(node, graph):
                changed = _stacked_as_batched(nodes, graph, node)
                notes.append(f"{node.name}: a product of stacks of matrices became one batched product over "
                             "their flattened leading dims")
            nodes = changed
    nodes, expanded = _expand_operands(nodes, replace(graph, nodes=tuple(nodes)))
    notes += expanded
    return replace(graph, nodes=tuple(nodes)), notes


FOLDS = (fold_sum, fold_pool, fold_conv_mean, fold_conv_depth_mean)


def fold(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> tuple[list[OpNode], str | None]:
    """The first fold that applies to `node` (a GEMM or a convolution): the new node list and
    one sentence for the analysis; else `nodes` unchanged and None."""
    for attempt in FOLDS:
        folded, note = attempt(nodes, graph, node)
        if note:
            return folded, note
    return nodes, None


def _expand_operands(nodes: list[OpNode], graph: OpGraph) -> tuple[list[OpNode], list[str]]:
    """An operand of an elementwise op that broadcasts in a pattern the kernels do not index
    ((N, 1) against (1, C, N, 1)) is expanded to the op's shape first, in PyTorch: one more
    pass of the output's size, instead of no plan for the whole forward."""
    made, notes = [], []
    for node in nodes:
        if node.op in ops.BINARY and node.shape:
            args = list(node.args)
            for i, arg in enumerate(args):
                source = graph.node(arg.name) if isinstance(arg, Ref) else None
                if source is None or not source.shape or tuple(source.shape) == tuple(node.shape) \
                        or _indexable(source.shape, node.shape):
                    continue
                call = TorchCall(f"{{0}}.expand{tuple(node.shape)!r}.contiguous()", (arg.name,))
                made.append(OpNode(f"{node.name}_expand{i}", "torch", (arg,), {}, node.shape, source.dtype, call))
                args[i] = Ref(made[-1].name)
                notes.append(f"{node.name}: its {source.shape} operand is expanded to {node.shape} first (PyTorch)")
            node = replace(node, args=tuple(args))
        made.append(node)
    return made, notes


def _indexable(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        classify(shape, target)
    except Unsupported:
        return False
    return True


def _diagonal_product(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> list[OpNode]:
    left, right = (graph.node(r) for r in node.refs)
    for side, diag, other in (("left", left, right), ("right", right, left)):
        if diag.op != "diag" or diag.attrs.get("diagonal", 0) != 0 or len(graph.users(diag.name)) != 1:
            continue
        vector = diag.refs[0]
        if len(graph.node(vector).shape) != 1:
            continue
        if side == "left":   # diag(v) @ B: row i of B scaled by v[i]
            rows = OpNode(f"{diag.name}_rows", "unsqueeze", (Ref(vector),), {"dim": 1},
                          (graph.node(vector).shape[0], 1), diag.dtype)
            scaled = OpNode(node.name, "mul", (Ref(rows.name), Ref(other.name)), {}, node.shape, node.dtype)
            return [rows if n.name == diag.name else scaled if n.name == node.name else n for n in nodes]
        scaled = OpNode(node.name, "mul", (Ref(other.name), Ref(vector)), {}, node.shape, node.dtype)
        return [scaled if n.name == node.name else n for n in nodes if n.name != diag.name]
    return nodes


def _is_matvec(node: OpNode, graph: OpGraph) -> bool:
    a, x = (graph.node(r).shape for r in node.refs)
    return len(a) == 2 and len(x) == 2 and x[1] == 1 and a[1] == x[0]


def _matvec(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> list[OpNode]:
    a, x = node.refs
    k = graph.node(x).shape[0]
    flat = OpNode(f"{node.name}_vector", "view", (Ref(x),), {"dims": (-1,)}, (k,), graph.node(x).dtype)
    products = OpNode(f"{node.name}_products", "mul", (Ref(a), Ref(flat.name)), {}, graph.node(a).shape, node.dtype)
    total = OpNode(node.name, "sum", (Ref(products.name),), {"dim": -1, "keepdim": True}, node.shape, node.dtype)
    index = next(i for i, n in enumerate(nodes) if n.name == node.name)
    return nodes[:index] + [flat, products, total] + nodes[index + 1:]


def _is_stacked(node: OpNode, graph: OpGraph) -> bool:
    a, b = (graph.node(r).shape for r in node.refs)
    return node.op == "matmul" and len(a) == len(b) >= 4 and a[:-2] == b[:-2] and a[-1] == b[-2]


def _stacked_as_batched(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> list[OpNode]:
    """(..., M, K) @ (..., K, N) with the same leading dims is a batched (B, M, K) @ (B, K, N)
    over B = their product: the same dot products (a transposed operand is copied by the view)."""
    (a, b), shape = node.refs, node.shape
    batch = math.prod(shape[:-2])
    made = [OpNode(f"{node.name}_{side}", "view", (Ref(ref),), {"dims": (batch,) + graph.node(ref).shape[-2:]},
                   (batch,) + graph.node(ref).shape[-2:], graph.node(ref).dtype) for side, ref in (("a", a), ("b", b))]
    product = OpNode(f"{node.name}_batched", "matmul", tuple(Ref(m.name) for m in made), {},
                     (batch,) + shape[-2:], node.dtype)
    back = OpNode(node.name, "view", (Ref(product.name),), {"dims": tuple(shape)}, tuple(shape), node.dtype)
    index = next(i for i, n in enumerate(nodes) if n.name == node.name)
    return nodes[:index] + made + [product, back] + nodes[index + 1:]


ATTENTION_DEFAULTS = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}


def _plain_attention(node: OpNode, graph: OpGraph) -> bool:
    """softmax(Q K^T / sqrt(E)) V with no mask, dropout, causal flag or own scale, over
    query, key and value stacks with the same leading dims."""
    if len(node.args) != 3 or len(node.refs) != 3:
        return False
    if any(ATTENTION_DEFAULTS.get(k, object()) != v for k, v in node.attrs.items()):
        return False
    q, k, v = (graph.node(r).shape for r in node.refs)
    return len(q) >= 3 and q[:-2] == k[:-2] == v[:-2] and q[-1] == k[-1] and k[-2] == v[-2]


def _attention(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> list[OpNode]:
    q, k, v = node.refs
    (*lead, length, depth), keys = graph.node(q).shape, graph.node(k).shape[-2]
    scores_shape, dtype, n = tuple(lead) + (length, keys), node.dtype, node.name
    key_t = OpNode(f"{n}_keys_t", "transpose", (Ref(k),), {"dim0": -2, "dim1": -1},
                   tuple(lead) + (depth, keys), graph.node(k).dtype)
    scores = OpNode(f"{n}_scores", "matmul", (Ref(q), Ref(key_t.name)), {}, scores_shape, dtype)
    scaled = OpNode(f"{n}_scaled", "mul", (Ref(scores.name), 1.0 / math.sqrt(depth)), {}, scores_shape, dtype)
    weights = OpNode(f"{n}_weights", "softmax", (Ref(scaled.name),), {"dim": -1}, scores_shape, dtype)
    out = OpNode(n, "matmul", (Ref(weights.name), Ref(v)), {}, node.shape, dtype)
    made = [key_t, scores, scaled, weights, out]
    for product in (scores, out):
        if len(product.shape) >= 4:     # stacks of matrices: one batched product each
            made = _stacked_as_batched(made, replace(graph, nodes=tuple(nodes + made)), product)
    index = next(i for i, m in enumerate(nodes) if m.name == n)
    return nodes[:index] + made + nodes[index + 1:]


def _flat_layer_norm(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> list[OpNode]:
    """layer_norm(x, (D1..Dk), w, b) is, on the contiguous view of x with D1..Dk flattened
    into one last dim of D elements, a layer norm over that dim with w and b flattened."""
    shape, dims = node.shape, len(node.attrs["normalized_shape"])
    size = 1
    for d in node.attrs["normalized_shape"]:
        size *= d
    flat_shape = tuple(shape[:-dims]) + (size,)
    made, args = [], []
    for i, arg in enumerate(node.args):
        if not isinstance(arg, Ref):
            args.append(arg)
            continue
        source = graph.node(arg.name)
        target = flat_shape if i == 0 else (size,)
        made.append(OpNode(f"{node.name}_flat{i}", "view", (arg,), {"dims": target}, target, source.dtype))
        args.append(Ref(made[-1].name))
    norm = OpNode(f"{node.name}_rows", "layer_norm", tuple(args), {**node.attrs, "normalized_shape": (size,)},
                  flat_shape, node.dtype)
    back = OpNode(node.name, "view", (Ref(norm.name),), {"dims": tuple(shape)}, tuple(shape), node.dtype)
    index = next(i for i, n in enumerate(nodes) if n.name == node.name)
    return nodes[:index] + made + [norm, back] + nodes[index + 1:]


LOSSES = {"mse_loss", "l1_loss", "smooth_l1_loss"}


def _loss_terms(nodes: list[OpNode], graph: OpGraph, node: OpNode) -> list[OpNode]:
    a, b = (Ref(r) for r in node.refs)
    shape = graph.node(a.name).shape
    reduction = node.attrs.get("reduction", "mean")
    diff = OpNode(f"{node.name}_diff", "sub", (a, b), {}, shape, node.dtype)
    if node.op == "mse_loss":
        terms = [diff, OpNode(f"{node.name}_terms", "mul", (Ref(diff.name), Ref(diff.name)), {}, shape, node.dtype)]
    elif node.op == "l1_loss":
        terms = [diff, OpNode(f"{node.name}_terms", "abs", (Ref(diff.name),), {}, shape, node.dtype)]
    else:
        terms = [OpNode(f"{node.name}_terms", "smooth_l1_loss", (a, b), {**node.attrs, "reduction": "none"}, shape,
                        node.dtype)]
    if reduction == "none":
        terms[-1] = replace(terms[-1], name=node.name, shape=node.shape)
        tail = []
    else:
        tail = [OpNode(node.name, "sum" if reduction == "sum" else "mean", (Ref(terms[-1].name),),
                       {"dim": None, "keepdim": False}, node.shape, node.dtype)]
    index = next(i for i, n in enumerate(nodes) if n.name == node.name)
    return nodes[:index] + terms + tail + nodes[index + 1:]
