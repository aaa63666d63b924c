"""kernelpilot's built-in policy: Triton kernels from a captured op graph, no LLM.

    ir.py         the op graph (OpGraph, OpNode, Ref), CaptureError, the tables that bind a call's arguments
    capture.py    the reference forward as an op graph (torch.fx + ShapeProp on meta tensors)
    export.py     the capture's fallback: torch.export's aten graph in the form capture reads
    rewrite.py    exact algebraic rewrites (diagonal products as scalings); fold.py, fold_conv.py the folds
    partition.py  the graph split into stages, one kernel each
    ops.py        op families and the Triton expressions of pointwise ops
    analysis.py   the `## Performance analysis` text: bytes, FLOPs, roofline, fusion savings
    plans/        one module per stage family, emitting Triton source; program.py builds ModelNew
    search.py     launch-configuration search (keep the winners, try their neighbours)
    policy.py     BuiltinPolicy: the turn protocol over the tools
"""
from agent.builtin.policy import BuiltinPolicy

__all__ = ["BuiltinPolicy"]
