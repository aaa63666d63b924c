"""Computes the softmax in fp16 (precision downgrade beyond the tolerance)."""
# expect: incorrect
# reason: relative L2 error
# problem: 04_softmax_rows
# gpu-only: no
# twin: honest_softmax
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def softmax_kernel(x_ptr, y_ptr, stride_xm, stride_ym, n_cols, BLOCK: tl.constexpr):
    # one program per row; the whole row in one block (rows up to BLOCK long)
    row = tl.program_id(axis=0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = tl.load(x_ptr + row * stride_xm + offs, mask=mask, other=float("-inf"))
    e = tl.exp(x - tl.max(x, axis=0))
    tl.store(y_ptr + row * stride_ym + offs, e / tl.sum(e, axis=0), mask=mask)


def softmax_rows(x):
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    y = torch.empty_like(x2)
    softmax_kernel[(x2.shape[0],)](x2, y, x2.stride(0), y.stride(0), x2.shape[1],
                                   BLOCK=triton.next_power_of_2(x2.shape[1]))
    return y.view(x.shape)


class ModelNew(nn.Module):
    def forward(self, x):
        return softmax_rows(x.half()).float()
