"""nn.GRU in Triton (plans/gru.py, KernelBench level 3's 39-42): the output and h_n of one or
several layers, one direction or both, batch first or not, with and without biases and an
initial state, a program walking the steps or a launch a step, checked by the real evaluator
in the Triton interpreter against PyTorch's own GRU; the search offers the launch a step with
a CUDA graph; a GRU whose dropout makes it random stays in PyTorch, and the unpacked value nothing
reads is not computed."""
import pytest

from agent.builtin import BuiltinPolicy
from agent.builtin.plans.common import Config
from agent.builtin.partition import StageKind
from agent.builtin.policy import make_plan
from agent.builtin.search import space_for
from tools.problems import load_problem
from tools.records import EvalStatus


def gru_problem(tmp_path, name, options="", forward=None, inputs=None):
    forward = forward or "output, h_n = self.gru(x, h0)\n        return output"
    inputs = inputs or "torch.rand(5, 3, 4), torch.rand(2, 3, 6)"
    path = tmp_path / f"{name}.py"
    path.write_text(f"""import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, {options})

    def forward(self, x, h0):
        {forward}


def get_inputs():
    return [{inputs}]


def get_init_inputs():
    return [4, 6]
""")
    return load_problem(path)


CASES = {   # name: (GRU options, forward, inputs); hidden 6 is not a power of two: masked lanes
    "output": ("num_layers=2", None, None),
    "hidden": ("num_layers=2", "output, h_n = self.gru(x, h0)\n        return h_n", None),
    "bidirectional": ("num_layers=2, bidirectional=True", None, "torch.rand(5, 3, 4), torch.rand(4, 3, 6)"),
    "bidirectional_hidden": ("num_layers=2, bidirectional=True", "return self.gru(x, h0)[1]",
                             "torch.rand(5, 3, 4), torch.rand(4, 3, 6)"),
    "batch_first_no_bias": ("num_layers=1, bias=False, batch_first=True", None,
                            "torch.rand(3, 5, 4), torch.rand(1, 3, 6)"),
    "no_initial_state": ("num_layers=3", "output, h_n = self.gru(x)\n        return torch.relu(output) * 2.0", None),
}


@pytest.mark.parametrize("steps", [False, True], ids=["walking", "launch_a_step"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_gru_in_triton_matches_pytorch(name, steps, tmp_path, evaluator):
    options, forward, inputs = CASES[name]
    problem = gru_problem(tmp_path, name, options, forward, inputs)
    plan = make_plan(problem)
    assert plan.error is None, plan.error
    recurrent = [s for s in plan.stages if s.kind is StageKind.RECURRENT]
    assert len(recurrent) == 1          # `output, h_n = ...`: the value nothing reads is not a second GRU
    source = BuiltinPolicy().source(problem, Config(gru_steps=steps))
    assert ("for step in range(T):  # a launch a step" in source) is steps
    assert ("tl.debug_barrier()" in source) is not steps
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


def test_a_gru_with_dropout_in_training_stays_in_pytorch(tmp_path):
    problem = gru_problem(tmp_path, "dropout", "num_layers=2, dropout=0.5", "return torch.relu(self.gru(x, h0)[0])")
    plan = make_plan(problem)
    assert plan.error is None, plan.error
    kinds = [s.kind for s in plan.stages]
    assert StageKind.RECURRENT not in kinds and kinds[0] is StageKind.TORCH and "dropout=0.5" in plan.stages[0].reason


def test_the_search_offers_a_launch_a_step_and_a_cuda_graph_for_a_gru(tmp_path):
    problem = gru_problem(tmp_path, "search", "num_layers=2")
    plan = make_plan(problem)
    assert plan.error is None, plan.error
    space = space_for(list(plan.stages), plan.graph, True, False)
    assert not space.start.gru_steps and not space.start.cuda_graph
    assert space.axes["gru_steps"] == (False, True) and space.axes["cuda_graph"] == (False, True)
    assert "cuda_graph" not in space_for(list(plan.stages), plan.graph, False, False).axes     # no GPU, no graph
