"""The exact rewrites and folds (rewrite.py, fold.py, fold_conv.py): a diagonal product
becomes a row scaling, and a fold takes only the linear reductions it can read exactly.

    pytest -q tests/test_builtin_rewrite.py
"""
import pytest

from agent.builtin import BuiltinPolicy
from agent.builtin.partition import StageKind
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from tests.builtin_helpers import extra_problem
from tools.problems import load_problem
from tools.records import EvalStatus


DIAG_PROBLEM = '''"""diag(A) @ B (KernelBench level 1 problem 12's shape of work)."""
import torch
import torch.nn as nn

OP_CATEGORY = "matmul"
N = 4096
M = 4096
SMALL_SIZES = {"N": 37, "M": 45}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A, B):
        return torch.diag(A) @ B


def get_inputs():
    return [torch.rand(N), torch.rand(N, M)]


def get_init_inputs():
    return []
'''


def test_diagonal_product_becomes_a_row_scaling(tmp_path, evaluator):
    path = tmp_path / "diag_matmul.py"
    path.write_text(DIAG_PROBLEM)
    problem = load_problem(path, size="small")
    plan = make_plan(problem)
    assert [s.kind for s in plan.stages] == [StageKind.VIEW, StageKind.POINTWISE] and plan.notes
    assert "tl.dot" not in BuiltinPolicy().source(problem, Config())
    assert evaluator.evaluate(problem, BuiltinPolicy().source(problem, Config())).status is EvalStatus.CORRECT


@pytest.mark.parametrize("forward, layers", [
    ("y = self.linear(x)\n        return y.sum(1, keepdim=True) + y", "pass"),             # G is used again
    ("return (self.linear(x) * self.v).sum(1)", "self.v = nn.Parameter(torch.randn(b))"),  # per-column scale
    ("return torch.relu(self.linear(x)).sum(1)", "pass"),                                  # not linear
    ("return (self.linear(x) / 0.0).sum(1)", "pass"),                                      # infinities
    ("return (2.0 / self.linear(x)).sum(1)", "pass"),                                      # c / G
    ("return self.linear(x).sum(0)", "pass"),                                              # over the rows
    ("return self.pool(self.linear(x).unsqueeze(1)).squeeze(1)", "self.pool = nn.AvgPool1d(4, 2)"),  # overlaps
    ("return self.pool(self.linear(x).unsqueeze(1)).squeeze(1)", "self.pool = nn.AvgPool1d(7)"),  # 24 % 7 != 0
    ("return self.pool(self.linear(x).unsqueeze(1)).squeeze(1)", "self.pool = nn.MaxPool1d(4)"),
])
def test_gemm_folds_take_only_linear_reductions_of_the_output_features(forward, layers, tmp_path):
    layers = "self.linear = nn.Linear(a, b)" + ("" if layers == "pass" else "\n        " + layers)
    problem = extra_problem(tmp_path, "no_fold", (forward, "torch.randn(9, 40)", "40, 24", None, layers))
    plan = make_plan(problem)
    assert plan.error is None and StageKind.MATMUL in [s.kind for s in plan.stages]
    assert not [note for note in plan.notes if "output features" in note]


@pytest.mark.parametrize("forward, layer", [
    ("return self.conv(x).mean(dim=(2, 3))", "nn.Conv2d(a, b, 3, groups=3)"),                 # grouped
    ("return torch.relu(self.conv(x)).mean(dim=(2, 3))", "nn.Conv2d(a, b, 3)"),               # not linear
    ("return self.conv(x).mean(dim=3)", "nn.Conv2d(a, b, 3)"),                        # the last dim, not the first
    ("return self.conv(x).mean(dim=(1, 2, 3))", "nn.Conv2d(a, b, 3)"),                       # over the channels too
    ("y = self.conv(x)\n        return y.mean(dim=(2, 3), keepdim=True) * y", "nn.Conv2d(a, b, 3)"),  # used again
    ("return (self.conv(x) * x.mean()).mean(dim=(2, 3))", "nn.Conv2d(a, b, 3, padding=1)"),  # a tensor scale
])
def test_conv_folds_take_only_linear_means_over_positions(forward, layer, tmp_path):
    spec = (forward, "torch.randn(2, 3, 9, 8)", "3, 6", None, f"self.conv = {layer}")
    problem = extra_problem(tmp_path, "no_fold", spec)
    plan = make_plan(problem)
    assert plan.error is None and StageKind.CONV in [s.kind for s in plan.stages]
    assert not [note for note in plan.notes if "never written" in note]


@pytest.mark.parametrize("forward, layers", [
    ("return F.conv2d(x, self.w, self.b, 2, 1).mean((2, 3))", "conv"),           # settings by position
    ("return F.conv2d(x, self.w, bias=self.b, stride=2).mean((2, 3))", "conv"),   # a keyword bias
    ("return torch.add(self.conv(x), 1.0, alpha=3.0).mean((2, 3))", "module"),    # alpha scales the added value
    ("return torch.div(self.conv(x), 2.0, rounding_mode='floor').mean((2, 3))", "module"),   # not affine
    ("return self.conv(x).mean((2, 3), dtype=torch.float64)", "module"),
    ("return self.linear(x.flatten(1)).sum(1, dtype=torch.float64)", "linear"),
    ("return torch.sub(self.linear(x.flatten(1)), self.v, alpha=2.0).sum(1)", "linear"),
])
def test_folds_refuse_what_they_cannot_read_exactly(forward, layers, tmp_path):
    layers = {"conv": "self.w = nn.Parameter(torch.randn(b, a, 3, 3))\n        self.b = nn.Parameter(torch.randn(b))",
              "module": "self.conv = nn.Conv2d(a, b, 3)",
              "linear": "self.linear = nn.Linear(a * 90, b)\n        self.v = nn.Parameter(torch.randn(b))"}[layers]
    problem = extra_problem(tmp_path, "no_fold", (forward, "torch.randn(2, 3, 9, 10)", "3, 6", None, layers))
    assert not [note for note in make_plan(problem).notes if "never written" in note or "output features" in note]
