"""avg_pool2d(hardswish(nn.Conv2d(Cin, Cout, 3, padding=1)(x)), 2) on an NCHW fp32 batch.

Full size: x (16, 64, 64, 64), weight (64, 64, 3, 3) -> conv out (16, 64, 64, 64) -> pooled
(16, 64, 32, 32). FLOPs: 2 * 16 * 64 * 64 * 64 * 64 * 9 = 4.8 GFLOP in fp32 (no TF32).
Eager writes the conv output, reads and writes it for hardswish, reads it for the pool; a
fused epilogue pools in registers and writes a quarter of it.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "conv_epilogue"
batch_size = 16
in_channels = 64
out_channels = 64
height = 64
width = 64
SMALL_SIZES = {"batch_size": 2, "in_channels": 5, "out_channels": 7, "height": 9, "width": 11}


class Model(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return F.avg_pool2d(F.hardswish(self.conv(x)), kernel_size=2)


def get_inputs():
    return [torch.randn(batch_size, in_channels, height, width)]


def get_init_inputs():
    return [in_channels, out_channels]
