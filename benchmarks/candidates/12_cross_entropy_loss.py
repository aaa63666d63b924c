"""Triton candidate for 12_cross_entropy_loss: per-row log-sum-exp, then a one-program mean.

Stage 1: one program per row computes lse with an online running max and rescaled
sum over BLOCK-wide chunks and stores lse - logits[target]. Stage 2: a single
program sums the per-row losses in a fixed order (deterministic) and divides.
"""
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def cross_entropy_rows_kernel(
    x_ptr,        # *f32, (n_rows, n_cols) logits, last dim contiguous
    t_ptr,        # *i64, (n_rows,) target class per row
    loss_ptr,     # *f32, (n_rows,) output per-row loss
    stride_xm,    # elements between consecutive rows of logits
    n_cols,       # number of classes
    BLOCK: tl.constexpr,
):
    row = tl.program_id(axis=0)
    x_row = x_ptr + row.to(tl.int64) * stride_xm
    offs = tl.arange(0, BLOCK)
    m = float("-inf")
    s = 0.0
    for start in range(0, n_cols, BLOCK):
        x = tl.load(x_row + start + offs, mask=start + offs < n_cols, other=float("-inf"))
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    target = tl.load(t_ptr + row)
    x_target = tl.load(x_row + target)
    tl.store(loss_ptr + row, m + tl.log(s) - x_target)


@triton.jit
def mean_kernel(
    v_ptr,        # *f32, (n,) values to average
    out_ptr,      # *f32, 0-dim output
    n,            # number of values
    BLOCK: tl.constexpr,
):
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        acc += tl.load(v_ptr + start + offs, mask=start + offs < n, other=0.0)
    tl.store(out_ptr, tl.sum(acc, axis=0) / n)


def cross_entropy(logits, targets):
    assert logits.dim() == 2 and targets.shape == (logits.shape[0],)
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    targets = targets.contiguous()
    n_rows, n_cols = logits.shape
    losses = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    out = torch.empty((), dtype=torch.float32, device=logits.device)
    cross_entropy_rows_kernel[(n_rows,)](
        logits, targets, losses, logits.stride(0), n_cols,
        BLOCK=1024, num_warps=4,
    )
    mean_kernel[(1,)](losses, out, n_rows, BLOCK=1024, num_warps=4)
    return out


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, logits, targets):
        return cross_entropy(logits, targets)
