"""Losses the capture writes out as the ops that define them (capture.py calls these):
cross-entropy of class indices and the triplet margin loss, as row programs and totals."""
import torch
import torch.fx as fx
import torch.nn as nn

from agent.builtin.fx_args import meta, refs
from agent.builtin.ir import OpNode, Ref


def triplet_margin_loss(node: fx.Node, module: nn.Module, shape, dtype) -> list[OpNode] | str:
    """mean(relu(d(a, p) - d(a, n) + margin)) with d(x, y) = ||x - y + eps||_2 over the last
    dim, as nn.TripletMarginLoss computes it (p=2, no swap): two row programs and a total."""
    if module.p != 2 or module.swap or module.reduction not in ("mean", "sum") or len(node.args) != 3:
        return f"{node.name}: TripletMarginLoss with p={module.p}, swap={module.swap}, reduction={module.reduction!r}"
    rows_shape, _ = meta(node.args[0])
    if rows_shape is None or len(rows_shape) != 2:
        return f"{node.name}: TripletMarginLoss over a rank-{len(rows_shape or ())} input"
    anchor, positive, negative = refs(node.args)
    made, distances = [], []
    for side, other in (("positive", positive), ("negative", negative)):
        diff = OpNode(f"{node.name}_{side}_diff", "sub", (anchor, other), {}, rows_shape, dtype)
        shifted = OpNode(f"{node.name}_{side}_shift", "add", (Ref(diff.name), module.eps), {}, rows_shape, dtype)
        distances.append(OpNode(f"{node.name}_{side}_distance", "norm", (Ref(shifted.name),),
                                {"p": 2, "dim": -1, "keepdim": False}, rows_shape[:1], dtype))
        made += [diff, shifted, distances[-1]]
    gap = OpNode(f"{node.name}_gap", "sub", tuple(Ref(d.name) for d in distances), {}, rows_shape[:1], dtype)
    margin = OpNode(f"{node.name}_margin", "add", (Ref(gap.name), module.margin), {}, rows_shape[:1], dtype)
    hinge = OpNode(f"{node.name}_hinge", "relu", (Ref(margin.name),), {}, rows_shape[:1], dtype)
    total = OpNode(node.name, module.reduction, (Ref(hinge.name),), {"dim": None, "keepdim": False}, shape, dtype)
    return made + [gap, margin, hinge, total]


def cross_entropy(node: fx.Node, options: dict, shape, dtype) -> list[OpNode] | str:
    """Cross-entropy of (N, C) logits against (N,) class indices: per row, logsumexp minus
    the target's logit (zero for the ignored class), then their sum, or their mean over the
    targets that count; a row program and two totals."""
    reduction, ignore = options.get("reduction", "mean"), options.get("ignore_index", -100)
    if options.get("weight") is not None or options.get("label_smoothing", 0.0) or reduction not in ("mean", "sum") \
            or options.get("size_average") is not None or options.get("reduce") is not None:
        return f"{node.name}: cross_entropy with class weights, label smoothing or reduction={reduction!r}"
    (logits_shape, _), (target_shape, target_dtype) = meta(node.args[0]), meta(node.args[1])
    if logits_shape is None or len(logits_shape) != 2 or target_shape != logits_shape[:1] \
            or target_dtype not in (torch.int64, torch.int32):
        return f"{node.name}: cross_entropy over {logits_shape} logits and {target_shape} {target_dtype} targets"
    logits, target = refs(node.args[:2])
    rows, n = (logits_shape[0], 1), node.name
    made = [OpNode(f"{n}_target", "unsqueeze", (target,), {"dim": 1}, rows, target_dtype),
            OpNode(f"{n}_logits", "clone", (logits,), {}, logits_shape, dtype),
            OpNode(f"{n}_lse", "logsumexp", (Ref(f"{n}_logits"),), {"dim": -1, "keepdim": True}, rows, dtype),
            OpNode(f"{n}_picked", "pick", (Ref(f"{n}_logits"), Ref(f"{n}_target")), {"dim": -1, "keepdim": True},
                   rows, dtype),
            OpNode(f"{n}_nll", "sub", (Ref(f"{n}_lse"), Ref(f"{n}_picked")), {}, rows, dtype),
            OpNode(f"{n}_terms", "drop_ignored", (Ref(f"{n}_nll"), Ref(f"{n}_target")), {"ignore_index": ignore},
                   rows, dtype)]
    total = OpNode(n if reduction == "sum" else f"{n}_total", "sum", (Ref(f"{n}_terms"),), {"dim": None}, (), dtype)
    if reduction == "sum":
        return made + [total]
    kept = OpNode(f"{n}_kept", "kept_target", (Ref(f"{n}_target"),), {"ignore_index": ignore}, rows, dtype)
    count = OpNode(f"{n}_count", "sum", (Ref(kept.name),), {"dim": None}, (), dtype)
    return made + [total, kept, count, OpNode(n, "div", (Ref(total.name), Ref(count.name)), {}, tuple(shape), dtype)]
