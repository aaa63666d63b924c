"""Plan: a GEMM in Triton `tl.dot`, with the stage's epilogue on the accumulator.

One program per (BLOCK_M, BLOCK_N) output tile (grouped GROUP_M tiles deep for L2
reuse), a second grid axis for batched products. Operands are read through their
strides, so `x @ W.T` of a Linear and `a @ b.T` need no transposed copy; fp32 uses
`input_precision="ieee"` to stay exact. Bias, activations, scales and residual adds
run on the fp32 accumulator before the only store.

With `config.gemm_library` the product runs on cuBLAS instead (bias included, through
addmm's own epilogue) and the chain after it, if any, is one Triton epilogue over its
output, as for convolutions. Exact fp32 `tl.dot` has no tensor cores, so in fp32 the
search starts on cuBLAS and tries the `tl.dot` kernel as its neighbour.

Exact fp32 `tl.dot` also reads a B whose K dim is its fastest (`a @ b.T`, a Linear's weight)
about 2x slower than an N-fastest one (KernelBench level 1 on an H100: 0.42x of cuBLAS against
0.84x), so with `config.gemm_b_copy` such a B is first copied N-fastest by `_n_major`, a Triton
transpose of 2*N*K*4 bytes, small beside the product's 2*M*N*K flops once M is a few hundred
(below COPY_ROWS rows of A the wrapper reads B as it is).
"""
import torch

from agent.builtin.ir import OpGraph, OpNode, Ref
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans import library
from agent.builtin.plans.common import (GROUPED_TILES, MATMUL_TILES, Body, Config, Emitted, dtype_name, forward_expr,
                                        load_cast)

COPY_ROWS = 256     # fewer rows of A than this: the copy of B costs more than its slow reads

EPILOGUE_LOADS = {
    Operand.FULL: "tl.load({p} + (pid_b * M + offs_m)[:, None] * N + offs_n[None, :], mask=mask, other=0.0)",
    Operand.COL: "tl.load({p} + offs_n, mask=offs_n < N, other=0.0)[None, :]",
    Operand.ROW: "tl.load({p} + pid_b * M + offs_m, mask=offs_m < M, other=0.0)[:, None]",
    Operand.SCALAR: "tl.load({p})",
}


def mode_of(anchor: OpNode, graph: OpGraph) -> str:
    """linear (W read transposed), mm (any leading dims on a, 2-D b) or bmm (3-D by 3-D)."""
    a, b = (graph.node(r).shape for r in anchor.refs[:2])
    if anchor.op == "linear":
        return "linear"
    if len(b) == 2 and len(a) >= 2:
        return "mm"
    if len(a) == 3 and len(b) == 3 and a[0] == b[0]:
        return "bmm"
    raise Unsupported(f"{anchor.name}: {anchor.op} of shapes {a} and {b} (2-D, batched 3-D and Linear only)")


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    anchor = stage.anchor
    mode = mode_of(anchor, graph)
    a_name, b_name = anchor.refs[:2]
    bias = anchor.args[2] if mode == "linear" and len(anchor.args) > 2 and isinstance(anchor.args[2], Ref) else None
    if config.gemm_library:     # with no chain after it, the product is just a line of the forward
        return library.epilogue(stage, graph, config, name, _library_line(anchor, mode, bias, graph, bool(stage.body)))
    body = Body(stage, graph, "acc", (bias.name,) if bias is not None else ())
    kinds = body.kinds(stage.shape)
    lines = [f"{body.var[n]} = {EPILOGUE_LOADS[kinds[n]].format(p=body.var[n] + '_ptr')}{load_cast(graph.node(n))}"
             for n in body.inputs]
    if bias is not None:
        lines.append(f"acc = acc + {body.var[bias.name]}  # bias")
    lines += [body.pointwise(node) for node in stage.body]
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    lines += [f"tl.store({o}_ptr + (pid_b * M + offs_m)[:, None] * N + offs_n[None, :], "
              f"{body.var[v]}.to({o}_ptr.dtype.element_ty), mask=mask)" for o, v in zip(outs, stage.outputs)]
    precision = ', input_precision="ieee"' if is_fp32(stage, graph) else ""
    kernel = _kernel(name, body, kinds, outs, precision) + "".join(f"    {line}\n" for line in lines)
    call_args = [forward_expr(n, graph) for n in [a_name, b_name] + body.inputs]
    copies = config.gemm_b_copy and b_k_fastest(stage, graph)
    return Emitted(kernel, _wrapper(name, mode, stage, graph, body, outs, config, copies),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(call_args)})",
                   frozenset(body.helpers | ({"_n_major"} if copies else set())))


def _library_line(anchor: OpNode, mode: str, bias: Ref | None, graph: OpGraph, chained: bool) -> str:
    a, b = (forward_expr(r, graph) for r in anchor.refs[:2])
    call = {"linear": f"F.linear({a}, {b}, {forward_expr(bias.name, graph) if bias else None})",
            "mm": f"torch.matmul({a}, {b})", "bmm": f"torch.bmm({a}, {b})"}[mode]
    return f"{anchor.name} = {call}  # cuBLAS" + ("; the chain after it is the Triton epilogue" if chained else "")


def is_fp32(stage: Stage, graph: OpGraph) -> bool:
    return graph.node(stage.anchor.refs[0]).dtype == torch.float32


