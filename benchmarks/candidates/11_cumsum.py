"""Triton candidate for 11_cumsum: one program per row, a chunked scan with a carried total.

Each program walks its row in BLOCK-wide chunks: tl.cumsum scans the chunk in
registers, the running total of earlier chunks is added, and the chunk's sum is
carried forward. One read and one write per element, any row length.
"""
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def cumsum_rows_kernel(
    x_ptr,        # *f32, (n_rows, n_cols) input, last dim contiguous
    y_ptr,        # *f32, (n_rows, n_cols) output, last dim contiguous
    stride_xm,    # elements between consecutive rows of x
    stride_ym,    # elements between consecutive rows of y
    n_cols,       # row length, the scanned dim
    BLOCK: tl.constexpr,
):
    row = tl.program_id(axis=0).to(tl.int64)
    x_row = x_ptr + row * stride_xm
    y_row = y_ptr + row * stride_ym
    offs = tl.arange(0, BLOCK)
    carry = 0.0
    for start in range(0, n_cols, BLOCK):
        mask = start + offs < n_cols
        x = tl.load(x_row + start + offs, mask=mask, other=0.0)
        tl.store(y_row + start + offs, tl.cumsum(x, axis=0) + carry, mask=mask)
        carry += tl.sum(x, axis=0)


def cumsum_last(x):
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    y = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    n_rows, n_cols = x2.shape
    cumsum_rows_kernel[(n_rows,)](x2, y, x2.stride(0), y.stride(0), n_cols, BLOCK=1024, num_warps=4)
    return y.view(x.shape)


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        assert self.dim % x.dim() == x.dim() - 1, "this kernel scans the last dim"
        return cumsum_last(x)
