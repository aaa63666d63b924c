"""The trusted comparison (contract, dtype tolerances, scale-aware error) and the
problem lint (degenerate problems flagged once, unusable input distributions dropped)."""
import pytest
import torch

from tests.test_problems import GOOD, write
from tools.compare import check_contract, compare
from tools.device import detect
from tools.lint import lint_problem
from tools.problems import load_problem
from tools.reference import Reference
from tools.sandbox.replies import parse_output_meta


def meta(*items, container="tensor"):
    """The worker's facts about the outputs, parsed as the trusted side reads them."""
    return parse_output_meta({"container": container, "items": [
        {"type": "torch.Tensor", "device": "cpu", "shares_input_storage": False, "dtype": "torch.float32",
         "shape": [2, 3], "written": True, **item} for item in items]})


def test_fp32_accuracy_passes_and_tf32_like_error_fails():
    torch.manual_seed(0)
    a, b = torch.randn(128, 512, dtype=torch.float64), torch.randn(512, 64, dtype=torch.float64)
    exact = (a @ b).float()
    fp32 = a.float() @ b.float()
    assert compare([exact], [fp32]).ok
    # TF32 keeps 10 mantissa bits: round the operands the way tensor cores would
    tf32 = (a.float().view(torch.int32) & ~0x1FFF).view(torch.float32) @ (b.float().view(torch.int32) & ~0x1FFF).view(torch.float32)
    result = compare([exact], [tf32])
    assert not result.ok and result.rel_error > 1e-4


def test_absolute_tolerance_follows_the_output_scale():
    ref = torch.full((1000,), 1000.0)
    assert compare([ref], [ref + 0.05]).ok          # 5e-5 relative: fp32-accurate at this scale
    assert not compare([ref], [ref + 5.0]).ok
    tiny = torch.full((1000,), 1e-5)
    doubled = compare([tiny], [tiny * 2])           # every element within atol=1e-4, yet 100% wrong
    assert not doubled.ok and "relative L2 error" in doubled.reason


def test_non_finite_values_must_match_and_integers_must_be_equal():
    ref = torch.tensor([1.0, float("inf"), float("nan")])
    assert compare([ref], [ref.clone()]).ok
    assert not compare([ref], [torch.tensor([float("nan"), float("inf"), float("nan")])]).ok
    assert not compare([ref], [torch.tensor([1.0, 1.0, float("nan")])]).ok
    assert not compare([torch.tensor([1, 2, 3])], [torch.tensor([1, 2, 4])]).ok


@pytest.mark.parametrize("item,words", [
    ({"dtype": "torch.float64"}, "dtype"),
    ({"shape": [3, 2]}, "shape"),
    ({"device": "meta"}, "on meta"),
    ({"type": "mymod.Lazy"}, "exactly torch.Tensor"),
    ({"shares_input_storage": True}, "shares storage"),
    ({"written": False}, "not delivered"),
])
def test_output_contract(item, words):
    assert words in check_contract("tensor", [torch.zeros(2, 3)], meta(item), "cpu")
    assert "a tuple of 1" in check_contract("tensor", [torch.zeros(2, 3)], meta({}, container="tuple"), "cpu")
    assert check_contract("tensor", [torch.zeros(2, 3)], meta({}), "cpu") == ""


def lint(tmp_path, forward, inputs="torch.rand(batch_size, dim)"):
    text = GOOD.replace("return torch.relu(x)", forward).replace("torch.rand(batch_size, dim)", inputs)
    text = text.replace("class Model(nn.Module):", "class Model(nn.Module):\n    def __init__(self):\n"
                        "        super().__init__()\n        self.drop = nn.Dropout(0.5)\n")
    return lint_problem(Reference(load_problem(write(tmp_path, "p.py", text)), detect(force_cpu=True).torch_device))


def test_lint_passes_an_honest_problem(tmp_path):
    report = lint(tmp_path, "return torch.relu(x)")
    assert not report.degenerate and report.findings == []
    assert report.distributions == ["own", "signed", "scaled"]


@pytest.mark.parametrize("forward,words", [
    ("return x * 0", "barely depends on the input"),
    ("return x.mean() * 0 + 3.0", "barely depends on the input"),
    ("return torch.relu(-x)", "all-zeros output passes"),
    ("return self.drop(x)", "does not reproduce itself"),
    ("return x > 2.0", "all-zeros output passes"),          # a bool output, all False for rand inputs
])
def test_lint_flags_degenerate_problems(tmp_path, forward, words):
    report = lint(tmp_path, forward)
    assert report.degenerate and any(words in finding for finding in report.findings), report.findings


def test_tiny_outputs_are_not_degenerate_because_the_relative_error_still_binds(tmp_path):
    report = lint(tmp_path, "return x * 1e-7")
    assert not report.degenerate, report.findings


def test_lint_drops_distributions_the_reference_is_not_defined_on(tmp_path):
    report = lint(tmp_path, "return torch.log(x)", inputs="torch.rand(batch_size, dim) + 0.5")
    assert report.distributions == ["own", "scaled"] and not report.degenerate


@pytest.mark.parametrize("case", ["close", "one_far", "inf_agrees", "nan_where_finite"])
def test_comparison_in_slices_matches_the_comparison_in_one_piece(case, monkeypatch):
    """Outputs are compared CHUNK elements at a time (float64 temporaries stay small next to
    a billion-element output); slices of 7 give the same verdict, figures and reason."""
    from tools import compare as module
    torch.manual_seed(0)
    ref = torch.randn(5, 37) * 3.0
    out = ref + 1e-6 * torch.randn_like(ref)
    if case == "one_far":
        out[3, 20] += 0.5
        out[1, 2] += 0.25
    if case == "inf_agrees":
        ref[2, 5] = out[2, 5] = float("inf")
    if case == "nan_where_finite":
        out[4, 36] = float("nan")
    whole = module.compare([ref], [out])
    monkeypatch.setattr(module, "CHUNK", 7)
    sliced = module.compare([ref], [out])
    assert (sliced.ok, sliced.reason) == (whole.ok, whole.reason)
    assert sliced.ok is (case in ("close", "inf_agrees"))
    # a non-finite value where the reference is finite fails before any figure is computed
    assert (whole.max_abs_error is None, sliced.max_abs_error is None) == ((case == "nan_where_finite"),) * 2
    if case != "nan_where_finite":
        assert sliced.max_abs_error == pytest.approx(whole.max_abs_error)
        assert sliced.rel_error == pytest.approx(whole.rel_error, rel=1e-9)
    if case == "one_far":
        assert "2/185 elements outside" in sliced.reason and "expected" in sliced.reason
