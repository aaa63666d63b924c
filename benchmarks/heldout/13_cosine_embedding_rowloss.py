"""Per-pair cosine embedding loss: for rows a_i, b_i of two (batch, dim) fp32 matrices and a
int64 label y_i in {1, -1}, loss_i = 1 - cos(a_i, b_i) if y_i = 1, else max(0, cos(a_i, b_i) - margin).

The output is (batch,): one loss per pair, not their mean (a mean over thousands of pairs
barely depends on the inputs). Full size 4096 x 1024 (2 x 16 MiB): eager runs a dozen
small kernels (cosine similarity's norms and dot, the two branches, the select); fused
it is one read of both matrices.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

OP_CATEGORY = "loss"
batch_size = 4096
dim = 1024
margin = 0.2
SMALL_SIZES = {"batch_size": 7, "dim": 300}


class Model(nn.Module):
    def __init__(self, margin):
        super().__init__()
        self.margin = margin

    def forward(self, a, b, labels):
        return F.cosine_embedding_loss(a, b, labels, margin=self.margin, reduction="none")


def get_inputs():
    labels = torch.randint(0, 2, (batch_size,)) * 2 - 1      # int64, so every trial keeps it in {1, -1}
    return [torch.randn(batch_size, dim), torch.randn(batch_size, dim), labels]


def get_init_inputs():
    return [margin]
