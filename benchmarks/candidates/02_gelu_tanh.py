"""Triton candidate for 02_gelu_tanh: tanh-approximate GELU in one elementwise kernel.

Each program handles BLOCK contiguous elements; the polynomial and tanh are
computed in registers, so x is read once and y written once (vs ~18 eager passes).
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
def gelu_tanh_kernel(
    x_ptr,        # *f32, (n_elements,) flattened contiguous input
    y_ptr,        # *f32, (n_elements,) output
    n_elements,   # total element count
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(axis=0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)  # sqrt(2/pi) * (...)
    y = 0.5 * x * (1.0 + _tanh(inner))
    tl.store(y_ptr + offs, y, mask=mask)


def gelu_tanh(x):
    x = x.contiguous()
    y = torch.empty_like(x)
    n_elements = x.numel()
    BLOCK = 1024
    grid = (triton.cdiv(n_elements, BLOCK),)
    gelu_tanh_kernel[grid](x, y, n_elements, BLOCK=BLOCK, num_warps=4)
    return y


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return gelu_tanh(x)
