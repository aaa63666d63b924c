"""Exact rewrites that fold a linear reduction after a convolution into its weights.

A convolution is linear in its input, so for `a * conv(x) + c` (a: a Python scalar from
the steps on the way; c: per-channel values and scalars):

- **a mean (or sum) over every output position** is, per output channel, the weights
  times the sum of the input elements each tap reads: `plans/tap_sums.py` computes those
  sums in one pass over x, and a (batch, Cin * taps) x (Cin * taps, Cout) GEMM finishes
  (L2-42, 44);
- **a mean over the first spatial dim** alone is the same sums along that dim only,
  followed by a convolution of one dim less whose input channels are (channel, tap)
  pairs (L2-13).

Either way the convolution's output is never written. Exact in real arithmetic, like
fold.py's GEMM folds, and judged by the evaluator's tolerances like any kernel.

    nodes, note = fold_conv_mean(nodes, graph, node)      # note is None when it does not apply
"""
import math
from dataclasses import dataclass

from agent.builtin.fold import Affine, affine_chain, scaled, splice
from agent.builtin.ir import OpGraph, OpNode, Ref
from agent.builtin.ops import CONVS


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
        return None                                         # not one int per spatial dim
    bias = node.args[2] if len(node.args) > 2 and isinstance(node.args[2], Ref) else None
    return Conv(node, node.refs[0], node.refs[1], bias.name if bias else None, per_dim,
                node.op.startswith("conv_transpose"))


def _conv_chain(found: Conv, graph: OpGraph, dims: set[int]):
    """`_affine_chain` from the convolution to a sum or mean over exactly `dims`."""
    rank, channels = len(found.node.shape), found.node.shape[1]
    over = lambda user: user.op in ("sum", "mean") and _dims(user, rank) == dims
    return affine_chain(found.node, graph, {(channels,) + (1,) * (rank - 2), (1, channels) + (1,) * (rank - 2)},
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
            values.append(scaled(values[-1], coefficient * (1 if mean else reduced)))
    added = [n.name for n in values if not any(n.name in m.refs for m in values)]
    made = values + made
    if affine.scale / (reduced if mean else 1) != 1.0:
        made.append(scaled(made[-1], affine.scale / (reduced if mean else 1)))
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
    inputs, taps = graph.node(found.x).shape[1], math.prod(kernel)
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
    made = _finish(made, affine, total, math.prod(spatial), (batch, channels))
    return splice(nodes, {c.name for c in chain}, made, name), (
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
    return splice(nodes, {c.name for c in chain}, made, name), (
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
