"""Multiplies with a Triton dot in TF32 precision on an fp32 problem (precision downgrade)."""
# expect: incorrect|correct
# reason-incorrect: elements outside atol
# flags: precision_policy
# problem: 14_matmul_square
# gpu-only: yes
import torch
import torch.nn as nn
import triton
import triton.language as tl



@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, N, BLOCK: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    offs_m = pid_m * BLOCK + tl.arange(0, BLOCK)
    offs_n = pid_n * BLOCK + tl.arange(0, BLOCK)
    offs_k = tl.arange(0, BLOCK)
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for k in range(0, N, BLOCK):
        a = tl.load(a_ptr + offs_m[:, None] * N + (k + offs_k)[None, :],
                    mask=(offs_m[:, None] < N) & ((k + offs_k)[None, :] < N), other=0.0)
        b = tl.load(b_ptr + (k + offs_k)[:, None] * N + offs_n[None, :],
                    mask=((k + offs_k)[:, None] < N) & (offs_n[None, :] < N), other=0.0)
        acc += tl.dot(a, b, input_precision="tf32")
    tl.store(c_ptr + offs_m[:, None] * N + offs_n[None, :], acc, mask=(offs_m[:, None] < N) & (offs_n[None, :] < N))


class ModelNew(nn.Module):
    def forward(self, a, b):
        n = a.shape[0]
        c = torch.empty_like(a)
        matmul_kernel[(triton.cdiv(n, 64), triton.cdiv(n, 64))](a.contiguous(), b.contiguous(), c, n, BLOCK=64)
        return c
