"""Triton candidate for 13_smooth_l1_loss: per-row Huber means in one pass.

One program per row walks the row in BLOCK-wide chunks, accumulating the Huber terms
in fp32, and writes the row's mean: one read of both inputs, nothing written per
element.
"""
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def smooth_l1_rows_kernel(
    p_ptr,        # *f32, (n_rows, n_cols) predictions, rows contiguous
    t_ptr,        # *f32, (n_rows, n_cols) targets, rows contiguous
    out_ptr,      # *f32, (n_rows,) per-row mean loss
    n_cols,       # row length
    BETA: tl.constexpr,   # threshold between the quadratic and linear parts
    BLOCK: tl.constexpr,
):
    row = tl.program_id(axis=0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        mask = start + offs < n_cols
        p = tl.load(p_ptr + row * n_cols + start + offs, mask=mask, other=0.0)
        t = tl.load(t_ptr + row * n_cols + start + offs, mask=mask, other=0.0)
        d = tl.abs(p - t)
        loss = tl.where(d < BETA, 0.5 * d * d / BETA, d - 0.5 * BETA)
        acc += tl.where(mask, loss, 0.0)
    tl.store(out_ptr + row, tl.sum(acc, axis=0) / n_cols)


def smooth_l1_rows(pred, target, beta=1.0):
    assert pred.shape == target.shape and pred.dim() == 2
    pred, target = pred.contiguous(), target.contiguous()
    n_rows, n_cols = pred.shape
    out = torch.empty(n_rows, dtype=torch.float32, device=pred.device)
    smooth_l1_rows_kernel[(n_rows,)](pred, target, out, n_cols, BETA=beta, BLOCK=1024, num_warps=4)
    return out


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, predictions, targets):
        return smooth_l1_rows(predictions, targets)
