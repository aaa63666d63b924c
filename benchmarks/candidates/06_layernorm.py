"""Triton candidate for 06_layernorm: one program per row, three chunked sweeps over the row.

Sweep 1 sums x for the mean, sweep 2 sums (x - mean)^2 for the variance (two-pass
for accuracy on offset data), sweep 3 writes (x - mean) * rstd * w + b, as in the
Triton layer-norm tutorial. Rows up to MAX_BLOCK are one chunk: re-reads hit cache.
"""
import torch
import torch.nn as nn
import triton
import triton.language as tl

MAX_BLOCK = 8192


@triton.jit
def layernorm_kernel(
    x_ptr,        # *f32, (n_rows, n_cols) input, last dim contiguous
    w_ptr,        # *f32, (n_cols,) affine weight
    b_ptr,        # *f32, (n_cols,) affine bias
    y_ptr,        # *f32, (n_rows, n_cols) output, last dim contiguous
    stride_xm,    # elements between consecutive rows of x
    stride_ym,    # elements between consecutive rows of y
    n_cols,       # row length, the normalised dim
    eps,          # added to the variance
    BLOCK: tl.constexpr,
):
    row = tl.program_id(axis=0).to(tl.int64)
    x_row = x_ptr + row * stride_xm
    y_row = y_ptr + row * stride_ym
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        x = tl.load(x_row + start + offs, mask=start + offs < n_cols, other=0.0)
        acc += x
    mean = tl.sum(acc, axis=0) / n_cols
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n_cols, BLOCK):
        mask = start + offs < n_cols
        x = tl.load(x_row + start + offs, mask=mask, other=0.0)
        d = tl.where(mask, x - mean, 0.0)
        acc += d * d
    rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / n_cols + eps)
    for start in range(0, n_cols, BLOCK):
        mask = start + offs < n_cols
        x = tl.load(x_row + start + offs, mask=mask, other=0.0)
        w = tl.load(w_ptr + start + offs, mask=mask, other=0.0)
        b = tl.load(b_ptr + start + offs, mask=mask, other=0.0)
        tl.store(y_row + start + offs, (x - mean) * rstd * w + b, mask=mask)


def _row_launch_config(n_cols):
    # whole row in one block up to MAX_BLOCK (measured best on an H100); longer rows loop
    BLOCK = min(triton.next_power_of_2(n_cols), MAX_BLOCK)
    num_warps = 4 if BLOCK <= 2048 else (8 if BLOCK <= 4096 else 16)
    return BLOCK, num_warps


def layernorm(x, weight, bias, eps):
    assert x.shape[-1] == weight.numel() == bias.numel()
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    y = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    n_rows, n_cols = x2.shape
    BLOCK, num_warps = _row_launch_config(n_cols)
    layernorm_kernel[(n_rows,)](
        x2, weight, bias, y, x2.stride(0), y.stride(0), n_cols, eps,
        BLOCK=BLOCK, num_warps=num_warps,
    )
    return y.view(x.shape)


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.ln = nn.LayerNorm(dim)

    def forward(self, x):
        return layernorm(x, self.ln.weight, self.ln.bias, self.ln.eps)
