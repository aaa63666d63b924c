"""Triton pointwise (1x1) convolution + bias + residual, NCHW fp32, as a per-image GEMM.

For image n: out[n] (C, H*W) = W (C, C) @ x[n] (C, H*W) + bias[:, None] + x[n].
Grid = (tiles of the (C, H*W) output, images). Each program accumulates fp32
tl.dot(input_precision="ieee") over input channels, then adds bias and the matching
tile of x before the only store.
"""
import torch
import torch.nn as nn
import triton
import triton.language as tl

BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M = 128, 128, 32, 8


@triton.jit
def conv1x1_residual_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr,  # x (N, C, H*W), w (C, C), bias (C,), out (N, C, H*W)
    C, P,  # channels (in == out), pixels per image
    stride_xn, stride_xc, stride_xp,  # x strides, in elements
    stride_wo, stride_wi,  # weight strides: output channel, input channel
    stride_on, stride_oc, stride_op,  # out strides
    BLOCK_M: tl.constexpr,  # output channels per program
    BLOCK_N: tl.constexpr,  # pixels per program
    BLOCK_K: tl.constexpr,  # input channels per reduction step
    GROUP_M: tl.constexpr,  # tile rows per L2-friendly group
):
    pid = tl.program_id(0)
    img = tl.program_id(1)
    num_pid_m = tl.cdiv(C, BLOCK_M)
    num_pid_n = tl.cdiv(P, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (pid // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # output channel
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # pixel
    offs_k = tl.arange(0, BLOCK_K)  # input channel within a step
    mask_m = offs_m < C
    mask_n = offs_n < P
    x_img = x_ptr + img * stride_xn
    w_ptrs = w_ptr + offs_m[:, None] * stride_wo + offs_k[None, :] * stride_wi
    x_ptrs = x_img + offs_k[:, None] * stride_xc + offs_n[None, :] * stride_xp
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, C, BLOCK_K):
        mask_k = offs_k < C - k
        w = tl.load(w_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        x = tl.load(x_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc = tl.dot(w, x, acc, input_precision="ieee")
        w_ptrs += BLOCK_K * stride_wi
        x_ptrs += BLOCK_K * stride_xc

    mask = mask_m[:, None] & mask_n[None, :]
    bias = tl.load(b_ptr + offs_m, mask=mask_m, other=0.0)
    residual = tl.load(x_img + offs_m[:, None] * stride_xc + offs_n[None, :] * stride_xp,
                       mask=mask, other=0.0)
    out = acc + bias[:, None] + residual
    out_ptrs = out_ptr + img * stride_on + offs_m[:, None] * stride_oc + offs_n[None, :] * stride_op
    tl.store(out_ptrs, out, mask=mask)


def conv1x1_residual(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    assert x.dim() == 4 and weight.shape == (x.shape[1], x.shape[1], 1, 1)
    assert x.dtype == weight.dtype == bias.dtype == torch.float32 and bias.is_contiguous()
    n, c, h, w = x.shape
    x3 = x.view(n, c, h * w)  # a view; needs H and W to be mergeable (true for NCHW)
    out = torch.empty_like(x3)
    w2 = weight.view(c, c)
    grid = (triton.cdiv(c, BLOCK_M) * triton.cdiv(h * w, BLOCK_N), n)
    conv1x1_residual_kernel[grid](
        x3, w2, bias, out, c, h * w,
        *x3.stride(), *w2.stride(), *out.stride(),
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, GROUP_M=GROUP_M,
        num_warps=8, num_stages=3,
    )
    return out.view(n, c, h, w)


class ModelNew(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return conv1x1_residual(x, self.conv.weight, self.conv.bias)
