"""The `## Performance analysis` text of a built-in turn: the op graph, FLOPs and bytes,
the roofline position on the device, which stages are memory-bound, and what fusion
saves. Pure functions over the captured graph and the stages; the device's ceilings
come in as numbers (measured by `tools/roofline.py` on a GPU, absent on CPU).

    text = analysis_text(Work.of(graph, stages), graph, stages, device, ceilings=None, notes=[])
"""
import math
from dataclasses import dataclass

from agent.builtin import ops
from agent.builtin.ir import OpGraph, OpNode
from agent.builtin.partition import Stage, StageKind
from agent.builtin.search import library_fits
from tools.device import DeviceInfo

HEADING = "## Performance analysis"
GRAPH_LINES = 40
# Host cost of one kernel launched from a plan's Python wrapper, for the launch-bound check:
# measured at 48-70 us per kernel on an H100 with Triton 3.6 (KernelBench L2-44 and the suite's
# 24_tiny_mlp, timed through the evaluator plain and as a CUDA graph); kept on the low side.
LAUNCH_US = 40.0


def nbytes(node: OpNode) -> int:
    return node.numel * (node.dtype.itemsize if node.dtype is not None else 4) if node.shape is not None else 0


def flops(node: OpNode, graph: OpGraph) -> float:
    """FLOPs of one op: 2MNK for matmuls, 2 * out * (Cin/groups) * kernel taps for convs,
    one per output element and window tap for pools, one per input element and tap for a
    convolution's tap sums, about one per element and op otherwise
    (transcendentals counted as one; ops kept in PyTorch too, a lower bound for them)."""
    if node.op in ops.MATMULS:
        k = graph.node(node.refs[0]).shape[-1]
        return 2.0 * node.numel * k
    if node.op in ops.CONVS:        # each output (input, when transposed) meets Cin/groups (Cout/groups) * kernel taps
        taps = graph.node(node.refs[1]).numel // graph.node(node.refs[1]).shape[0]
        return 2.0 * (graph.node(node.refs[0]).numel if "transpose" in node.op else node.numel) * taps
    if node.op in ops.POOLS:
        return float(node.numel * math.prod(node.attrs["kernel"]))
    if node.op == "tap_sums":       # each input element is added into every tap that reads it
        return float(graph.node(node.refs[0]).numel * math.prod(node.attrs["kernel"]))
    if node.op == "gru":            # each layer and direction: 3H outputs a step from its input and h
        a = node.attrs
        x = graph.node(node.refs[0]).shape
        steps, dirs, hidden = x[0] * x[1], 2 if a["bidirectional"] else 1, a["hidden_size"]
        widths = [a["input_size"]] + [dirs * hidden] * (a["num_layers"] - 1)
        return float(sum(2 * steps * dirs * 3 * hidden * (w + hidden) for w in widths))
    if node.op in ops.VIEWS or node.op in ("input", "param"):
        return 0.0
    source = max((graph.node(r).numel for r in node.refs), default=node.numel)
    return float(max(source, node.numel)) * (5 if node.op in ops.ROW_MAPS else 1)


@dataclass(frozen=True)
class Work:
    flops: float
    eager_bytes: float          # every eager op reads its inputs and writes its output
    eager_launches: int
    fused_bytes: float          # the plan: each stage reads its operands and writes what it stores
    fused_launches: int
    minimum_bytes: float        # inputs, parameters and the output, each once
    io_bytes: float             # inputs and the output: what a CUDA-graph replay copies in and out

    @staticmethod
    def of(graph: OpGraph, stages: list[Stage], captured: OpGraph | None = None) -> "Work":
        """The plan's work on `graph`; eager's bytes and launches on `captured`, the graph
        before the rewrites (an exact rewrite can remove most of eager's work)."""
        compute = [n for n in graph.nodes if n.op not in ("input", "param") and n.op not in ops.VIEWS]
        reference = captured or graph
        ran = [n for n in reference.nodes if n.op not in ("input", "param") and n.op not in ops.VIEWS]
        eager = sum(nbytes(n) + sum(nbytes(reference.node(r)) for r in set(n.refs)) for n in ran)
        leaves = [n for n in graph.nodes if n.op in ("input", "param")]
        minimum = sum(nbytes(n) for n in leaves) + nbytes(graph.node(graph.output))
        io = sum(nbytes(n) for n in leaves if n.op == "input") + nbytes(graph.node(graph.output))
        return Work(sum(flops(n, graph) for n in compute), eager, len(ran),
                    sum(stage_bytes(s, graph, _triton_conv(stages)) for s in stages),
                    sum(launches(s, _triton_conv(stages)) for s in stages), minimum, io)


def _has_conv(stages: list[Stage]) -> bool:
    return any(s.kind is StageKind.CONV for s in stages)


def _triton_conv(stages: list[Stage]) -> bool:
    """Does the plan start with the convolutions in Triton (nothing else needs a kernel)?"""
    return _has_conv(stages) and not library_fits(stages, StageKind.CONV)


