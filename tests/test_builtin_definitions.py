"""Common ops written out as their definitions (definitions.py): F.normalize, clamp_min,
clamp_max and F.cosine_similarity over the last dim become row programs and elementwise
steps, checked by the evaluator in the Triton interpreter; a clamp with tensor bounds is
a maximum and a minimum (its kernel used to drop them); over another dim the op stays in
PyTorch and the analysis says why.

    pytest -q tests/test_builtin_definitions.py
"""
import json

import pytest

from agent.builtin import BuiltinPolicy
from agent.builtin.partition import StageKind
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from tests.builtin_helpers import extra_problem, first_turn
from tools.records import EvalStatus

CASES = {   # forward, inputs, the stages it plans
    # all three of the ops in one forward: normalize's row program, then one program for the rest
    "normalize_clamp_min_cosine": ("a = F.normalize(x, dim=-1)\n        b = torch.clamp_min(x.flip(0), 0.1)\n        "
                                   "return F.cosine_similarity(a, b, dim=-1) * 2.0",
                                   "torch.randn(6, 37)", ["rows", "torch", "rows"]),
    # F.normalize's own defaults (p=2, dim=1) on a matrix, as a method chain with clamp_max and clamp_min
    "normalize_defaults_clamps": ("return F.normalize(x).clamp_max(0.3) - x.clamp_min(-0.2)", "torch.randn(5, 40)",
                                  ["rows"]),
    # clamp with tensor bounds: a maximum and a minimum
    "clamp_tensor_bounds": ("return torch.clamp(x, min=x.flip(0) - 0.5, max=x.flip(1) + 0.5) * 2.0",
                            "torch.randn(6, 37)", ["torch", "torch", "pointwise"]),
}


def problem(tmp_path, name: str, forward: str, inputs: str):
    return extra_problem(tmp_path, name, (forward, inputs, "0, 0", None, "pass"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_written_out_ops_plan_into_kernels_the_evaluator_marks_correct(name, tmp_path, evaluator):
    forward, inputs, kinds = CASES[name]
    made = problem(tmp_path, name, forward, inputs)
    plan = make_plan(made)
    assert plan.error is None and [s.kind.value for s in plan.stages] == kinds
    ops = {n.op for n in plan.graph.nodes}
    assert not ops & {"normalize", "cosine_similarity", "clamp_min", "clamp_max"}
    result = evaluator.evaluate(made, BuiltinPolicy().source(made, Config()))
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


def test_the_cosine_similarity_is_one_row_program_reading_each_operand_once(tmp_path):
    made = problem(tmp_path, "cosine", "return F.cosine_similarity(x, x * 2.0 - 1.0, dim=-1)", "torch.randn(6, 37)")
    plan = make_plan(made)
    assert [s.kind for s in plan.stages] == [StageKind.ROWS]
    assert "F.cosine_similarity as its definition" in " ".join(plan.notes)


def test_over_another_dim_the_op_stays_in_pytorch_and_the_analysis_says_why(tmp_path):
    made = problem(tmp_path, "channels", "return torch.relu(F.normalize(x, dim=1)) * 2.0", "torch.randn(2, 6, 3, 5)")
    plan = make_plan(made)
    assert [s.kind for s in plan.stages] == [StageKind.TORCH]
    turn = first_turn(BuiltinPolicy(), made)
    assert "`normalize`: F.normalize over dim 1 of a rank-4 tensor (the row program takes the last dim)" in turn.text
    assert "normalize = F.normalize(x, p=2.0, dim=1, eps=1e-12, out=None)  # kept in PyTorch" in \
        json.loads(turn.tool_calls[0].arguments)["code"]
