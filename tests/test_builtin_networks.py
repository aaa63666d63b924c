"""Networks in the shape of KernelBench level 3 (issue 24): the built-in policy's candidate
carries what the problem's __init__ needs beyond Model.__init__ (block classes and functions
defined in the file, Model's class attributes and helper methods, decorators kept), an
__init__ that cannot run on the meta device is built on the CPU for the capture, a tensor
attribute forward overwrites in place before reassigning it is planned, and one whose value
carries from call to call is a plan error, not a crash. Module-level assignments the
carried code reads come along (constants with the loaded module's values). Problems written for these
tests under tests/fixtures/networks/; candidates checked by the real evaluator in the Triton
interpreter."""
from pathlib import Path

import pytest

from agent.builtin import BuiltinPolicy
from benchmarks.builds import check
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from tools.problems import load_problem
from tools.records import EvalStatus

NETWORKS = Path(__file__).parent / "fixtures" / "networks"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["blocks_network", "item_at_init"])
def test_a_network_candidate_builds_and_is_correct(name, evaluator):
    problem = load_problem(NETWORKS / f"{name}.py")
    plan = make_plan(problem)
    assert plan.error is None, plan.error
    source = BuiltinPolicy().source(problem, Config())
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]


def test_the_candidate_carries_the_files_blocks_and_models_members():
    problem = load_problem(NETWORKS / "blocks_network.py")
    source = BuiltinPolicy().source(problem, Config())
    for kept in ("def widen(", "GROWTH = 2\n", "class Block(nn.Module):", "super(Block, self).__init__()", "    expansion = 2",
                 "    def _make_stage(", "    @functools.lru_cache(maxsize=None)", "super(ModelNew, self).__init__()"):
        assert kept in source, kept
    assert "UNREAD_SIZE" not in source          # module constants nothing carried reads stay behind
    assert "class Model(" not in source and "def get_inputs" not in source and '"""Stem, two blocks' not in source
    model_new = source[source.index("class ModelNew"):]
    assert model_new.count("    def forward(") == 1           # Model's own forward is not carried


def test_state_forward_overwrites_before_reading_is_planned_and_correct(evaluator):
    """Level 3's vanilla RNN: `self.hidden.copy_(h0)` first, then reassigned; the output depends
    on this call's inputs only, and the candidate keeps nothing across calls."""
    problem = load_problem(NETWORKS / "overwritten_state.py")
    plan = make_plan(problem)
    assert plan.error is None, plan.error
    source = BuiltinPolicy().source(problem, Config())
    forward = source[source.index("    def forward("):]
    assert "self.hidden.copy_(initial_hidden)" in forward and "self.hidden =" not in forward
    assert evaluator.evaluate(problem, source).status is EvalStatus.CORRECT


def test_state_carried_from_call_to_call_is_a_plan_error():
    """forward reads what its last call left in `self.hidden`: a candidate may not keep values
    across calls (the static check's input_cache rule), so there is no plan to write."""
    plan = make_plan(load_problem(NETWORKS / "tensor_attribute.py"))
    assert plan.error is not None and "depends on the previous call's" in plan.error


def test_a_tensor_forward_assigns_from_outside_the_trace_is_a_plan_error(tmp_path):
    source = (NETWORKS / "tensor_attribute.py").read_text().replace(
        "self.hidden = torch.tanh(self.linear(torch.cat((x, self.hidden), dim=1)))",
        "self.hidden = torch.ones(4, 8)\n        return torch.tanh(self.linear(torch.cat((x, x), dim=1)))")
    path = tmp_path / "untraced_state.py"
    path.write_text(source)
    plan = make_plan(load_problem(path))
    assert plan.error is not None and "state fx cannot follow" in plan.error


def test_the_build_count_says_what_each_problem_came_to(tmp_path):
    """benchmarks/builds.py, which counted level 3's builds for RESULTS.md."""
    outcomes = {path.stem: check(path, tmp_path)[0] for path in sorted(NETWORKS.glob("*.py"))}
    assert outcomes == {"blocks_network": "ok", "item_at_init": "ok", "overwritten_state": "ok", "tensor_attribute": "plan"}


MODULE_CONSTANTS = '''
import torch
import torch.nn as nn

batch_size = 8
in_features = 256


def tune():     # never read by Model: not the candidate's (it would be rejected as a patch)
    torch.backends.cudnn.benchmark = True


class Model(nn.Module):
    def __init__(self):
        super(Model, self).__init__()
        self.fc = nn.Linear(in_features, in_features)

    def forward(self, x):
        return torch.relu(self.fc(x))


Model.__doc__ = "an attribute of Model set at module level: not carried (ModelNew has no Model to set it on)"


def get_inputs():
    return [torch.rand(batch_size, in_features)]


def get_init_inputs():
    return []
'''


@pytest.mark.slow
def test_a_module_constant_init_reads_comes_with_its_small_size_value_and_nothing_unread_comes(tmp_path, evaluator):
    path = tmp_path / "module_constants.py"
    path.write_text(MODULE_CONSTANTS)
    problem = load_problem(path, size="small")      # no SMALL_SIZES: in_features lowered to 64 in the module
    source = BuiltinPolicy().source(problem, Config())
    assert "in_features = 64\n" in source and "batch_size" not in source
    assert "def tune" not in source and "Model.__doc__" not in source
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]
