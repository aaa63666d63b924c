"""The built-in policy end to end on CPU (Triton interpreter): every suite problem in the
supported categories gets a kernel the evaluator marks correct, every turn opens with the
analysis, unsupported forwards are reported plainly, a session driven through a real
Toolbox and SQLite store ends with an accepted submit, and the policy is deterministic.

    pytest -q tests/test_builtin_policy.py
"""
import json

import pytest

from agent.builtin import BuiltinPolicy
from agent.builtin.partition import StageKind
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from agent.policy import Attempt, Backend, TurnInput, has_analysis
from tests.builtin_helpers import extra_problem, first_turn, small
from tests.conftest import PROBLEMS
from tools.device import detect
from tools.history import HistoryStore, Origin
from tools.problems import load_problem
from tools.records import EvalStatus
from tools.toolbox import Toolbox


# problem -> the stage families its plan uses (attention is not built in)
SUPPORTED = {
    "01_scale_bias_relu_chain": {"pointwise"}, "02_gelu_tanh": {"pointwise"}, "03_silu_hardtanh": {"pointwise"},
    "04_softmax_rows": {"rows"}, "05_log_softmax_rows": {"rows"}, "06_layernorm": {"rows"}, "07_rmsnorm": {"rows"},
    "08_groupnorm": {"group_norm"}, "09_sum_reduction": {"reduce"}, "10_argmax_dim": {"reduce"},
    "11_cumsum": {"rows"}, "13_smooth_l1_loss": {"rows"}, "14_matmul_square": {"matmul"},
    "15_matmul_transposed_b": {"view", "matmul"}, "16_batched_matmul": {"matmul"}, "17_matvec": {"view", "rows"},
    "18_linear_bias_relu": {"matmul"}, "19_linear_gelu_scale": {"matmul"}, "20_conv2d_bias_relu": {"conv"},
    "21_conv1x1_residual": {"conv"}, "24_tiny_mlp": {"matmul", "rows"},
    "12_cross_entropy_loss": {"view", "rows", "total"},
    # captured by torch.export (sizes as Python numbers); the mask is built on the inputs' device
    "23_causal_attention": {"view", "matmul", "pointwise", "torch", "rows"},
    "22_sdpa_attention": {"view", "matmul", "rows"},    # attention as its definition (rewrite.py)
}


UNSUPPORTED = {  # forward, inputs, what the analysis must name
    "causal_sdpa": ("return F.scaled_dot_product_attention(x, x, x, is_causal=True)", "torch.rand(2, 5, 8)",
                    "no op of this forward has a Triton plan"),
}


LONE_FLIP = ("return torch.flip(x, dims=(1,))", "torch.rand(2, 3, 8, 8)", "0, 0", None, "pass")


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_emitted_kernel_is_correct_in_the_interpreter(name, evaluator):
    problem = small(name)
    plan = make_plan(problem)
    assert plan.error is None
    assert {s.kind.value for s in plan.stages} == SUPPORTED[name]
    source = BuiltinPolicy().source(problem, Config())
    assert "@triton.jit" in source and "class ModelNew(nn.Module)" in source
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]
    assert "no_custom_kernel" not in [f.value for f in result.flags]


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_problems_are_reported_plainly(name, tmp_path):
    forward, inputs, reason = UNSUPPORTED[name]
    turn = first_turn(BuiltinPolicy(), extra_problem(tmp_path, name, (forward, inputs, "0, 0", None, "pass")))
    assert has_analysis(turn.text) and not turn.tool_calls
    assert "Not supported by the built-in plans" in turn.text and reason in turn.text


def test_every_suite_problem_is_supported():
    assert sorted(SUPPORTED) == sorted(path.stem for path in PROBLEMS.glob("*.py"))


@pytest.mark.parametrize("name", sorted(PROBLEMS.glob("*.py")), ids=lambda p: p.stem)
def test_every_turn_opens_with_the_analysis_and_benchmarks_a_kernel(name):
    turn = first_turn(BuiltinPolicy(), load_problem(name, size="small"))
    assert has_analysis(turn.text)
    assert "Roofline: no GPU here" in turn.text and "Op graph" in turn.text
    assert [call.name for call in turn.tool_calls] == ["benchmark"]
    assert "class ModelNew" in json.loads(turn.tool_calls[0].arguments)["code"]


