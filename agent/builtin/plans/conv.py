"""Plan: the convolution (1-, 2- or 3-d, plain or transposed) stays on cuDNN, called
without its bias; the bias and the chain that follows it run in one Triton epilogue over
the convolution's output. Without `config.conv_library` the whole stage is one Triton
implicit-GEMM kernel instead (plans/conv_triton.py).

Eager writes the convolution's output, then reads and writes it again for the bias
(inside cuDNN) and for every later op; here the bias is a per-channel operand of the
fused elementwise kernel, so the output crosses memory once more in total.
"""
from agent.builtin.ir import OpGraph, OpNode, Ref
from agent.builtin.partition import Operand, Stage
from agent.builtin.plans import conv_triton, library
from agent.builtin.plans.common import Config, Emitted, forward_expr


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    if not config.conv_library:
        return conv_triton.emit(stage, graph, config, name)
    anchor = stage.anchor
    x, weight, bias = (list(anchor.args) + [None, None])[:3]
    if not isinstance(bias, Ref):
        return library.epilogue(stage, graph, config, name, _conv_line(anchor, anchor.name, x, weight, graph))
    raw, channel = f"{anchor.name}_nobias", "(-1" + ", 1" * (len(anchor.shape) - 2) + ")"
    biased = OpNode(anchor.name, "add", (Ref(raw), bias), {}, anchor.shape, anchor.dtype)
    return library.epilogue(stage, graph, config, name, _conv_line(anchor, raw, x, weight, graph),
                            body=[biased] + stage.body, extra=(OpNode(raw, "conv", (), {}, anchor.shape, anchor.dtype),),
                            forced={bias.name: Operand.CHANNEL},
                            views={bias.name: f"{forward_expr(bias.name, graph)}.view{channel}"})


def _conv_line(anchor: OpNode, target: str, x: Ref, weight: Ref, graph: OpGraph) -> str:
    a = anchor.attrs
    if anchor.op.startswith("conv_transpose"):
        rest = f"{a['stride']}, {a['padding']}, {a['output_padding']}, {a['groups']}, {a['dilation']}"
    else:
        rest = f"{a['stride']}, {a['padding']}, {a['dilation']}, {a['groups']}"
    return (f"{target} = F.{anchor.op}({forward_expr(x.name, graph)}, {forward_expr(weight.name, graph)}, None, {rest})"
            "  # cuDNN; the bias goes to the epilogue")
