"""Plan: the convolution stays on cuDNN (`F.conv2d` without its bias); the bias and the
chain that follows it run in one Triton epilogue over the convolution's output.

Eager writes the convolution's output, then reads and writes it again for the bias
(inside cuDNN) and for every later op; here the bias is a per-channel operand of the
fused elementwise kernel, so the output crosses memory once more in total.
"""
from agent.builtin.capture import OpGraph, OpNode, Ref
from agent.builtin.partition import Operand, Stage, StageKind, Unsupported
from agent.builtin.plans import pointwise
from agent.builtin.plans.common import Config, Emitted, forward_expr


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    x, weight, bias = (list(anchor.args) + [None, None])[:3]
    if not isinstance(bias, Ref) and not stage.body:
        raise Unsupported(f"{anchor.name}: a lone convolution without bias leaves nothing to fuse (cuDNN alone is it)")
    biased = f"{anchor.name}_biased"
    body = []
    if isinstance(bias, Ref):
        body.append(OpNode(biased, "add", (Ref(anchor.name), bias), {}, anchor.shape, anchor.dtype))
    rename = {anchor.name: biased} if isinstance(bias, Ref) else {}
    body += [_renamed(node, rename) for node in stage.body]
    outputs = [rename.get(o, o) for o in stage.outputs]
    epilogue = Stage(StageKind.POINTWISE, stage.shape, None, body, outputs)
    synthetic = OpGraph(graph.nodes + tuple(n for n in body if n.name == biased), graph.output)
    forced = {bias.name: Operand.CHANNEL} if isinstance(bias, Ref) else {}
    views = {bias.name: f"{forward_expr(bias.name, graph)}.view(-1, 1, 1)"} if isinstance(bias, Ref) else {}
    emitted = pointwise.emit(epilogue, synthetic, config, name, forced, views)
    a = anchor.attrs
    pre = (f"{anchor.name} = F.conv2d({forward_expr(x.name, graph)}, {forward_expr(weight.name, graph)}, None, "
           f"{a['stride']}, {a['padding']}, {a['dilation']}, {a['groups']})  # cuDNN; bias goes to the epilogue")
    lhs, rhs = emitted.call.split(" = ", 1)
    return Emitted(emitted.kernel, emitted.wrapper, f"{', '.join(stage.outputs)} = {rhs}", emitted.helpers, pre)


def _renamed(node: OpNode, rename: dict[str, str]) -> OpNode:
    args = tuple(Ref(rename.get(a.name, a.name)) if isinstance(a, Ref) else a for a in node.args)
    return OpNode(node.name, node.op, args, node.attrs, node.shape, node.dtype)
