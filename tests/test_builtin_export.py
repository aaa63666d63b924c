"""The torch.export fallback of the built-in capture: forwards torch.fx cannot trace (sizes
used as Python numbers) are exported instead, module layers come back as modules, aten
calls keep every argument, ops with no torch binding stay `torch.ops.aten...` calls, and
what neither can capture is reported plainly. Kernels run in the Triton interpreter.

    pytest -q tests/test_builtin_export.py
"""
import pytest
import torch
import torch.fx as fx

from agent.builtin import BuiltinPolicy
from agent.builtin.capture import capture
from agent.builtin.export import exported_module
from agent.builtin.ir import Ref
from agent.builtin.partition import StageKind
from agent.builtin.plans.common import Config
from agent.builtin.policy import make_plan
from agent.policy import has_analysis
from tests.builtin_helpers import extra_problem, first_turn
from tools.records import EvalStatus


def write_problem(tmp_path, forward: str, inputs: str, layers: str = "pass", init: str = "0, 0"):
    return extra_problem(tmp_path, "exported", (forward, inputs, init, None, layers))


def assert_correct(problem, evaluator) -> str:
    source = BuiltinPolicy().source(problem, Config())
    result = evaluator.evaluate(problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason + result.log[-2000:]
    return source


# fx traces `math.sqrt` of a size into a Python number no kernel computes (unsupported): export
# holds the number, so these forwards are captured by torch.export
SCALE = " / math.sqrt(x.size(-1))"     # what the tests below append to their forwards
EXPORTED = {  # forward, layers, stages: each aten op bound as the reference wrote it
    "constant": ("return torch.relu(x * torch.tensor(0.5)) / math.sqrt(x.size(-1))", "pass", ["pointwise"]),
    "linear_softmax": ("return torch.softmax(self.fc(x) / math.sqrt(x.size(-1)), dim=-1)", "self.fc = nn.Linear(9, 6)",
                       ["matmul", "rows"]),
    "max_values": ("return torch.max(x, dim=1)[0] / math.sqrt(x.size(-1))", "pass", ["rows"]),   # unread indices: none
    "pool_elu": ("return F.elu(self.pool(x.view(4, 1, 3, 3)), 0.5) / math.sqrt(x.size(-1))",
                 "self.pool = nn.MaxPool2d(2, 1)", ["view", "pool"]),
    "leaky_gelu": ("return F.gelu(F.leaky_relu(x, 0.2), approximate='tanh') / math.sqrt(x.size(-1))", "pass",
                   ["pointwise"]),
    "clamp_mean_dims": ("return torch.clamp(x, min=-0.5).mean(dim=[0]) / math.sqrt(x.size(-1))", "pass",
                        ["pointwise", "reduce"]),
    "functional_layer_norm": ("return F.layer_norm(x, (9,), self.w, None, 1e-3) / math.sqrt(x.size(-1))",
                              "self.w = nn.Parameter(torch.randn(9))", ["rows"]),
}


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_exported_forwards_get_correct_kernels(name, tmp_path, evaluator):
    forward, layers, stages = EXPORTED[name]
    problem = write_problem(tmp_path, forward, "torch.randn(4, 9)", layers)
    plan = make_plan(problem)
    assert plan.error is None and plan.captured.tracer == "torch.export"
    assert [s.kind.value for s in plan.stages] == stages
    assert "captured\nwith torch.export and split" in assert_correct(problem, evaluator)   # the source says so


# fx traces `math.sqrt` of sizes into a Python number no kernel computes; export holds the number
SHAPE_UNPACK = ("x = self.conv(x)\n        B, C, H, W = x.shape\n        "
                "return torch.relu(x.view(B, C, -1).mean(-1)) / math.sqrt(H * W)")


def test_shape_unpacking_after_a_conv_is_exported_with_the_conv_as_its_module(tmp_path, evaluator):
    problem = write_problem(tmp_path, SHAPE_UNPACK, "torch.rand(2, 3, 10, 12)", "self.conv = nn.Conv2d(a, b, 3)",
                            "3, 8")
    graph = capture(problem)
    assert graph.tracer == "torch.export" and not graph.unsupported
    conv = next(n for n in graph.nodes if n.op == "conv2d")
    assert graph.node(conv.refs[1]).attrs == {"path": "conv.weight"} and conv.attrs["stride"] == (1, 1)
    # the batch is read from the tensor (export keeps it symbolic); the channels are the conv's
    assert [n.attrs["dims"][1:] for n in graph.nodes if n.op == "view"] == [(8, -1)]
    assert all(isinstance(n.attrs["dims"][0], Ref) for n in graph.nodes if n.op == "view")
    plan = make_plan(problem)
    assert plan.error is None and {s.kind for s in plan.stages} >= {StageKind.CONV, StageKind.ROWS}
    assert StageKind.TORCH not in [s.kind for s in plan.stages]
    assert_correct(problem, evaluator)
    text = first_turn(BuiltinPolicy(), problem).text
    assert has_analysis(text) and "Op graph (torch.export" in text and "fixed at those shapes" in text


def test_a_loop_over_a_size_fx_cannot_trace_is_unrolled_by_export(tmp_path, evaluator):
    problem = write_problem(tmp_path, "for _ in range(x.shape[1] // 4):\n            x = torch.relu(x) * 2.0\n"
                            "        return x", "torch.randn(5, 8)")
    graph = capture(problem)
    assert graph.tracer == "torch.export" and [n.op for n in graph.nodes] == ["input", "relu", "mul", "relu", "mul"]
    plan = make_plan(problem)
    assert [s.kind for s in plan.stages] == [StageKind.POINTWISE]
    assert_correct(problem, evaluator)


def test_alpha_of_an_exported_add_and_rsub_is_kept(tmp_path, evaluator):
    problem = write_problem(tmp_path, f"return torch.add(x, torch.rsub(x, 2.0, alpha=3), alpha=2){SCALE}",
                            "torch.randn(4, 9)")
    graph = capture(problem)
    assert graph.tracer == "torch.export"
    assert [(n.op, n.kept and n.kept.template) for n in graph.nodes if n.op in ("rsub", "add")] == [
        ("rsub", "torch.rsub({0}, 2.0, alpha=3)"), ("add", "torch.add({0}, {1}, alpha=2)")]
    source = assert_correct(problem, evaluator)
    assert "alpha=3" in source and "alpha=2" in source


def test_an_exported_op_with_no_torch_binding_is_kept_as_its_aten_call(tmp_path, evaluator):
    problem = write_problem(tmp_path, f"return torch.relu(x.unsqueeze(1).expand(-1, 3, -1) - 0.5){SCALE}",
                            "torch.randn(4, 9)")
    plan = make_plan(problem)
    assert plan.error is None and plan.captured.tracer == "torch.export"
    assert [s.kind for s in plan.stages] == [StageKind.VIEW, StageKind.TORCH]
    source = assert_correct(problem, evaluator)
    assert "torch.ops.aten.expand.default(" in source and "@triton.jit" in source


def test_a_loss_whose_aten_arguments_mean_other_things_stays_an_aten_call(tmp_path, evaluator):
    # aten's mse_loss takes `reduction` as an int (0: none) where F.mse_loss's third argument is
    # size_average: bound by F's names it would be read as the default reduction, the mean
    problem = write_problem(tmp_path, f"return F.mse_loss(x, x * 0.5, reduction='none'){SCALE}", "torch.randn(4, 9)")
    graph = capture(problem)
    loss = next(n for n in graph.nodes if n.kept and "mse_loss" in n.kept.template)
    assert loss.op == "torch" and loss.kept.template == "torch.ops.aten.mse_loss.default({0}, {1}, 0)"
    assert_correct(problem, evaluator)


def test_a_tensor_built_on_the_inputs_device_follows_the_inputs(tmp_path, evaluator):
    # fx cannot call torch.ones with traced sizes; export ran on meta tensors and wrote device=meta
    problem = write_problem(tmp_path, "n = x.size(-1)\n        mask = torch.ones(n, n, device=x.device).triu(1)\n"
                            "        return torch.relu(x @ mask)", "torch.randn(4, 9)")
    plan = make_plan(problem)
    assert plan.error is None and plan.captured.tracer == "torch.export"
    source = assert_correct(problem, evaluator)
    assert "= x.device  # kept in PyTorch" in source and "device=getattr" in source


def test_a_tensor_built_on_a_fixed_device_is_reported_not_written_back(tmp_path):
    problem = write_problem(tmp_path, "n = x.size(-1)\n        mask = torch.ones(n, n, device='cpu').to(x.device)\n"
                            "        return x @ mask.triu(1)", "torch.randn(4, 9)")
    plan = make_plan(problem)
    assert plan.error == "ones: ones builds a tensor on a fixed device (cpu), not on the inputs' device"
    turn = first_turn(BuiltinPolicy(), problem)
    assert not turn.tool_calls and "Not supported by the built-in plans: ones:" in turn.text
    assert "Op graph (torch.export" in turn.text


def test_a_forward_neither_tracer_captures_names_both(tmp_path):
    problem = write_problem(tmp_path, "if x.sum() > 0:\n            return x * 2.0\n        return x",
                            "torch.randn(4, 9)")
    error = make_plan(problem).error
    assert error.startswith("torch.fx could not trace Model.forward: TraceError")
    assert "; torch.export could not capture Model.forward: " in error


def test_fx_stays_first_for_an_ordinary_problem(softmax_problem):
    assert capture(softmax_problem).tracer == "torch.fx"
    turn = first_turn(BuiltinPolicy(), softmax_problem)
    assert "Op graph (torch.fx, shapes from get_inputs):" in turn.text and turn.tool_calls


def exported(problem) -> fx.GraphModule:
    with torch.device("meta"):
        model, inputs = problem.module.Model(*problem.init_inputs()), problem.draw_inputs()
    return exported_module(model, inputs)


@pytest.mark.parametrize("forward, layer, module", [
    ("return self.conv(x)", "nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)", "Conv2d"),
    ("return F.conv2d(x, self.conv.weight, self.conv.bias, 1, 1)", "nn.Conv2d(3, 4, 3, padding=1)", "Conv2d"),
    ("return self.conv(x)", "nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)", "ConvTranspose2d"),
    ("return self.conv(x[:, :, 0])", "nn.ConvTranspose1d(3, 4, 3, dilation=2, groups=1)", "ConvTranspose1d"),
    ("return self.conv(x.flatten(2))", "nn.LayerNorm(42)", "LayerNorm"),
    ("return self.conv(x)", "nn.GroupNorm(1, 3)", "GroupNorm"),
    ("return self.conv(x)", "nn.Linear(7, 5)", "Linear"),
    # the module's weight with other settings than its own: a function call, as written
    ("return F.conv2d(x, self.conv.weight, self.conv.bias, stride=2)", "nn.Conv2d(3, 4, 3)", None),
    ("return F.conv2d(x, self.conv.weight)", "nn.Conv2d(3, 4, 3)", None),
    ("return F.layer_norm(x, (7,), self.conv.weight, self.conv.bias, 1e-3)", "nn.LayerNorm(7)", None),
])
def test_layer_calls_become_module_calls_only_with_the_modules_own_settings(forward, layer, module, tmp_path):
    graph = exported(write_problem(tmp_path, forward, "torch.randn(2, 3, 6, 7)", f"self.conv = {layer}")).graph
    calls = [n for n in graph.nodes if n.op not in ("placeholder", "output")]
    if module is None:
        assert all(n.op != "call_module" for n in calls) and any(n.op == "get_attr" for n in calls)
        return
    layer_call = next(n for n in calls if n.op == "call_module")
    assert layer_call.target == "conv" and type(graph.owning_module.conv).__name__ == module
    assert not [n for n in calls if n.op == "get_attr"] and all(n.target != "_guards_fn" for n in calls)

