"""Split a captured op graph into stages, each one kernel (or one torch view line).

A stage is anchored by the op that shapes its kernel — a matmul, a convolution (kept on
cuDNN), a reduction over the last dim (a row program), a reduction over another dim, a
group norm, a max or average pool, an op no plan covers (kept in PyTorch as the reference
wrote it) — or is a pointwise chain. The pointwise ops that follow an anchor join it as
its epilogue, and a pointwise chain that feeds a row reduction joins the row program as
its prologue. Values a stage computes are stored only when something outside it reads
them. Anything no stage can hold raises `Unsupported` with a plain sentence.

    stages = partition(rewrite(capture(problem)))
"""
from dataclasses import dataclass, field
from enum import StrEnum

from agent.builtin import ops
from agent.builtin.definitions import why_kept
from agent.builtin.ir import OpGraph, OpNode


class Unsupported(Exception):
    """The graph holds something the built-in plans cannot turn into a kernel; says what."""


class StageKind(StrEnum):
    VIEW = "view"               # a torch view (no data moved): transpose, reshape, unsqueeze
    POINTWISE = "pointwise"     # one fused elementwise kernel
    ROWS = "rows"               # one program per row of the last dim: reductions, softmax, norms, scans
    REDUCE = "reduce"           # a reduction (or a softmax) over a dim that is not the last
    GROUP_NORM = "group_norm"   # group norm, looping over each (sample, group) slice
    BATCH_NORM = "batch_norm"   # batch norm: per-channel statistics, then one normalising pass with its epilogue
    POOL = "pool"               # max or average pooling, one output element per lane, then its epilogue
    MATMUL = "matmul"           # tl.dot GEMM with its epilogue
    CONV = "conv"               # cuDNN convolution, then a Triton epilogue
    TOTAL = "total"             # a reduction over every element to one value (losses, norms)
    TORCH = "torch"             # an op kept in PyTorch as written, then a Triton epilogue if one follows
    TAP_SUMS = "tap_sums"       # a convolution's per-tap input sums (a folded mean over its output positions)
    RECURRENT = "recurrent"     # an nn.GRU: per layer, the steps' input projections, then the recurrence


class Operand(StrEnum):
    """How an external tensor broadcasts against a stage's iteration shape."""

    FULL = "full"               # same shape: one element per output element
    COL = "col"                 # a vector along the last dim
    ROW = "row"                 # one value per row (a keepdim reduction result)
    CHANNEL = "channel"         # (C, 1, 1) against (batch, C, H, W), any number of trailing dims
    PLANE = "plane"             # (batch, C, 1, 1) against (batch, C, H, W): one value per channel plane
    SPATIAL = "spatial"         # (batch, 1, H, W) against (batch, C, H, W): a keepdim reduction over channels
    SCALAR = "scalar"           # a one-element tensor


@dataclass
class Stage:
    kind: StageKind
    shape: tuple[int, ...]                      # iteration shape (rows: the row-level shape)
    anchor: OpNode | None = None
    body: list[OpNode] = field(default_factory=list)    # ops computed in the kernel, in order
    outputs: list[str] = field(default_factory=list)    # values the stage stores, in order
    reason: str = ""                            # TORCH: why no plan took the op

    @property
    def names(self) -> set[str]:
        return {n.name for n in self.body} | ({self.anchor.name} if self.anchor else set())


def classify(shape: tuple[int, ...], target: tuple[int, ...]) -> Operand:
    """How `shape` broadcasts to `target` (torch rules), as one of the kinds the kernels index."""
    numel = 1
    for s in shape:
        numel *= s
    core = tuple(shape)
    while core and core[0] == 1 and len(core) > 1:
        core = core[1:]
    if tuple(shape) == tuple(target) or (core == tuple(target)):
        return Operand.FULL
    if numel == 1:
        return Operand.SCALAR
    if core == (target[-1],):
        return Operand.COL
    if len(target) >= 2 and core == tuple(target[-len(core):-1]) + (1,) and len(core) == len(target):
        return Operand.ROW
    if len(target) >= 3 and core == (target[1],) + (1,) * (len(target) - 2):
        return Operand.CHANNEL
    if len(target) >= 3 and tuple(shape) == tuple(target[:2]) + (1,) * (len(target) - 2):
        return Operand.PLANE
    if len(target) >= 3 and tuple(shape) == (target[0], 1) + tuple(target[2:]):
        return Operand.SPATIAL
    raise Unsupported(f"an operand of shape {tuple(shape)} broadcast to {tuple(target)} (only full tensors, "
                      "last-dim vectors, per-row, per-channel, per-plane and per-position values)")


