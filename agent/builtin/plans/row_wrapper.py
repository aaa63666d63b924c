"""The Python side of a row program, shared by rows.py (the whole row in registers),
long_rows.py (the row walked in BLOCK_N steps) and split_rows.py (the row in segments): check
the operands, allocate the outputs (row-level ones at the stage's shape, row-scalars one per
row), launch one program per row (split_rows.py: its own launches).

    source = wrapper(stage, graph, body, kinds, outs, name, config)            # whole rows
    source = wrapper(stage, graph, body, kinds, outs, name, config, 4096)      # rows walked in steps of 4096
"""
from agent.builtin.ir import OpGraph, OpNode
from agent.builtin.ops import MAX_ROW
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans.common import Body, Config, dtype_name

NEG_INF, POS_INF = 'float("-inf")', 'float("inf")'    # masked lanes' neutral elements of max and min


def row_level(node: OpNode, stage: Stage) -> bool:
    """One value per element of the row (not one per row)?"""
    return node.shape == stage.shape


def wrapper(stage: Stage, graph: OpGraph, body: Body, kinds: dict, outs: list[str], name: str,
            config: Config, block: int | None = None, launch: list[str] | None = None) -> str:
    """Check, allocate, launch one program per row; `block` is the step of a looping row
    program (None: the whole row in one block); `launch` replaces the one launch (split_rows.py's
    launches over segments)."""
    args = [body.var[n] for n in body.inputs]
    full = [a for a, n in zip(args, body.inputs) if kinds[n] is Operand.FULL]
    if not full:
        raise Unsupported("a row program with no full-size operand")
    lines = [f"shape = {full[0]}.shape", "n_cols = shape[-1]", "n_rows = {0}.numel() // n_cols".format(full[0])]
    if block is None:
        lines.append(f"assert n_cols <= {MAX_ROW}, 'rows longer than {MAX_ROW} need the looping row program'")
    lines += [f"{a} = {a}.contiguous()" for a, n in zip(args, body.inputs) if kinds[n] is not Operand.SCALAR]
    for o, v in zip(outs, stage.outputs):
        node = graph.node(v)
        out_shape = "shape" if row_level(node, stage) else ("shape[:-1] + (1,)" if node.shape[-1:] == (1,)
                                                               and len(node.shape) == len(stage.shape) else "shape[:-1]")
        lines.append(f"{o} = torch.empty({out_shape}, device={full[0]}.device, dtype={dtype_name(node.dtype)})")
    lines.append(f"BLOCK_N = {block}" if block else "BLOCK_N = triton.next_power_of_2(n_cols)")
    lines += launch or [f"{name}_kernel[(n_rows,)]({', '.join(args + outs)}, n_cols, BLOCK_N=BLOCK_N, "
                        f"num_warps={config.row_warps})"]
    lines.append(f"return {', '.join(outs)}")
    return f"\ndef {name}({', '.join(args)}):\n" + "".join(f"    {line}\n" for line in lines)
