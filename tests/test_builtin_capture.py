"""Capture (capture.py, torch_call.py): what a forward's calls become in the op graph —
torch expressions kept as written, max over a dim as amax/argmax, pools with PyTorch's
defaults, triplet-margin and cross-entropy losses as row programs and totals.

    pytest -q tests/test_builtin_capture.py
"""
import pytest
import torch

from agent.builtin import BuiltinPolicy
from agent.builtin.analysis import flops
from agent.builtin.capture import capture
from agent.builtin.partition import StageKind
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from agent.builtin.torch_call import torch_call
from tests.builtin_helpers import extra_problem
from tools.problems import load_problem
from tools.records import EvalStatus


def test_torch_call_renders_literals_and_refuses_what_has_no_source_form():
    class Padded(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.pad(x, (1, 2), value=float("-inf")).sum(dim=[0, 1]).to(torch.device("cpu"))

    pad, total, moved = [n for n in torch.fx.symbolic_trace(Padded()).graph.nodes
                         if n.op in ("call_function", "call_method")]
    assert torch_call(pad).render(["x"]) == "F.pad(x, (1, 2), mode='constant', value=float(\"-inf\"))"
    assert torch_call(total).refs == ("pad",) and torch_call(total).render(["p"]) == "p.sum(dim=[0, 1])"
    assert torch_call(moved) is None       # a torch.device object has no literal form


def test_max_over_a_dim_is_read_as_amax_and_argmax(tmp_path):
    problem = extra_problem(tmp_path, "max_indices")
    ops = [n.op for n in capture(problem).nodes]
    assert "argmax" in ops and "max" not in ops


def test_pools_are_captured_with_pytorch_defaults_and_counted_per_tap(tmp_path):
    problem = extra_problem(tmp_path, "maxpool_mish")
    pool = next(s for s in make_plan(problem).stages if s.kind is StageKind.POOL)
    assert pool.anchor.attrs == {"dims": 2, "kernel": (2, 2), "stride": (2, 2), "padding": (0, 0), "dilation": (1, 1),
                                 "ceil_mode": False, "count_include_pad": True, "divisor_override": None,
                                 "return_indices": False}
    assert [n.op for n in pool.body] == ["mish"] and pool.anchor.kept.render(["y"]) == "self.pool(y)"
    graph = capture(problem)
    assert flops(graph.node("pool"), graph) == 4 * graph.node("pool").numel


TRIPLET = '''import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, margin):
        super().__init__()
        self.loss_fn = nn.TripletMarginLoss(margin=margin)

    def forward(self, anchor, positive, negative):
        return self.loss_fn(anchor, positive, negative)


def get_inputs():
    return [torch.rand(37, 50) * 0.5, torch.rand(37, 50), torch.rand(37, 50)]


def get_init_inputs():
    return [0.5]
'''


def test_triplet_margin_loss_is_one_row_program_and_a_total(tmp_path, evaluator):
    """Both distances in one row program (the negative's terms join the positive's program,
    which loads the anchor's rows anyway), then the total."""
    path = tmp_path / "triplet.py"
    path.write_text(TRIPLET)
    problem = load_problem(path)
    plan = make_plan(problem)
    assert plan.error is None and [s.kind.value for s in plan.stages] == ["rows", "total"]
    result = evaluator.evaluate(problem, BuiltinPolicy().source(problem, Config()))
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


CROSS_ENTROPY = '''import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.loss = nn.CrossEntropyLoss(reduction="sum")

    def forward(self, logits, targets):
        return {forward}


def get_inputs():
    targets = torch.randint(0, 37, (29,))
    targets[::4] = -100     # the ignored class: no term, and not counted by the mean
    return [torch.randn(29, 37) * 3.0, targets]


def get_init_inputs():
    return []
'''


@pytest.mark.parametrize("forward", ["F.cross_entropy(logits, targets)", "self.loss(logits, targets)"])
def test_cross_entropy_is_a_row_program_and_two_totals(forward, tmp_path, evaluator):
    path = tmp_path / "cross_entropy.py"
    path.write_text(CROSS_ENTROPY.replace("{forward}", forward))
    problem = load_problem(path)
    plan = make_plan(problem)
    assert plan.error is None and [s.kind.value for s in plan.stages] == (
        ["view", "rows", "total", "total"] if forward.startswith("F.") else ["view", "rows", "total"])
    result = evaluator.evaluate(problem, BuiltinPolicy().source(problem, Config()))
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]
    weighted = tmp_path / "weighted.py"
    weighted.write_text(CROSS_ENTROPY.replace("{forward}", "F.cross_entropy(logits, targets, label_smoothing=0.1)"))
    assert "no op of this forward has a Triton plan" in make_plan(load_problem(weighted)).error   # kept in PyTorch
