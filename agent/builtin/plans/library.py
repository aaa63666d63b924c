"""Plan: an op kept in PyTorch exactly as the reference calls it (batch norm, a pool that
returns indices, a transposed convolution's bias-free call, a softmax across channels),
with the pointwise chain that follows it fused into one Triton epilogue over its output.

Eager reads and writes the op's output once more for every later elementwise op; here
the chain is one pass. With no chain after it the op is just a line of the forward, and
the program needs some other stage to hold a Triton kernel.
"""
from agent.builtin.ir import OpGraph, OpNode
from agent.builtin.partition import Operand, Stage, StageKind
from agent.builtin.plans import pointwise
from agent.builtin.plans.common import Config, Emitted, forward_expr


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    call = anchor.kept.render([forward_expr(r, graph) for r in anchor.kept.refs])
    return epilogue(stage, graph, config, name, f"{anchor.name} = {call}  # kept in PyTorch")


def epilogue(stage: Stage, graph: OpGraph, config: Config, name: str, pre_call: str, body: list[OpNode] | None = None,
             extra: tuple[OpNode, ...] = (), forced: dict[str, Operand] | None = None,
             views: dict[str, str] | None = None) -> Emitted:
    """`pre_call` (the torch line), then `body` (default: the stage's) as one pointwise kernel.
    `extra` are nodes the body computes that the graph does not hold (a split-off bias)."""
    body = stage.body if body is None else body
    if not body:
        return Emitted("", "", "", pre_call=pre_call)
    computed = {n.name for n in body}
    outputs = [o for o in stage.outputs if o in computed]    # the torch line names the rest
    fused = Stage(StageKind.POINTWISE, stage.shape, None, body, outputs)
    emitted = pointwise.emit(fused, OpGraph(graph.nodes + extra, graph.output), config, name, forced, views)
    return Emitted(emitted.kernel, emitted.wrapper, emitted.call, emitted.helpers, pre_call)
