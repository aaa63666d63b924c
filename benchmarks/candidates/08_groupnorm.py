"""Triton candidate for 08_groupnorm: a statistics kernel, then a wide normalising kernel.

Stage 1: one program per (sample, group) sweeps the group's contiguous slice twice
(mean, then sum of squared deviations) and stores mean and rstd. Stage 2: a 2-D grid
over (sample*channel, HW blocks) writes (x - mean) * rstd * w[c] + b[c].
"""
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def groupnorm_stats_kernel(
    x_ptr,        # *f32, (N, C, H, W) contiguous input; each (n, g) slice is contiguous
    mean_ptr,     # *f32, (N * G,) output group means
    rstd_ptr,     # *f32, (N * G,) output group 1/sqrt(var + eps)
    group_size,   # (C // G) * H * W elements per slice
    eps,          # added to the variance
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(axis=0)
    x_grp = x_ptr + pid.to(tl.int64) * group_size
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, group_size, BLOCK):
        acc += tl.load(x_grp + start + offs, mask=start + offs < group_size, other=0.0)
    mean = tl.sum(acc, axis=0) / group_size
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, group_size, BLOCK):
        mask = start + offs < group_size
        x = tl.load(x_grp + start + offs, mask=mask, other=0.0)
        d = tl.where(mask, x - mean, 0.0)
        acc += d * d
    rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / group_size + eps)
    tl.store(mean_ptr + pid, mean)
    tl.store(rstd_ptr + pid, rstd)


@triton.jit
def groupnorm_apply_kernel(
    x_ptr,        # *f32, (N, C, H, W) contiguous input
    y_ptr,        # *f32, (N, C, H, W) contiguous output
    w_ptr,        # *f32, (C,) per-channel weight
    b_ptr,        # *f32, (C,) per-channel bias
    mean_ptr,     # *f32, (N * G,) group means from stage 1
    rstd_ptr,     # *f32, (N * G,) group rstd from stage 1
    C,            # channels
    HW,           # H * W, elements per channel plane
    CH_PER_GROUP, # C // G
    BLOCK: tl.constexpr,
):
    pid_nc = tl.program_id(axis=0)   # one (sample, channel) plane
    pid_hw = tl.program_id(axis=1)   # one BLOCK-wide piece of that plane
    c = pid_nc % C
    stat = (pid_nc // C) * (C // CH_PER_GROUP) + c // CH_PER_GROUP
    mean = tl.load(mean_ptr + stat)
    rstd = tl.load(rstd_ptr + stat)
    scale = tl.load(w_ptr + c) * rstd
    shift = tl.load(b_ptr + c) - mean * scale
    offs = pid_hw * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    plane = pid_nc.to(tl.int64) * HW
    x = tl.load(x_ptr + plane + offs, mask=mask, other=0.0)
    tl.store(y_ptr + plane + offs, x * scale + shift, mask=mask)


def groupnorm(x, num_groups, weight, bias, eps):
    n, c = x.shape[0], x.shape[1]
    assert c % num_groups == 0 and weight.numel() == c
    x = x.contiguous()
    hw = x.numel() // (n * c)
    mean = torch.empty(n * num_groups, dtype=torch.float32, device=x.device)
    rstd = torch.empty_like(mean)
    y = torch.empty_like(x)
    group_size = (c // num_groups) * hw
    STATS_BLOCK = min(triton.next_power_of_2(group_size), 8192)  # 8192 / 16 warps: best measured on an H100
    groupnorm_stats_kernel[(n * num_groups,)](x, mean, rstd, group_size, eps, BLOCK=STATS_BLOCK, num_warps=16)
    BLOCK = 1024
    grid = (n * c, triton.cdiv(hw, BLOCK))
    groupnorm_apply_kernel[grid](
        x, y, weight, bias, mean, rstd, c, hw, c // num_groups,
        BLOCK=BLOCK, num_warps=4,
    )
    return y


class ModelNew(nn.Module):
    def __init__(self, num_features, num_groups):
        super().__init__()
        self.gn = nn.GroupNorm(num_groups=num_groups, num_channels=num_features)

    def forward(self, x):
        return groupnorm(x, self.gn.num_groups, self.gn.weight, self.gn.bias, self.gn.eps)
