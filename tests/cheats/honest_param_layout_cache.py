"""Packs its two parameters into one buffer once and rebuilds it only when a parameter's _version changes (a cache of a parameter layout)."""
# expect: correct
# problem: 01_scale_bias_relu_chain
# gpu-only: no
import torch
import torch.nn as nn
import triton
import triton.language as tl



@triton.jit
def chain_kernel(x_ptr, packed_ptr, y_ptr, n_elements, n_cols, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    cols = offs % n_cols
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    s = tl.load(packed_ptr + cols, mask=mask, other=0.0)            # row 0 of packed: scale
    b = tl.load(packed_ptr + n_cols + cols, mask=mask, other=0.0)   # row 1: bias
    z = tl.maximum(x * s + b, 0.0) * x - 0.5
    t = tl.exp(-2.0 * tl.abs(z))
    mag = (1.0 - t) / (1.0 + t)
    tl.store(y_ptr + offs, tl.where(z >= 0, mag, -mag), mask=mask)


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(dim))
        self.bias = nn.Parameter(torch.randn(dim))
        self.packed, self.packed_versions = None, None

    def forward(self, x):
        versions = (self.scale._version, self.bias._version)
        if self.packed is None or self.packed_versions != versions:
            self.packed = torch.stack([self.scale.detach(), self.bias.detach()]).contiguous()
            self.packed_versions = versions
        x = x.contiguous()
        y = torch.empty_like(x)
        chain_kernel[(triton.cdiv(x.numel(), 1024),)](x, self.packed, y, x.numel(), x.shape[-1], BLOCK=1024)
        return y