def launches(stage: Stage, triton_conv: bool = False) -> int:
    """Kernels the stage launches; `triton_conv`: convolutions are one implicit-GEMM
    kernel with their chain, not cuDNN plus an epilogue."""
    if stage.kind is StageKind.VIEW:
        return 0
    if stage.kind is StageKind.CONV and triton_conv:
        return 1
    if stage.kind in (StageKind.CONV, StageKind.TORCH):
        return 1 + bool(stage.body or (stage.kind is StageKind.CONV and len(stage.anchor.refs) > 2))
    if stage.kind is StageKind.BATCH_NORM:
        return 3                                   # two statistics passes, then the normalising one
    if stage.kind is StageKind.RECURRENT:          # a product and the recurrence per layer and direction
        return 2 * stage.anchor.attrs["num_layers"] * (2 if stage.anchor.attrs["bidirectional"] else 1)
    return 2 if stage.kind is StageKind.TOTAL else 1


def passes(stage: Stage) -> int:
    """How many times the stage reads its inputs: a walked row (longer than registers hold)
    is re-read by each reduction's loop(s) and by the storing loop; batch norm reads x three
    times (mean, variance, normalise)."""
    if stage.kind is StageKind.BATCH_NORM:
        return 3
    if stage.kind is not StageKind.ROWS or stage.shape[-1] <= ops.MAX_ROW:
        return 1
    loops = {"layer_norm": 2}      # a softmax's max and sum are one online loop (split into segments: two)
    row_ops = [n for n in stage.body if n.op in ops.ROW_REDUCTIONS | ops.ROW_MAPS]
    return sum(loops.get(n.op, 1) for n in row_ops) + any(n.shape == stage.shape for n in stage.body)


def stage_bytes(stage: Stage, graph: OpGraph, triton_conv: bool = False) -> float:
    if stage.kind is StageKind.VIEW:
        return 0.0
    nodes = ([stage.anchor] if stage.anchor else []) + stage.body
    read = {r for n in nodes for r in n.refs if r not in stage.names}
    total = passes(stage) * sum(nbytes(graph.node(r)) for r in read) + sum(nbytes(graph.node(o)) for o in stage.outputs)
    if stage.kind in (StageKind.CONV, StageKind.TORCH) and launches(stage, triton_conv) == 2:
        total += 2 * nbytes(stage.anchor)          # the library op writes its output, the epilogue reads it back
    return float(total)


def stage_flops(stage: Stage, graph: OpGraph) -> float:
    return sum(flops(n, graph) for n in ([stage.anchor] if stage.anchor else []) + stage.body)


def analysis_text(work: Work, graph: OpGraph, stages: list[Stage], device: DeviceInfo,
                  ceilings: tuple[float, float] | None, notes: list[str], problem_line: str) -> str:
    lines = [HEADING, "", problem_line, "", _graph_heading(graph), "```",
             _graph_text(graph), "```", "", work_line(work)]
    lines += [roofline_line(work, device, ceilings), launch_line(work, ceilings, stages)]
    lines += ["", "Stages (one kernel each; cuDNN and ops kept in PyTorch run before their epilogue):"]
    lines += stage_lines(graph, stages, ceilings)
    kept = [s for s in stages if s.kind is StageKind.TORCH]
    if kept:
        lines.append("Kept in PyTorch as the reference wrote them (no Triton plan): "
                     + ", ".join(f"`{s.anchor.name}` ({_label(s.anchor)})" for s in kept) + ". Why: "
                     + "; ".join(f"`{s.anchor.name}`: {s.reason or 'no built-in plan'}" for s in kept) + ".")
    if library_fits(stages, StageKind.MATMUL):
        lines.append("GEMMs: in fp32 the search starts with the product on cuBLAS and any chain after it as one Triton "
                     "epilogue (exact fp32 `tl.dot` has no tensor cores), in other dtypes with `tl.dot` and the chain "
                     "on its accumulator; the other variant is the next one it measures.")
    if library_fits(stages, StageKind.CONV):
        lines.append("Convolutions: the search starts with cuDNN and the chain after it as one Triton epilogue; a "
                     "Triton implicit-GEMM convolution with the chain fused is the next variant it measures.")
    elif _has_conv(stages):
        lines.append("Convolutions: nothing else here needs a kernel, so the convolution itself is a Triton "
                     "implicit GEMM (exact fp32 `tl.dot`), measured against cuDNN.")
    lines += [f"- rewrite: {note}" for note in notes]
    return "\n".join(lines)


def unsupported_text(reason: str, graph: OpGraph | None, problem_line: str) -> str:
    lines = [HEADING, "", problem_line, ""]
    if graph is not None:
        lines += [_graph_heading(graph), "```", _graph_text(graph), "```", ""]
    lines += [f"Not supported by the built-in plans: {reason}.",
              "No kernel is proposed: the built-in policy does not guess at constructs it cannot map to a plan."]
    return "\n".join(lines)