def last_dim(node: OpNode, graph: OpGraph) -> bool:
    """Does this reduction or row op work along the last dim of its input?"""
    rank = len(graph.node(node.refs[0]).shape)
    dim = node.attrs.get("dim")
    if node.op == "layer_norm":
        return len(node.attrs["normalized_shape"]) == 1
    if isinstance(dim, (tuple, list)):
        dim = dim[0] if len(dim) == 1 else None
    return dim is not None and dim % rank == rank - 1


def partition(graph: OpGraph) -> list[Stage]:
    if graph.unsupported:
        raise Unsupported("; ".join(graph.unsupported))
    stages: list[Stage] = []
    for node in graph.nodes:
        if node.op in ("input", "param"):
            continue
        if not (stages and _absorb(stages[-1], node, graph)):
            stages.append(_start(node, graph, stages))
    _set_outputs(stages, graph)
    return stages


def _start(node: OpNode, graph: OpGraph, stages: list[Stage]) -> Stage:
    """The stage `node` opens: its plan's, or, when no plan takes it, the op kept in PyTorch."""
    try:
        if node.op == "torch":
            raise Unsupported(f"{node.name}: no built-in plan")
        return _planned(node, graph)
    except Unsupported as error:
        if node.kept is None:
            raise
        reason = why_kept(node, graph) or str(error).removeprefix(f"{node.name}: ")
        return Stage(StageKind.TORCH, node.shape, node, reason=reason)


def _planned(node: OpNode, graph: OpGraph) -> Stage:
    op = node.op
    if op in ops.VIEWS:
        return Stage(StageKind.VIEW, node.shape or (), node)
    if ops.is_pointwise(op):
        if node.shape is None:
            raise Unsupported(f"{node.name}: {op} of Python scalars (no tensor to write a kernel over)")
        _check_pointwise(node)
        return Stage(StageKind.POINTWISE, node.shape, None, [node])
    if op in ops.ROW_REDUCTIONS | ops.ROW_MAPS:
        if op in ("max", "min") and node.attrs.get("dim") is not None:
            raise Unsupported(f"{node.name}: {op}(dim=...) returns (values, indices); use amax/amin")
        dim = node.attrs.get("dim")
        if isinstance(dim, (tuple, list)) and len(dim) > 1:
            raise Unsupported(f"{node.name}: {op} over several dims at once")
        if dim is None and op != "layer_norm":
            if op not in ops.TOTALS:
                raise Unsupported(f"{node.name}: {op} over all dims")
            return Stage(StageKind.TOTAL, graph.node(node.refs[0]).shape, node)
        row_shape = graph.node(node.refs[0]).shape
        if last_dim(node, graph):
            _check_row(node, row_shape)
            return Stage(StageKind.ROWS, row_shape, None, [node])
        if op in ops.STRIDED_MAPS and op not in ops.STRIDED_REDUCTIONS:
            reduced = graph.node(node.refs[0]).shape[_dim(node) % len(row_shape)]
            if reduced > ops.MAX_STRIDED_MAP:
                raise Unsupported(f"{node.name}: {op} over a strided dim of {reduced} (a program holds at most "
                                  f"{ops.MAX_STRIDED_MAP})")
        if op in ops.STRIDED_REDUCTIONS | ops.STRIDED_MAPS:
            return Stage(StageKind.REDUCE, node.shape, node)
        raise Unsupported(f"{node.name}: {op} along a dim that is not the last")
    if op in ops.MATMULS:
        return Stage(StageKind.MATMUL, node.shape, node)
    if op in ops.CONVS:
        return Stage(StageKind.CONV, node.shape, node)
    if op in ops.GROUP_NORMS:
        return Stage(StageKind.GROUP_NORM, node.shape, node)
    if op == "batch_norm":
        if "module" not in node.attrs:      # torch.export's functional form: no module holds its running stats
            raise Unsupported(f"{node.name}: batch norm that no module of Model holds (torch.export's graph)")
        return Stage(StageKind.BATCH_NORM, node.shape, node)
    if op == "tap_sums":
        return Stage(StageKind.TAP_SUMS, node.shape, node)
    if op == "gru":
        if node.attrs["dropout"] and node.attrs["num_layers"] > 1:
            raise Unsupported(f"{node.name}: a GRU in training mode with dropout={node.attrs['dropout']} (random)")
        return Stage(StageKind.RECURRENT, node.shape, node)
    if op in ops.POOLS:
        _check_pool(node, graph)
        return Stage(StageKind.POOL, node.shape, node)
    raise Unsupported(f"{node.name}: op {op!r} has no built-in plan")