def test_a_forward_with_nothing_for_triton_gets_no_kernel(tmp_path):
    turn = first_turn(BuiltinPolicy(), extra_problem(tmp_path, "lone_flip", LONE_FLIP))
    assert not turn.tool_calls and "no op of this forward has a Triton plan" in turn.text


def test_ops_kept_in_pytorch_are_written_as_the_reference_wrote_them_and_named(tmp_path):
    problem = extra_problem(tmp_path, "gemm_batchnorm_relu")     # batch norm over (N, C): strided channels
    kept = [s.anchor for s in make_plan(problem).stages if s.kind is StageKind.TORCH]
    assert [n.kept.render(["y"]) for n in kept] == ["self.bn(y)"]
    assert "bn = self.bn(linear)  # kept in PyTorch" in BuiltinPolicy().source(problem, Config())
    turn = first_turn(BuiltinPolicy(), problem)
    assert "Kept in PyTorch as the reference wrote them (no Triton plan): `bn` (self.bn)" in turn.text


def drive(policy, toolbox, problem, device, max_turns=6):
    """The agent's loop in miniature: run each turn's tool calls through the Toolbox."""
    attempts, turns = [], []
    for index in range(max_turns):
        turn = policy.turn(TurnInput(problem, Backend.TRITON, device, [], Toolbox.schemas(), list(attempts), index))
        turns.append(turn)
        assert has_analysis(turn.text)
        if not turn.tool_calls:
            return turns, attempts
        for call in turn.tool_calls:
            report = toolbox.call(call.name, json.loads(call.arguments))
            r = report.result
            attempts.append(Attempt(index, call.name, report.evaluation_id, json.loads(call.arguments)["code"],
                                    r.status, r.runtime_ms, r.speedup_vs_eager, r.speedup_vs_compile,
                                    tuple(f.value for f in r.flags), r.reason))
    raise AssertionError("the policy did not stop")


def test_session_through_a_real_toolbox_ends_with_an_accepted_submit(evaluator, tmp_path):
    problem = small("07_rmsnorm")
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    toolbox = Toolbox(problem, evaluator, store, session="builtin-test", origin=Origin("builtin", "builtin-0.1"))
    turns, attempts = drive(BuiltinPolicy(history=store), toolbox, problem, detect(force_cpu=True))
    assert [a.tool for a in attempts] == ["benchmark", "submit"]
    assert attempts[-1].status is EvalStatus.CORRECT
    assert store.submission("builtin-test") == attempts[-1].evaluation_id
    assert "speed was not measured" in turns[-1].text and not turns[-1].tool_calls


def test_policy_is_deterministic():
    problem = small("19_linear_gelu_scale")
    one, two = first_turn(BuiltinPolicy(), problem), first_turn(BuiltinPolicy(), problem)
    assert one == two


FORWARD_ONLY = '''import torch
import torch.nn as nn

SMALL_SIZES = {"rows": 5}
rows = 64


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x - 0.25) * 2.0


def get_inputs():
    return [torch.randn(rows, 37)]


def get_init_inputs():
    return []
'''


def test_a_model_with_only_forward_gets_a_correct_kernel(tmp_path, evaluator):
    """A Model with no __init__ (nn.Module's own) gets a ModelNew with none either (it was
    refused: 'Model has no __init__ written in the problem file'), checked by the evaluator."""
    path = tmp_path / "forward_only.py"
    path.write_text(FORWARD_ONLY)
    problem = load_problem(path, size="small")
    assert make_plan(problem).error is None
    turn = first_turn(BuiltinPolicy(), problem)
    source = json.loads(turn.tool_calls[0].arguments)["code"]
    assert "def __init__" not in source
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


def test_an_init_inherited_from_a_class_the_file_does_not_hold_is_reported(tmp_path):
    path = tmp_path / "inherited.py"
    path.write_text(FORWARD_ONLY.replace("class Model(nn.Module):", "class Model(nn.ReLU):"))
    plan = make_plan(load_problem(path, size="small"))
    assert "Model's __init__ comes from ReLU" in plan.error
