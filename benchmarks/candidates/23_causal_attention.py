"""Triton causal flash-attention forward on (B, H, S, D) fp32.

One program per (BLOCK_M queries, batch*head), in two phases as in the Triton tutorial:
key blocks wholly below the diagonal need no mask, then the diagonal blocks mask keys
above it (and past S) to -inf; blocks above the diagonal are never visited. A running
row max and normaliser (online softmax) keep the S x S scores out of memory, and both
dots are fp32 tl.dot(input_precision="ieee").
"""
import math

import torch
import torch.nn as nn
import triton
import triton.language as tl

BLOCK_M, BLOCK_N, NUM_WARPS, NUM_STAGES = 64, 64, 4, 2


@triton.jit
def attend_keys(
    acc, m_i, l_i,  # running output (BLOCK_M, D), row max and normaliser (BLOCK_M,)
    q, offs_m,  # this program's queries (BLOCK_M, D) and their positions
    k_ptr, v_ptr,  # K and V of this (batch, head)
    start_n, S, stride_s, stride_d, sm_scale,  # first key of the block, length, strides, scale
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
    DIAGONAL: tl.constexpr,  # mask keys after the query (and past S)
):
    keys = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_n = keys < S
    kt = tl.load(k_ptr + keys[None, :] * stride_s + offs_d[:, None] * stride_d,
                 mask=mask_n[None, :], other=0.0)  # K^T tile (D, BLOCK_N)
    v = tl.load(v_ptr + keys[:, None] * stride_s + offs_d[None, :] * stride_d,
                mask=mask_n[:, None], other=0.0)
    qk = tl.dot(q, kt, input_precision="ieee") * sm_scale
    if DIAGONAL:
        visible = mask_n[None, :] & (keys[None, :] <= offs_m[:, None])
        qk = tl.where(visible, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, axis=1))
    p = tl.exp(qk - m_new[:, None])
    alpha = tl.exp(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = tl.dot(p, v, acc * alpha[:, None], input_precision="ieee")
    return acc, m_new, l_i


@triton.jit
def causal_attention_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr,  # (B, H, S, D) fp32, all with the same strides
    stride_b, stride_h, stride_s, stride_d,  # shared strides, in elements
    H, S,  # heads, sequence length
    sm_scale,  # 1 / sqrt(D)
    HEAD_DIM: tl.constexpr,  # D, a power of two
    BLOCK_M: tl.constexpr,  # queries per program, a multiple of BLOCK_N
    BLOCK_N: tl.constexpr,  # keys per step
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    base = (pid_bh // H) * stride_b + (pid_bh % H) * stride_h
    start_m = pid_m * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    mask_m = offs_m < S
    q = tl.load(q_ptr + base + offs_m[:, None] * stride_s + offs_d[None, :] * stride_d,
                mask=mask_m[:, None], other=0.0)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)  # running row max
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)  # running softmax denominator
    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
    for start_n in range(0, start_m, BLOCK_N):  # keys before every query of the block
        acc, m_i, l_i = attend_keys(acc, m_i, l_i, q, offs_m, k_ptr + base, v_ptr + base,
                                    start_n, S, stride_s, stride_d, sm_scale,
                                    HEAD_DIM, BLOCK_N, False)
    for start_n in range(start_m, tl.minimum(start_m + BLOCK_M, S), BLOCK_N):  # diagonal
        acc, m_i, l_i = attend_keys(acc, m_i, l_i, q, offs_m, k_ptr + base, v_ptr + base,
                                    start_n, S, stride_s, stride_d, sm_scale,
                                    HEAD_DIM, BLOCK_N, True)

    out = acc / l_i[:, None]
    tl.store(o_ptr + base + offs_m[:, None] * stride_s + offs_d[None, :] * stride_d,
             out, mask=mask_m[:, None])


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    assert q.dim() == 4 and q.shape == k.shape == v.shape
    assert q.stride() == k.stride() == v.stride() and q.dtype == torch.float32
    batch, heads, seq, head_dim = q.shape
    assert head_dim >= 16 and head_dim & (head_dim - 1) == 0, "head_dim must be a power of 2"
    assert BLOCK_M % BLOCK_N == 0
    out = torch.empty_like(q)
    assert out.stride() == q.stride()
    grid = (triton.cdiv(seq, BLOCK_M), batch * heads)
    causal_attention_kernel[grid](
        q, k, v, out, *q.stride(), heads, seq, 1.0 / math.sqrt(head_dim),
        HEAD_DIM=head_dim, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N,
        num_warps=NUM_WARPS, num_stages=NUM_STAGES,
    )
    return out


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, q, k, v):
        return causal_attention(q, k, v)
