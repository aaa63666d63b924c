"""Reduced sizes for KernelBench problems, so their kernels can be checked for
correctness in the Triton interpreter on a CPU (no timings at these sizes).

A KernelBench problem keeps its sizes in module-level constants that `get_inputs` and
`get_init_inputs` read; `shrink` lowers the batch to 2, channel counts to 16, feature
widths to 64 and spatial extents to 12 on the loaded problem's module, and in tuples of
ints (a `bias_shape = (out_channels, 1, 1)` built at import) replaces each element equal
to a lowered channel or feature constant's full value. Other constants built from those at import keep
their full value, so a few problems break or degenerate at these sizes (a group of one
channel normalises to its bias); the check reports them.

    problem = shrink(load_problem("KernelBench/level2/1_Conv2D_ReLU_BiasAdd.py"))
"""
import dataclasses

from tools.problems import Problem

LIMITS = {"batch_size": 2, "in_channels": 16, "out_channels": 16, "in_features": 64, "out_features": 64,
          "hidden_size": 64, "input_size": 64, "depth": 12, "height": 12, "width": 12, "D": 12, "H": 12, "W": 12,
          "length": 12, "input_length": 12, "seq_len": 12, "height_in": 12, "width_in": 12, "depth_in": 12,
          "channels": 16, "features": 16, "sequence_length": 41, "dim1": 13, "dim2": 12, "dim3": 11}


def shrink(problem: Problem) -> Problem:
    """The problem with its size constants lowered in place (its module is changed)."""
    module, lowered = problem.module.__dict__, {}
    for name, limit in LIMITS.items():
        value = module.get(name)
        if type(value) is int and value > limit:
            module[name] = limit
            if "channels" in name or "features" in name or (name.endswith("_size") and name != "batch_size"):
                lowered.setdefault(value, limit)        # parameter shapes hold channels and features
    for name, value in list(module.items()):
        if isinstance(value, tuple) and value and all(type(v) is int for v in value):
            module[name] = tuple(lowered.get(v, v) for v in value)
    return dataclasses.replace(problem, size="small")
