"""Mean cross-entropy loss F.cross_entropy(logits, targets); 0-dim fp32 output.

logits (batch, num_classes) fp32, targets (batch,) int64. Full size 24576 x 16384
(402M logits, 1.5 GiB): eager runs log_softmax (read and write 1.5 GiB) then a gather
and mean (~3.2 GB moved, ~1.4 ms on an H100); fused it is one 1.5 GiB read.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "loss"
batch_size = 24576
num_classes = 16384
SMALL_SIZES = {"batch_size": 7, "num_classes": 300}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, logits, targets):
        return F.cross_entropy(logits, targets)


def get_inputs():
    logits = torch.randn(batch_size, num_classes)
    targets = torch.randint(0, num_classes, (batch_size,))
    return [logits, targets]


def get_init_inputs():
    return []