def _graph_heading(graph: OpGraph) -> str:
    fixed = "; sizes read in forward are fixed at those shapes" if graph.tracer == "torch.export" else ""
    return f"Op graph ({graph.tracer}, shapes from get_inputs{fixed}):"


def _graph_text(graph: OpGraph) -> str:
    lines = graph.describe().splitlines()
    more = len(lines) - GRAPH_LINES
    return "\n".join(lines[:GRAPH_LINES] + ([f"... ({more} more nodes)"] if more > 0 else []))


def launch_bound(work: Work, ceilings: tuple[float, float] | None, stages: list[Stage] = ()) -> bool:
    """Would launching the kernels one by one cost more than moving and computing the data
    plus what a CUDA-graph replay adds (copying the inputs in and the output out)? Never with
    a convolution among `stages`: fp32 convolutions run far above the FLOP floor (L2-6 and 79
    take 0.7 ms on an H100 against a floor under 0.1 ms), so the floor cannot show that."""
    if ceilings is None or _has_conv(stages):
        return False
    floor_s = max(work.minimum_bytes / ceilings[0], work.flops / ceilings[1])
    return work.fused_launches * LAUNCH_US * 1e-6 > floor_s + 2 * work.io_bytes / ceilings[0]


def launch_line(work: Work, ceilings: tuple[float, float] | None, stages: list[Stage]) -> str:
    if ceilings is None:
        return "Launch overhead: not measurable without a GPU; CUDA-graph replay is a GPU-only option."
    if launch_bound(work, ceilings, stages):
        return (f"Launch-bound: {work.fused_launches} launches at ~{LAUNCH_US:g} us each exceed the roofline floor "
                "and a CUDA graph's copies, so the search starts by replaying the whole forward as one CUDA graph.")
    if _has_conv(stages):
        return "Launch overhead: a convolution's time is not predicted by the floor, so no CUDA graph is tried."
    return f"Not launch-bound: {work.fused_launches} launch(es) cost less than the roofline floor and a graph's copies."


def work_line(work: Work) -> str:
    saved = 1 - work.fused_bytes / work.eager_bytes if work.eager_bytes else 0.0
    return (f"Work: {fmt(work.flops)}FLOP. Eager runs {work.eager_launches} op(s) moving about "
            f"{fmt(work.eager_bytes)}B; the fused plan runs {work.fused_launches} kernel(s) moving about "
            f"{fmt(work.fused_bytes)}B ({abs(saved):.0%} {'less' if saved >= 0 else 'more'}); the floor is "
            f"{fmt(work.minimum_bytes)}B "
            f"(inputs, parameters and output once).")


def roofline_line(work: Work, device: DeviceInfo, ceilings: tuple[float, float] | None) -> str:
    if ceilings is None:
        return (f"Roofline: no GPU here ({device.name}, {device.mode.value}): the ceilings cannot be measured, so no "
                "bound is computed and no speed is claimed; kernels are checked for correctness only.")
    bandwidth, rate = ceilings
    memory_s, compute_s = work.minimum_bytes / bandwidth, work.flops / rate
    bound = "compute" if compute_s > memory_s else "memory"
    return (f"Roofline on {device.name} (measured {bandwidth / 1e9:.0f} GB/s, {rate / 1e12:.1f} TFLOP/s fp32): "
            f"floor {max(memory_s, compute_s) * 1e3:.4g} ms, {bound}-bound "
            f"(intensity {work.flops / max(work.minimum_bytes, 1):.2f} FLOP/B, ridge {rate / bandwidth:.1f}).")


def stage_line(index: int, stage: Stage, graph: OpGraph, ceilings: tuple[float, float] | None,
                triton_conv: bool) -> str:
    if stage.kind is StageKind.VIEW:
        return f"{index + 1}. view `{stage.anchor.name}` ({stage.anchor.op}): a torch view, no data moved"
    moved, work = stage_bytes(stage, graph, triton_conv), stage_flops(stage, graph)
    intensity = work / max(moved, 1.0)
    ridge = ceilings[1] / ceilings[0] if ceilings else 10.0   # ~H100 fp32 ridge without a measurement
    kind = "compute" if intensity > ridge else "memory"
    fused = ", ".join(n.op for n in stage.body) or "-"
    anchor = f"{_label(stage.anchor)} `{stage.anchor.name}` " if stage.anchor else ""
    return (f"{index + 1}. {stage.kind.value}: {anchor}fused [{fused}], {fmt(moved)}B, {fmt(work)}FLOP, "
            f"{intensity:.2f} FLOP/B: {kind}-bound")


def stage_lines(graph: OpGraph, stages: list[Stage], ceilings: tuple[float, float] | None) -> list[str]:
    """One line per stage: its kind, what it fuses, bytes, FLOPs and bound."""
    return [stage_line(i, s, graph, ceilings, _triton_conv(stages)) for i, s in enumerate(stages)]


def _label(node: OpNode) -> str:
    """An op's name; for one kept in PyTorch with no canonical name, what the reference called."""
    return node.kept.template.split("(")[0] if node.op == "torch" and node.kept else node.op


def fmt(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} "
