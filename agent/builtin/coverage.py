"""How much of a forward the built-in plan runs in its own Triton kernels, and what stays
in PyTorch: ops kept as the reference wrote them (no plan takes them) and library calls
(a GEMM on cuBLAS, a convolution on cuDNN, when the configuration puts them there).

Shares are of the forward's roofline time as estimated from the plan's graph, each op at
its own bound: its bytes (inputs read, output written), or its FLOPs over the ridge
point where it is compute-bound (the device's measured ceilings, else about an H100's).
An estimate from sizes, never a measurement.

    cover = coverage(graph, stages, config, ceilings=None)
    print(cover.line())     # "Coverage: our Triton kernels (2) run about 83% of the forward's estimated time ..."
"""
from dataclasses import dataclass

from agent.builtin import ops
from agent.builtin.analysis import flops, launches, nbytes
from agent.builtin.ir import OpGraph, OpNode
from agent.builtin.partition import Stage, StageKind
from agent.builtin.plans.common import Config

NOMINAL_RIDGE = 10.0        # FLOP/B: about an H100's fp32 ridge, where no ceilings were measured
LIBRARIES = {StageKind.MATMUL: "cuBLAS", StageKind.CONV: "cuDNN"}


@dataclass(frozen=True)
class KeptOp:
    name: str               # the node's name in the op graph
    label: str              # what runs it: the reference's call, or "cuBLAS (matmul)"
    reason: str             # why it is not in our kernels
    share: float            # of the forward's estimated time


@dataclass(frozen=True)
class Coverage:
    ops: int                # compute ops as the reference wrote them (views and leaves not counted)
    ours: int               # of them, wholly in our Triton kernels
    kernels: int            # Triton kernels one forward launches
    kept: tuple[KeptOp, ...]

    @property
    def kept_share(self) -> float:
        return sum(k.share for k in self.kept)

    def line(self) -> str:
        ops = f"{self.ours} of its {self.ops} ops wholly"
        if not self.kept:
            return (f"Coverage: our Triton kernels ({self.kernels}) run the whole forward ({ops}); nothing stays in "
                    "PyTorch.")
        kept = "; ".join(f"`{k.name}` ({k.label}: {k.reason}, {k.share:.0%})" for k in self.kept)
        return (f"Coverage: our Triton kernels ({self.kernels}) run about {1 - self.kept_share:.0%} of the forward's "
                f"estimated time and {ops}; in PyTorch: {kept}. Shares are estimated from bytes and FLOPs, not "
                "measured.")


def coverage(graph: OpGraph, stages: list[Stage], config: Config, ceilings: tuple[float, float] | None = None,
             captured: OpGraph | None = None) -> Coverage:
    """Ops are counted as the reference wrote them (`captured`, before the rewrites: a cosine
    similarity is one op, not its thirteen steps); shares are of the plan's graph."""
    ridge = ceilings[1] / ceilings[0] if ceilings else NOMINAL_RIDGE
    costs = {n.name: _cost(n, graph, ridge) for n in _compute(graph)}
    total = sum(costs.values()) or 1.0
    kept = []
    for stage in stages:
        library = _library(stage, config)
        if stage.kind is StageKind.TORCH:
            kept.append(KeptOp(stage.anchor.name, _label(stage.anchor), stage.reason or "no built-in plan",
                               costs.get(stage.anchor.name, 0.0) / total))
        elif library:
            kept.append(KeptOp(stage.anchor.name, f"{library} ({stage.anchor.op})",
                               "this configuration's choice" + ("; the chain after it runs in our epilogue"
                                                                 if stage.body else ""),
                               costs.get(stage.anchor.name, 0.0) / total))
    written = [n.name for n in _compute(captured or graph)]
    partly = {_origin(k.name, written) for k in kept}
    whole = [w for w in written if w not in partly]
    return Coverage(len(written), len(whole), sum(_kernels(s, config) for s in stages), tuple(kept))


def _origin(name: str, written: list[str]) -> str | None:
    """The op the reference wrote that a planned node comes from: itself, or the op whose
    rewrite made it (the rewrites name their steps `{op}_...`)."""
    if name in written:
        return name
    return max((w for w in written if name.startswith(f"{w}_")), key=len, default=None)


def saves_nothing(eager_bytes: float, eager_launches: int, fused_bytes: float, fused_launches: int) -> bool:
    """Does the plan, on paper, move at least eager's bytes in at least eager's launches?
    Then nothing predicts it faster, and without a timing nothing shows it is."""
    return fused_bytes >= eager_bytes and fused_launches >= eager_launches


def _compute(graph: OpGraph) -> list[OpNode]:
    return [n for n in graph.nodes if n.op not in ("input", "param") and n.op not in ops.VIEWS]


def _cost(node: OpNode, graph: OpGraph, ridge: float) -> float:
    moved = nbytes(node) + sum(nbytes(graph.node(r)) for r in set(node.refs))
    return max(float(moved), flops(node, graph) / ridge)


def _library(stage: Stage, config: Config) -> str | None:
    on = {StageKind.MATMUL: config.gemm_library, StageKind.CONV: config.conv_library}.get(stage.kind, False)
    return LIBRARIES[stage.kind] if on else None


def _kernels(stage: Stage, config: Config) -> int:
    """Our Triton kernels the stage launches: a kept op's or a library call's epilogue, if any."""
    if stage.kind is StageKind.VIEW:
        return 0
    if stage.kind is StageKind.TORCH or _library(stage, config):
        return int(bool(stage.body) or (stage.kind is StageKind.CONV and len(stage.anchor.refs) > 2))
    return launches(stage, triton_conv=True)


def _label(node: OpNode) -> str:
    """The reference's own call for an op kept as written (`self.bn`, `F.normalize`)."""
    if node.kept is None:
        return node.op
    called = node.kept.template.split("(")[0]
    return called if called and "{" not in called else node.kept.render(list(node.kept.refs))[:60]
