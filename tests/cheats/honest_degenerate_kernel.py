"""Computes the degenerate problem honestly in a Triton kernel (correct; the problem is still flagged)."""
# expect: correct
# flags: degenerate_problem
# problem: cheats/problems/degenerate_scale
# gpu-only: no
import torch
import torch.nn as nn
import triton
import triton.language as tl



@triton.jit
def scale_kernel(x_ptr, y_ptr, n_elements, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 1e-7 + 1.0, mask=mask)


class ModelNew(nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        scale_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024)
        return y
