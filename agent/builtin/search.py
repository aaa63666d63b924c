"""The configuration search: which launch configuration to try next.

Each stage family contributes axes (block sizes, warps, matmul tiles, the CUDA-graph
switch); a configuration is one value per axis. The search starts from a heuristic
default (or the fastest configuration the history already holds), then keeps the
winners and walks to their untried neighbours — one axis one step at a time, in a fixed
order — until the budget is spent or no neighbour is left. Everything it reads is given
to it (measured runtimes keyed by configuration), so it is deterministic.

    nxt = next_config(space, measured={Config(): 1.3, Config(block=2048): 1.1}, remaining=6)
"""
import math
from dataclasses import dataclass, replace

from agent.builtin.ir import OpGraph
from agent.builtin.partition import Stage, StageKind
from agent.builtin.ops import MAX_ROW
from agent.builtin.plans import conv_depthwise, long_rows, matmul, split_rows
from agent.builtin.plans.common import MATMUL_TILES, Config

# kernels that give each lane one element: pointwise chains, epilogues, totals, pools
ELEMENTWISE = {"block": (256, 512, 1024, 2048, 4096, 8192), "warps": (2, 4, 8, 16)}
ROW_BLOCKS = (0, 1024, 2048, 4096, 8192, 16384)   # 0: the whole row in registers
ROW_SPLITS = (0, 256, 1024, 4096)     # programs a walked row's segments aim for; 0: one program a row
FEW_ROWS = 256                        # fewer rows than this leave an H100's 132 SMs short of programs
AXES = {
    StageKind.POINTWISE: ELEMENTWISE,
    StageKind.CONV: {**ELEMENTWISE, "tile": tuple(range(len(MATMUL_TILES)))},   # tiles: the Triton conv
    StageKind.TORCH: ELEMENTWISE,
    StageKind.ROWS: {"row_warps": (1, 2, 4, 8, 16, 32)},      # and ROW_BLOCKS where every row op can walk
    StageKind.REDUCE: {"reduce_block": (8, 16, 32, 64, 128), "reduce_inner": (16, 32, 64, 128, 256),
                       "warps": (2, 4, 8, 16)},
    StageKind.GROUP_NORM: {"gn_block": (64, 128, 256, 512, 1024, 2048, 4096, 8192), "warps": (2, 4, 8, 16)},
    StageKind.MATMUL: {"tile": tuple(range(len(MATMUL_TILES)))},
    StageKind.TOTAL: ELEMENTWISE,
    StageKind.POOL: ELEMENTWISE,
    StageKind.BATCH_NORM: ELEMENTWISE,
    StageKind.TAP_SUMS: ELEMENTWISE,
    StageKind.RECURRENT: {"gru_steps": (False, True), "row_warps": (1, 2, 4, 8, 16)},
}


@dataclass(frozen=True)
class Space:
    axes: dict[str, tuple]      # field of Config -> its values, in neighbour order
    start: Config


def space_for(stages: list[Stage], graph: OpGraph, gpu: bool, launch_bound: bool) -> Space:
    axes: dict[str, tuple] = {}
    start = default_config(stages, graph)
    if library_fits(stages, StageKind.MATMUL):   # cuBLAS + epilogue, or all in tl.dot
        axes.update({"gemm_library": (start.gemm_library, not start.gemm_library), **ELEMENTWISE})
    if library_fits(stages, StageKind.CONV):     # cuDNN + epilogue, or all in a Triton implicit GEMM
        axes.update({"conv_library": (start.conv_library, not start.conv_library), **ELEMENTWISE})
    if not start.gemm_library and any(s.kind is StageKind.MATMUL and matmul.b_k_fastest(s, graph) for s in stages):
        axes["gemm_b_copy"] = (True, False)     # exact fp32 tl.dot: B copied N-fastest first, or read as it is
    if any(s.kind is StageKind.CONV and conv_depthwise.fits(s, graph) for s in stages):
        axes["conv_direct"] = (2, 1, 0)     # a depthwise conv in Triton: tiled, flat, or the implicit GEMM
    for stage in stages:
        axes.update(AXES.get(stage.kind, {}))
    rows = [s for s in stages if s.kind is StageKind.ROWS]
    if rows and all(long_rows.loopable(s) for s in rows):
        axes["row_block"] = ROW_BLOCKS      # walk the row in steps (a row longer than MAX_ROW must)
        if few_rows(rows):
            axes["row_split"] = ROW_SPLITS  # and split few rows into segments
    if gpu and launch_bound:        # launches dominate: start as a CUDA graph, one by one is the first neighbour
        start = replace(start, cuda_graph=True)
        axes = {"cuda_graph": (True, False), **axes}
    elif gpu and any(s.kind is StageKind.RECURRENT for s in stages):    # a GRU's launch a step pays only replayed
        axes = {"cuda_graph": (False, True), **axes}
    return Space(axes, start)