def _check_row(node: OpNode, row_shape: tuple[int, ...]) -> None:
    if row_shape[-1] > ops.MAX_ROW and node.op not in ops.LOOPED_ROW_OPS:
        raise Unsupported(f"{node.name}: {node.op} over rows of {row_shape[-1]} elements (a row program holds at "
                          f"most {ops.MAX_ROW} in registers, and a walking one does no scans or arg-reductions)")


def _spatial_operands(stage: Stage, graph: OpGraph) -> bool:
    """Does the chain read a per-position value? Only the flat elementwise kernel indexes
    one, so such a chain cannot become a row program's or a total's prologue."""
    outside = [r for n in stage.body for r in n.refs if r not in stage.names]
    return any(_kind(graph.node(r).shape, stage.shape) is Operand.SPATIAL for r in outside)


def _kind(shape: tuple[int, ...] | None, target: tuple[int, ...]) -> Operand | None:
    if shape is None:
        return None
    try:
        return classify(shape, target)
    except Unsupported:
        return None


def _fits_row(stage: Stage, node: OpNode) -> bool:
    """Rows up to MAX_ROW are held whole; longer ones are walked, which only some row ops allow."""
    if stage.shape[-1] <= ops.MAX_ROW:
        return True
    row_ops = [n for n in stage.body + [node] if n.op in ops.ROW_REDUCTIONS | ops.ROW_MAPS]
    return all(n.op in ops.LOOPED_ROW_OPS for n in row_ops)


def _check_pool(node: OpNode, graph: OpGraph) -> None:
    """The pool plan computes values only, with PyTorch's own divisor; the rest stays in PyTorch."""
    a, source = node.attrs, graph.node(node.refs[0])
    if a["return_indices"]:
        raise Unsupported(f"{node.name}: {node.op} with return_indices=True")
    if a["divisor_override"] is not None:
        raise Unsupported(f"{node.name}: {node.op} with divisor_override={a['divisor_override']!r}")
    if not (source.dtype and source.dtype.is_floating_point and node.dtype and node.dtype.is_floating_point):
        raise Unsupported(f"{node.name}: {node.op} of a {source.dtype} tensor")
    if source.shape is None or len(source.shape) <= a["dims"]:
        raise Unsupported(f"{node.name}: {node.op} over {a['dims']} dims of a rank-{len(source.shape or ())} tensor")


def _check_pointwise(node: OpNode) -> None:
    try:
        ops.render(node.op, ["a", "b"], node.attrs)
    except (ValueError, KeyError) as error:
        raise Unsupported(f"{node.name}: {error}") from None


def _absorb(stage: Stage, node: OpNode, graph: OpGraph) -> bool:
    """Add `node` to the open stage when it can live in the same kernel."""
    if stage.kind in (StageKind.VIEW, StageKind.RECURRENT) or stage.shape is None:
        return False
    inside = [r for r in node.refs if r in stage.names]
    if not inside and stage.kind is not StageKind.POINTWISE and not _joins_rows(stage, node):
        return False            # an independent chain may share a pointwise kernel, not an anchored one
    if ops.is_pointwise(node.op):
        return _absorb_pointwise(stage, node, graph)
    if node.op in ops.TOTALS and node.attrs.get("dim") is None and stage.kind is StageKind.POINTWISE:
        if node.refs[0] in stage.names and graph.node(node.refs[0]).shape == stage.shape \
                and not _spatial_operands(stage, graph):
            stage.kind, stage.anchor = StageKind.TOTAL, node   # the chain becomes the reduction's prologue
            return True
    if node.op in ops.ROW_REDUCTIONS | ops.ROW_MAPS and stage.kind in (StageKind.ROWS, StageKind.POINTWISE):
        source = graph.node(node.refs[0])
        along_a_dim = node.attrs.get("dim") is not None or node.op == "layer_norm"
        if along_a_dim and source.name in stage.names and source.shape == stage.shape and last_dim(node, graph) \
                and _fits_row(stage, node) and node.op not in ("max", "min") and not _spatial_operands(stage, graph):
            stage.kind = StageKind.ROWS            # a pointwise chain becomes the row program's prologue
            stage.body.append(node)
            return True
    return False