def b_k_fastest(stage: Stage, graph: OpGraph) -> bool:
    """Is this exact fp32 product's B read with K fastest, so that `gemm_b_copy` matters? A
    Linear's weight (N, K), or a 2-D b that is a transpose of its last two dims (`b.T`)."""
    anchor = stage.anchor
    if anchor.op != "linear" and mode_of(anchor, graph) != "mm":
        return False
    b = graph.node(anchor.refs[1])
    dims = {d % len(b.shape) for d in (b.attrs.get("dim0"), b.attrs.get("dim1")) if isinstance(d, int)}
    swapped = b.op == "t" or (b.op == "transpose" and dims == {len(b.shape) - 2, len(b.shape) - 1})
    return is_fp32(stage, graph) and (anchor.op == "linear" or swapped)


def _kernel(name: str, body: Body, kinds: dict, outs: list[str], precision: str) -> str:
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} epilogue operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output (batch * M, N), contiguous\n" for o in outs)
    return f'''
@triton.jit
def {name}_kernel(
    a_ptr, b_ptr,  # A (batch, M, K) and B (batch, K, N), any strides
{params}    M, N, K,
    stride_ab, stride_am, stride_ak,  # A strides, in elements (stride_ab = 0 when not batched)
    stride_bb, stride_bk, stride_bn,  # B strides
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,  # tile shape
    GROUP_M: tl.constexpr,  # tile rows per L2-friendly group
):
    pid = tl.program_id(axis=0)
    pid_b = tl.program_id(axis=1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
{GROUPED_TILES}

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + pid_b * stride_ab + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + pid_b * stride_bb + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < K - k), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < K - k) & (offs_n[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc{precision})
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
'''


SHAPES = {
    "linear": ["K = a.shape[-1]", "out_shape = (*a.shape[:-1], b.shape[0])", "a = a.reshape(-1, K)",
               "batch, M, N = 1, a.shape[0], b.shape[0]", "assert b.shape[1] == K",
               "a_strides = (0, a.stride(0), a.stride(1))", "b_strides = (0, b.stride(1), b.stride(0))  # W read as W.T"],
    "mm": ["K = a.shape[-1]", "out_shape = (*a.shape[:-1], b.shape[1])", "a = a.reshape(-1, K)",
           "batch, M, N = 1, a.shape[0], b.shape[1]", "assert b.shape[0] == K",
           "a_strides = (0, a.stride(0), a.stride(1))", "b_strides = (0, b.stride(0), b.stride(1))"],
    "bmm": ["batch, M, K = a.shape", "N = b.shape[2]", "out_shape = (batch, M, N)", "assert b.shape[:2] == (batch, K)",
            "a_strides = (a.stride(0), a.stride(1), a.stride(2))", "b_strides = (b.stride(0), b.stride(1), b.stride(2))"],
}


def _wrapper(name: str, mode: str, stage: Stage, graph: OpGraph, body: Body, outs: list[str], config: Config,
             copies: bool) -> str:
    """`copies`: B is read K-fastest and `config.gemm_b_copy` is on (the call copies it N-fastest)."""
    bm, bn, bk, group, warps, stages = MATMUL_TILES[config.tile]
    extra = [body.var[n] for n in body.inputs]
    lines = list(SHAPES[mode]) + [f"{e} = {e}.contiguous()" for e in extra]
    if copies:
        lines += [f"if b_strides[1] == 1 and N > 1 and M >= {COPY_ROWS}:  # K fastest in B: tl.dot reads it 2x slower",
                  "    b, b_strides = _n_major(b, K, N, b_strides[1], b_strides[2]), (0, N, 1)"]
    lines += [f"{o} = torch.empty(out_shape, device=a.device, dtype={dtype_name(graph.node(v).dtype)})"
              for o, v in zip(outs, stage.outputs)]
    lines += [f"grid = (triton.cdiv(M, {bm}) * triton.cdiv(N, {bn}), batch)",
              f"{name}_kernel[grid](a, b, {''.join(e + ', ' for e in extra + outs)}M, N, K, *a_strides, *b_strides,",
              f"    BLOCK_M={bm}, BLOCK_N={bn}, BLOCK_K={bk}, GROUP_M={group}, num_warps={warps}, num_stages={stages})",
              f"return {', '.join(outs)}"]
    return f"\ndef {name}({', '.join(['a', 'b'] + extra)}):\n" + "".join(f"    {line}\n" for line in lines)


N_MAJOR_HELPER = '''
@triton.jit
def _n_major_kernel(src_ptr, dst_ptr, K, N, stride_k, stride_n, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """dst (K, N), N fastest, from src (K, N) read through its strides."""
    offs_k = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (offs_k[:, None] < K) & (offs_n[None, :] < N)
    tile = tl.load(src_ptr + offs_k[:, None] * stride_k + offs_n[None, :] * stride_n, mask=mask)
    tl.store(dst_ptr + offs_k[:, None] * N + offs_n[None, :], tile, mask=mask)


def _n_major(b, K, N, stride_k, stride_n):
    """B (K, N) copied N-fastest for an exact fp32 tl.dot, which reads a K-fastest B 2x slower."""
    out = torch.empty((K, N), device=b.device, dtype=b.dtype)
    _n_major_kernel[(triton.cdiv(K, 64), triton.cdiv(N, 64))](b, out, K, N, stride_k, stride_n, BLOCK_K=64, BLOCK_N=64)
    return out
'''
