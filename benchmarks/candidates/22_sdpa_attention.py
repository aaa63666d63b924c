"""Triton flash-attention forward for non-causal SDPA on (B, H, S, D) fp32.

One program per (BLOCK_M queries, batch*head). It streams BLOCK_N keys and values at a
time, keeping a running row max m_i and normaliser l_i (online softmax with max
subtraction), so the S x S score matrix never leaves registers. Both dots are fp32
tl.dot(input_precision="ieee"); keys past S are masked to -inf.
"""
import math

import torch
import torch.nn as nn
import triton
import triton.language as tl

BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES = 64, 64, 4, 2


@triton.jit
def attention_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr,  # (B, H, S, D) fp32, all with the same strides
    stride_b, stride_h, stride_s, stride_d,  # shared strides, in elements
    H, S,  # heads, sequence length
    sm_scale,  # 1 / sqrt(D)
    HEAD_DIM: tl.constexpr,  # D, a power of two
    BLOCK_M: tl.constexpr,  # queries per program
    BLOCK_N: tl.constexpr,  # keys per step
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    base = (pid_bh // H) * stride_b + (pid_bh % H) * stride_h
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_m = offs_m < S
    q = tl.load(q_ptr + base + offs_m[:, None] * stride_s + offs_d[None, :] * stride_d,
                mask=mask_m[:, None], other=0.0)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)  # running row max
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)  # running softmax denominator
    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
    for start_n in range(0, S, BLOCK_N):
        keys = start_n + offs_n
        mask_n = keys < S
        kt = tl.load(k_ptr + base + keys[None, :] * stride_s + offs_d[:, None] * stride_d,
                     mask=mask_n[None, :], other=0.0)  # K^T tile (D, BLOCK_N)
        v = tl.load(v_ptr + base + keys[:, None] * stride_s + offs_d[None, :] * stride_d,
                    mask=mask_n[:, None], other=0.0)
        qk = tl.dot(q, kt, input_precision="ieee") * sm_scale
        qk = tl.where(mask_n[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, axis=1))
        p = tl.exp(qk - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = tl.dot(p, v, acc * alpha[:, None], input_precision="ieee")
        m_i = m_new

    out = acc / l_i[:, None]
    tl.store(o_ptr + base + offs_m[:, None] * stride_s + offs_d[None, :] * stride_d,
             out, mask=mask_m[:, None])


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    assert q.dim() == 4 and q.shape == k.shape == v.shape
    assert q.stride() == k.stride() == v.stride() and q.dtype == torch.float32
    batch, heads, seq, head_dim = q.shape
    assert head_dim >= 16 and head_dim & (head_dim - 1) == 0, "head_dim must be a power of 2"
    out = torch.empty_like(q)
    assert out.stride() == q.stride()
    grid = (triton.cdiv(seq, BLOCK_M), batch * heads)
    attention_kernel[grid](
        q, k, v, out, *q.stride(), heads, seq, 1.0 / math.sqrt(head_dim),
        HEAD_DIM=head_dim, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
        num_warps=NUM_WARPS, num_stages=NUM_STAGES,
    )
    return out


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, q, k, v):
        return attention(q, k, v)
