"""Spatial gate after a convolution: c = nn.Conv2d(Cin, Cout, 3, padding=1)(x), then
y = c * sigmoid(mean(c, dim=1, keepdim=True)): each pixel scaled by a gate computed from
the mean over its channels (a reduction over dim 1, broadcast back).

Full size: x (8, 32, 56, 56), weight (64, 32, 3, 3) -> out (8, 64, 56, 56). FLOPs:
2 * 8 * 64 * 56 * 56 * 32 * 9 = 0.92 GFLOP in fp32 (no TF32). Eager runs the conv, a
channel mean, a sigmoid and a broadcast multiply (the conv output read twice).
"""
import torch
import torch.nn as nn

OP_CATEGORY = "conv_epilogue"
batch_size = 8
in_channels = 32
out_channels = 64
height = 56
width = 56
SMALL_SIZES = {"batch_size": 2, "in_channels": 5, "out_channels": 7, "height": 9, "width": 11}


class Model(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        c = self.conv(x)
        return c * torch.sigmoid(c.mean(dim=1, keepdim=True))


def get_inputs():
    return [torch.randn(batch_size, in_channels, height, width)]


def get_init_inputs():
    return [in_channels, out_channels]
