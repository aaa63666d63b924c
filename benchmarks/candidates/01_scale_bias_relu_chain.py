"""Triton candidate for 01_scale_bias_relu_chain: the whole chain in one elementwise kernel.

Each program handles BLOCK contiguous elements of the flattened (batch, dim) input,
gathers scale/bias by column (they stay in L2), and writes tanh(relu(x*s+b)*x-0.5):
one read and one write of x instead of ~13 eager passes.
"""
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def _tanh(z):
    # tanh(z) = sign(z) * (1 - e^{-2|z|}) / (1 + e^{-2|z|}): no overflow for large |z|
    t = tl.exp(-2.0 * tl.abs(z))
    mag = (1.0 - t) / (1.0 + t)
    return tl.where(z >= 0, mag, -mag)


@triton.jit
def scale_bias_relu_chain_kernel(
    x_ptr,        # *f32, (n_elements,) flattened contiguous input
    scale_ptr,    # *f32, (n_cols,) per-column scale
    bias_ptr,     # *f32, (n_cols,) per-column bias
    y_ptr,        # *f32, (n_elements,) output
    n_elements,   # batch * dim
    n_cols,       # dim, the broadcast length of scale and bias
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(axis=0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    cols = offs % n_cols
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    s = tl.load(scale_ptr + cols, mask=mask, other=0.0)
    b = tl.load(bias_ptr + cols, mask=mask, other=0.0)
    y = tl.maximum(x * s + b, 0.0) * x - 0.5
    tl.store(y_ptr + offs, _tanh(y), mask=mask)


def scale_bias_relu_chain(x, scale, bias):
    assert x.shape[-1] == scale.numel() == bias.numel()
    x = x.contiguous()
    y = torch.empty_like(x)
    n_elements = x.numel()
    BLOCK = 1024
    grid = (triton.cdiv(n_elements, BLOCK),)
    scale_bias_relu_chain_kernel[grid](x, scale, bias, y, n_elements, x.shape[-1], BLOCK=BLOCK, num_warps=4)
    return y


class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(dim))
        self.bias = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return scale_bias_relu_chain(x, self.scale, self.bias)
