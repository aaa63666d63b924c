"""Plan variant: a walked row (long_rows.py) split into segments, for few long rows — a layer
norm over a whole (C, H, W) sample has 16 rows of 4 M elements, and one program a row would
leave most of an H100's 132 SMs idle.

Each reduction loop of the row program becomes a launch over (row, segment): every program
folds its segment and stores its partial (a sum, a max) in a small per-row buffer; the next
launch first combines the row's partials into the row-scalar (the mean, the max), exactly as
the whole-row loop would have ended, then folds its own segment with it. The last launch
combines every partial and stores its segment of the outputs; the first segment stores the
row-scalar outputs. So a layer norm is three launches (mean, variance, normalise) that read
the row as the whole-row program does (twice for the statistics, once to store), with
rows x segments programs instead of rows. `Config.row_split` is how many programs the
wrapper aims for; segments are whole BLOCK_N steps.

    emitted = split_rows.emit(stage, graph, Config(row_block=4096, row_split=1024), "fused_layer_norm", writer)
"""
from agent.builtin.ir import OpGraph
from agent.builtin.partition import Operand, Stage
from agent.builtin.plans.common import Config, Emitted, forward_expr
from agent.builtin.plans.row_wrapper import wrapper

DEFAULT_PROGRAMS = 1024      # 132 SMs on an H100, several programs each


def emit(stage: Stage, graph: OpGraph, config: Config, name: str, writer) -> Emitted:
    """`writer`: long_rows.writer(stage, graph, split=True), its pieces lines and folds."""
    folds = [piece for piece in writer.lines if not isinstance(piece, str)]
    body = writer.body
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    parts = [f"part{fold.index}" for fold in folds]
    phases = range(1, len(folds) + 2)        # one launch a fold, then the storing one
    params = "".join(f"    {body.var[n]}_ptr,  # {writer.kinds[n].value} operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output\n" for o in outs)
    params += "".join(f"    {p}_ptr,  # fold {p[4:]}'s partials, (rows, n_split)\n" for p in parts)
    kernels = "".join(_kernel(f"{name}_p{phase}", params, _phase(writer, phase, outs)) for phase in phases)
    args = ", ".join([body.var[n] for n in body.inputs] + outs + parts)
    launch = [f"n_split = max(1, min(triton.cdiv(n_cols, BLOCK_N), triton.cdiv({config.row_split}, n_rows)))",
              "seg_len = triton.cdiv(triton.cdiv(n_cols, n_split), BLOCK_N) * BLOCK_N   # whole steps a segment",
              "n_split = triton.cdiv(n_cols, seg_len)"]
    device = next(body.var[n] for n in body.inputs if writer.kinds[n] is Operand.FULL)
    launch += [f"{p} = torch.empty((n_rows, n_split), device={device}.device, dtype=torch.float32)" for p in parts]
    launch += [f"{name}_p{phase}_kernel[(n_rows, n_split)]({args}, n_cols, n_split, seg_len, BLOCK_N=BLOCK_N, "
               f"BLOCK_S=triton.next_power_of_2(n_split), num_warps={config.row_warps})" for phase in phases]
    return Emitted(kernels, wrapper(stage, graph, body, writer.kinds, outs, name, config,
                                    config.row_block, launch=launch),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(forward_expr(n, graph) for n in body.inputs)})",
                   frozenset(body.helpers))


def _phase(writer, phase: int, outs: list[str]) -> list[str]:
    """Launch `phase`'s lines: the folds before it combined from their partials, its own fold
    over the segment ending in a stored partial, or (after the last fold) the outputs."""
    lines = []
    for piece in writer.lines:
        if isinstance(piece, str):
            lines.append(piece)
        elif piece.index < phase:
            lines += ["offs_s = tl.arange(0, BLOCK_S)",
                      f"parts = tl.load(part{piece.index}_ptr + row * n_split + offs_s, mask=offs_s < n_split, "
                      f"other={piece.neutral})",
                      f"{piece.result} = {piece.combined('parts')}"]
        else:
            return lines + piece.loop("lo", "hi") + [
                f"tl.store(part{piece.index}_ptr + row * n_split + seg, {piece.partial()})"]
    return lines + writer.store(outs)


def _kernel(name: str, params: str, lines: list[str]) -> str:
    return f'''
@triton.jit
def {name}_kernel(
{params}    n_cols, n_split, seg_len,  # row length; segments a row and elements a segment
    BLOCK_N: tl.constexpr,  # elements per step along the segment
    BLOCK_S: tl.constexpr,  # next power of two >= n_split
):
    row = tl.program_id(axis=0).to(tl.int64)  # rows * n_cols can pass 2**31
    seg = tl.program_id(axis=1)
    lo = seg * seg_len
    hi = tl.minimum(lo + seg_len, n_cols)
''' + "".join(f"    {line}\n" for line in lines)
