"""The whole residual MLP stack in one Triton kernel: one program per BLOCK_M rows.

Each program keeps its rows' activation x in registers and loops over the layers:
y = x @ W_l.T (fp32 tl.dot, input_precision="ieee", K in BLOCK_K steps read back from
`out`, which doubles as the program's scratch), then bias, erf-GELU, residual and the
row LayerNorm in registers, and stores x for the next layer. One launch replaces the
four eager kernels per layer; the per-layer parameters are stacked once per forward.
"""
import torch
import torch.nn as nn
import triton
import triton.language as tl

BLOCK_M, BLOCK_K, NUM_WARPS = 16, 32, 4


@triton.jit
def mlp_stack_kernel(
    x_ptr, out_ptr,  # input and output (M, HID), contiguous; out holds each layer's x
    w_ptr, b_ptr,  # stacked Linear weights (L, HID, HID) and biases (L, HID)
    g_ptr, beta_ptr,  # stacked LayerNorm weights and biases (L, HID)
    M, HID, L,  # rows, hidden size, layers
    eps,  # LayerNorm epsilon
    BLOCK_M: tl.constexpr,  # rows per program
    BLOCK_H: tl.constexpr,  # next power of two >= HID
    BLOCK_K: tl.constexpr,  # reduction step of the matmul
):
    pid_m = tl.program_id(0)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_h = tl.arange(0, BLOCK_H)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_h = offs_h < HID
    rows = offs_m[:, None] * HID
    mask = mask_m[:, None] & mask_h[None, :]
    x = tl.load(x_ptr + rows + offs_h[None, :], mask=mask, other=0.0)
    tl.store(out_ptr + rows + offs_h[None, :], x, mask=mask)
    tl.debug_barrier()  # this program's threads read each other's rows below

    for layer in range(L):
        w_layer = w_ptr + layer * HID * HID
        acc = tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32)
        for k in range(0, HID, BLOCK_K):
            mask_k = offs_k < HID - k
            a = tl.load(out_ptr + rows + (k + offs_k)[None, :],
                        mask=mask_m[:, None] & mask_k[None, :], other=0.0)
            wt = tl.load(w_layer + offs_h[None, :] * HID + (k + offs_k)[:, None],
                         mask=mask_k[:, None] & mask_h[None, :], other=0.0)  # W.T tile
            acc = tl.dot(a, wt, acc, input_precision="ieee")
        bias = tl.load(b_ptr + layer * HID + offs_h, mask=mask_h, other=0.0)
        y = acc + bias[None, :]
        y = x + 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))

        mean = tl.sum(y, axis=1) / HID
        diff = tl.where(mask_h[None, :], y - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(diff * diff, axis=1) / HID + eps)
        gamma = tl.load(g_ptr + layer * HID + offs_h, mask=mask_h, other=0.0)
        beta = tl.load(beta_ptr + layer * HID + offs_h, mask=mask_h, other=0.0)
        x = diff * rstd[:, None] * gamma[None, :] + beta[None, :]
        tl.debug_barrier()  # every thread is done reading this layer's input
        tl.store(out_ptr + rows + offs_h[None, :], x, mask=mask)
        tl.debug_barrier()  # the new rows are visible before the next layer reads them


def mlp_stack(x, weights, biases, gammas, betas, eps: float) -> torch.Tensor:
    assert x.dim() == 2 and x.is_contiguous() and x.dtype == torch.float32
    num_layers, hidden, _ = weights.shape
    assert x.shape[1] == hidden and num_layers >= 1
    out = torch.empty_like(x)
    grid = (triton.cdiv(x.shape[0], BLOCK_M),)
    mlp_stack_kernel[grid](
        x, out, weights, biases, gammas, betas, x.shape[0], hidden, num_layers, eps,
        BLOCK_M=BLOCK_M, BLOCK_H=triton.next_power_of_2(hidden), BLOCK_K=BLOCK_K,
        num_warps=NUM_WARPS, num_stages=2,
    )
    return out


class ModelNew(nn.Module):
    def __init__(self, hidden, num_layers):
        super().__init__()
        self.linears = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(num_layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(num_layers)])

    def forward(self, x):
        # torch.stack only copies parameters into one (L, ...) buffer for the kernel.
        weights = torch.stack([linear.weight for linear in self.linears])
        biases = torch.stack([linear.bias for linear in self.linears])
        gammas = torch.stack([norm.weight for norm in self.norms])
        betas = torch.stack([norm.bias for norm in self.norms])
        return mlp_stack(x, weights, biases, gammas, betas, self.norms[0].eps)