def _joins_rows(stage: Stage, node: OpNode) -> bool:
    """An elementwise op over whole rows (the second and third sums of a cosine similarity)
    joins the row program before it, which loads its operands row by row as it loads its own."""
    return stage.kind is StageKind.ROWS and node.shape == stage.shape and ops.is_pointwise(node.op)


def _absorb_pointwise(stage: Stage, node: OpNode, graph: OpGraph) -> bool:
    try:
        _check_pointwise(node)
    except Unsupported:
        return False            # it opens its own stage, kept in PyTorch
    rows = stage.kind is StageKind.ROWS
    scalar_level = rows and node.shape in (stage.shape[:-1] + (1,), stage.shape[:-1])
    if stage.kind is StageKind.TOTAL:
        return _absorb_total_epilogue(stage, node, graph)
    if node.shape != stage.shape and not scalar_level:
        return False
    for ref in node.refs:
        source = graph.node(ref)
        if ref in stage.names:
            if rows and node.shape == stage.shape and source.shape == stage.shape[:-1] and source.shape != (1,):
                return False                       # a keepdim=False result broadcasts along the last dim
            continue
        try:
            kind = classify(source.shape, stage.shape if not scalar_level else stage.shape[:-1] + (1,))
        except Unsupported:
            return False
        if kind is Operand.SPATIAL and stage.kind not in (StageKind.POINTWISE, StageKind.TORCH):
            return False                           # only the flat elementwise kernel indexes per-position values
        if kind not in _epilogue_operands(stage, graph):
            return False
    stage.body.append(node)
    return True


def _epilogue_operands(stage: Stage, graph: OpGraph) -> tuple[Operand, ...]:
    """The operand kinds a norm's or a strided reduction's epilogue can index (every kind
    for the other stages): per-channel values only where the channels are dim 1 of the
    stage's own shape."""
    norms = (Operand.FULL, Operand.CHANNEL, Operand.SCALAR)
    if stage.kind in (StageKind.GROUP_NORM, StageKind.BATCH_NORM):
        return norms
    if stage.kind is not StageKind.REDUCE:
        return tuple(Operand)
    anchor = stage.anchor
    if anchor.op not in ops.STRIDED_MAPS or anchor.op == "logsumexp":
        return (Operand.FULL,)                     # a strided reduction's epilogue indexes by output position
    rank = len(graph.node(anchor.refs[0]).shape)
    return norms if rank >= 3 and _dim(anchor) % rank == 1 else (Operand.FULL, Operand.SCALAR)


def _dim(node: OpNode) -> int:
    dim = node.attrs["dim"]
    return dim[0] if isinstance(dim, (tuple, list)) else dim


def _absorb_total_epilogue(stage: Stage, node: OpNode, graph: OpGraph) -> bool:
    """After a total reduction only scalar work joins: on the result and one-element operands."""
    if node.numel != 1 or stage.anchor.name not in node.refs and not any(n.name in node.refs for n in stage.body
                                                                          if n.numel == 1):
        return False
    if any(graph.node(r).numel != 1 for r in node.refs):
        return False
    stage.body.append(node)
    return True


def _set_outputs(stages: list[Stage], graph: OpGraph) -> None:
    for stage in stages:
        names = stage.names
        produced = [n.name for n in ([stage.anchor] if stage.anchor else []) + stage.body]
        used_outside = [n for n in produced
                        if n == graph.output or any(u.name not in names for u in graph.users(n))]
        if stage.kind is StageKind.VIEW:
            stage.outputs = [stage.anchor.name]
            continue
        final = produced[-1]
        if stage.kind is StageKind.TOTAL:
            tail = [n.name for n in stage.body if n.shape != stage.shape]
            final = tail[-1] if tail else stage.anchor.name
        stage.outputs = [final] + [n for n in used_outside if n != final]
        if stage.kind is StageKind.TOTAL and len(stage.outputs) > 1:
            raise Unsupported(f"{stage.anchor.name}: values inside a total reduction are needed elsewhere")
        if stage.kind in (StageKind.CONV, StageKind.REDUCE):     # the norms and the GEMM store their value too
            if stage.anchor.name in stage.outputs[1:]:
                raise Unsupported(f"{stage.anchor.name}: its value is needed both inside and after its epilogue")