def default_config(stages: list[Stage], graph: OpGraph) -> Config:
    """Heuristics from the tutorials: wide rows get more warps, few rows too long for registers
    are split into segments (split_rows.py), big GEMMs bigger tiles, short
    group-norm slices shorter blocks; fp32 GEMMs start on cuBLAS and convolutions on cuDNN
    where a Triton kernel remains (exact fp32 `tl.dot` has no tensor cores: 0.45x of cuBLAS
    on an H100); a lone convolution becomes a Triton implicit GEMM; a long strided reduction
    with few programs takes taller steps."""
    config = Config()
    rows = [s.shape[-1] for s in stages if s.kind is StageKind.ROWS]
    if rows:
        longest = max(rows)
        config = replace(config, row_warps=4 if longest <= 2048 else 8 if longest <= 8192 else 16,
                         row_block=long_rows.DEFAULT_BLOCK if longest > MAX_ROW else 0)
        if longest > MAX_ROW and few_rows([s for s in stages if s.kind is StageKind.ROWS]):
            config = replace(config, row_split=split_rows.DEFAULT_PROGRAMS)
    gemms = [s.shape for s in stages if s.kind is StageKind.MATMUL]
    if gemms and min(min(shape[-1], shape[-2] if len(shape) > 1 else 1) for shape in gemms) >= 512:
        config = replace(config, tile=3)
    elif gemms and min(shape[-1] for shape in gemms) < 32:
        config = replace(config, tile=7)
    slices = [group_slice(s) for s in stages if s.kind is StageKind.GROUP_NORM]
    if slices:          # a block no longer than the (sample, group) slice: no lanes masked off on every pass
        config = replace(config, gn_block=min(config.gn_block, max(64, 1 << (max(slices) - 1).bit_length())))
    if any(few_long_reductions(s, graph) for s in stages if s.kind is StageKind.REDUCE):
        config = replace(config, reduce_block=128)
    matmuls = [s for s in stages if s.kind is StageKind.MATMUL]
    if library_fits(stages, StageKind.MATMUL) and all(matmul.is_fp32(s, graph) for s in matmuls):
        config = replace(config, gemm_library=True)
    if any(s.kind is StageKind.CONV for s in stages) and not library_fits(stages, StageKind.CONV):
        config = replace(config, conv_library=False)
    return config


def few_rows(rows: list[Stage]) -> bool:
    """Does a row program have fewer rows than FEW_ROWS (too few programs for the GPU)?"""
    return min(math.prod(s.shape[:-1]) for s in rows) < FEW_ROWS


def few_long_reductions(stage: Stage, graph: OpGraph) -> bool:
    """A strided reduction with few programs (at the default outputs per program) and a long
    reduced dim, like a weight matrix summed over its rows: each program walks many steps, so
    taller steps keep more bytes in flight per program."""
    source = graph.node(stage.anchor.refs[0]).shape
    dim = stage.anchor.attrs.get("dim")
    dim = (dim[0] if isinstance(dim, (tuple, list)) else dim) % len(source)
    return source[dim] >= 1024 and math.prod(stage.shape) // Config().reduce_inner < 1024


def group_slice(stage: Stage) -> int:
    """Elements in one (sample, group) slice of a group norm's (N, C, *spatial) output."""
    count = stage.shape[1] // stage.anchor.attrs["num_groups"]
    for dim in stage.shape[2:]:
        count *= dim
    return count


def library_fits(stages: list[Stage], kind: StageKind) -> bool:
    """Can the GEMMs (kind MATMUL) or convolutions (CONV) go to cuBLAS/cuDNN and leave a
    Triton kernel in the program? Yes when a stage always holds one (a row program) or a
    library op has a chain after it (the epilogue)."""
    kernels = (StageKind.POINTWISE, StageKind.ROWS, StageKind.REDUCE, StageKind.GROUP_NORM, StageKind.TOTAL,
               StageKind.POOL, StageKind.BATCH_NORM, StageKind.TAP_SUMS, StageKind.RECURRENT)
    return any(s.kind is kind for s in stages) and any(s.kind in kernels or s.body for s in stages)


def neighbours(config: Config, space: Space) -> list[Config]:
    """One axis, one step each way, in the fixed order of the axes."""
    found = []
    for axis, values in space.axes.items():
        current = getattr(config, axis)
        index = values.index(current) if current in values else 0
        for step in (1, -1):
            if 0 <= index + step < len(values):
                found.append(replace(config, **{axis: values[index + step]}))
    return found


def next_config(space: Space, measured: dict[Config, float | None], remaining: int) -> Config | None:
    """The next configuration to measure, or None when done. `measured` maps each tried
    configuration to its runtime in ms (None: failed or untimed); `remaining` is how many
    more evaluations the budget allows."""
    if remaining <= 0:
        return None
    if space.start not in measured:
        return space.start
    ranked = sorted((ms, order, c) for order, (c, ms) in enumerate(measured.items()) if ms is not None)
    for _, _, config in ranked:
        for candidate in neighbours(config, space):
            if candidate not in measured:
                return candidate
    return None


def best(measured: dict[Config, float | None]) -> Config | None:
    timed = [(ms, order, c) for order, (c, ms) in enumerate(measured.items()) if ms is not None]
    return min(timed)[2] if timed else None
