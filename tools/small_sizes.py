"""Reduced sizes for problems that declare none (KernelBench's have no `SMALL_SIZES`), so
their kernels can be checked for correctness in the Triton interpreter on a CPU (no
timings at these sizes). `load_problem(path, size="small")` calls `shrink` on such a
problem's module; a problem with `SMALL_SIZES` uses those instead.

A KernelBench problem keeps its sizes in module-level constants that `get_inputs` and
`get_init_inputs` read; `shrink` lowers the batch to 2, channel counts to 16, feature
widths to 64 and spatial extents to 12 (the names in LIMITS; any other constant keeps its
value), and in tuples of ints (a `bias_shape = (out_channels, 1, 1)` built at import)
replaces each element equal to a lowered channel or feature constant's full value. Other
constants built from those at import keep their full value, so a few problems break or
degenerate at these sizes (a group of one channel normalises to its bias); their runs say so.

    lowered = shrink(module)      # ((name, new value), ...): what it set, in the module's order
"""
import types

LIMITS = {"batch_size": 2, "in_channels": 16, "out_channels": 16, "in_features": 64, "out_features": 64,
          "hidden_size": 64, "input_size": 64, "depth": 12, "height": 12, "width": 12, "D": 12, "H": 12, "W": 12,
          "length": 12, "input_length": 12, "seq_len": 12, "height_in": 12, "width_in": 12, "depth_in": 12,
          "channels": 16, "features": 16, "sequence_length": 41, "dim1": 13, "dim2": 12, "dim3": 11}


def shrink(module: types.ModuleType) -> tuple[tuple[str, object], ...]:
    """Lower the module's size constants in place; the globals it changed, with their new values."""
    names, lowered, changed = module.__dict__, {}, {}
    for name, limit in LIMITS.items():
        value = names.get(name)
        if type(value) is int and value > limit:
            changed[name] = limit
            if "channels" in name or "features" in name or (name.endswith("_size") and name != "batch_size"):
                lowered.setdefault(value, limit)        # parameter shapes hold channels and features
    for name, value in names.items():
        if isinstance(value, tuple) and value and all(type(v) is int for v in value):
            new = tuple(lowered.get(v, v) for v in value)
            if new != value:
                changed[name] = new
    names.update(changed)
    return tuple((name, changed[name]) for name in names if name in changed)
