"""The tolerance contract of tools/compare.py: every element within
`atol * max(1, rms(ref)) + rtol * |ref|`, the relative L2 error within `rel_l2`.

The absolute term follows the output's scale: an element near zero in an output whose
values are in the thousands carries the rounding error of the large values it was computed
from, so it is held to `atol * rms`, not to `atol` alone. Each test pins one factor of the
formula at a boundary, so that dropping or changing it flips the verdict."""
import pytest
import torch

from tools.compare import TOLERANCES, Comparison, check_contract, compare, judge_call
from tools.sandbox.replies import parse_output_meta

FP32 = TOLERANCES[torch.float32]


def large_output_with_a_zero(at: float = 1000.0) -> torch.Tensor:
    """A float32 output whose rms is `at` (to 1e-3) and whose first element is exactly 0."""
    ref = torch.full((10_000,), at)
    ref[0] = 0.0
    return ref


def test_an_element_near_zero_is_held_to_atol_times_the_output_scale():
    ref = large_output_with_a_zero()
    out = ref.clone()
    out[0] = 0.05                           # within 1e-4 * 1000 = 0.1, far outside 1e-4 alone
    result = compare([ref], [out])
    assert result.ok, result.reason
    assert result.max_abs_error == pytest.approx(0.05, rel=1e-6)


def test_the_scaled_absolute_term_is_a_bound_not_a_pass():
    ref = large_output_with_a_zero()
    out = ref.clone()
    out[0] = 0.15                           # above 1e-4 * 1000: the scale loosens atol, it does not lift it
    result = compare([ref], [out])
    assert not result.ok
    assert result.reason.startswith("output: 1/10000 elements outside atol=0.0001*1e+03, rtol=0.0001")
    assert "worst got 0.15, expected 0" in result.reason


def test_the_scale_is_the_root_mean_square_not_the_largest_value():
    ref = torch.zeros(10_000)
    ref[:100] = 1000.0                      # rms = 100, max = 1000
    out = ref.clone()
    out[5000] = 0.009                       # within 1e-4 * 100 = 0.01
    assert compare([ref], [out]).ok
    out[5000] = 0.011                       # within 1e-4 * 1000, but not within 1e-4 * rms
    assert not compare([ref], [out]).ok


def test_a_small_output_keeps_the_plain_atol():
    """max(1, rms): an output of scale 0.01 is not held to 1e-6 absolute."""
    ref = torch.full((100_000,), 0.01)     # many elements: the relative L2 error stays small
    ref[0] = 0.0
    out = ref.clone()
    out[0] = 9e-5                           # within atol=1e-4 (scale 1), outside 1e-4 * 0.01
    assert compare([ref], [out]).ok
    out[0] = 1.1e-4
    assert not compare([ref], [out]).ok


def test_the_relative_term_binds_on_large_elements():
    ref = torch.full((1000,), 1.0)
    ref[0] = 1e4                            # rms ~316: atol*scale ~0.032; rtol*1e4 = 1.0
    out = ref.clone()
    out[0] = 1e4 + 0.9                      # within atol*scale + rtol*|ref| only thanks to the rtol term
    assert compare([ref], [out]).ok
    out[0] = 1e4 + 1.1
    assert not compare([ref], [out]).ok


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 1e-2), (torch.bfloat16, 1e-2), (torch.float64, 1e-7)])
def test_each_dtype_has_its_own_tolerance(dtype, tol):
    ref = torch.zeros(1000, dtype=dtype)
    ref[1:] = 1.0
    near, far = ref.clone(), ref.clone()
    near[0], far[0] = 0.8 * tol, 1.5 * tol
    assert compare([ref], [near]).ok
    result = compare([ref], [far])
    assert not result.ok and f"atol={tol:g}*1" in result.reason


def test_the_relative_l2_error_is_reported_and_bounded():
    ref = torch.full((1000,), 1e-5)
    out = ref * 2                           # each element within atol, the whole output 100% wrong
    result = compare([ref], [out])
    assert not result.ok and result.reason == "output: relative L2 error 1 above 0.0001"
    assert result.rel_error == pytest.approx(1.0, rel=1e-6)
    close = ref * (1 + 0.5 * FP32.rel_l2)
    ok = compare([ref], [close])
    assert ok.ok and ok.rel_error == pytest.approx(0.5 * FP32.rel_l2, rel=1e-2)


# ---- the output contract before numerics, and judge_call's order -------------------------------

def meta(*items, container="tensor"):
    return parse_output_meta({"container": container, "items": [
        {"type": "torch.Tensor", "device": "cpu", "shares_input_storage": False, "dtype": "torch.float32",
         "shape": [2, 3], "written": True, **item} for item in items]})


REF = [torch.zeros(2, 3)]
PAIR = [torch.zeros(2, 3), torch.zeros(2, 3)]


@pytest.mark.parametrize("item, reason", [
    ({"type": "mymod.Lazy"}, "output is a mymod.Lazy, expected exactly torch.Tensor"),
    ({"device": "meta"}, "output is on meta, expected cpu"),
    ({"dtype": "torch.float64"}, "output has dtype torch.float64, expected torch.float32"),
    ({"shape": [3, 2]}, "output has shape (3, 2), expected (2, 3)"),
    ({"shares_input_storage": True}, "output shares storage with an input"),
    ({"written": False}, "output was not delivered by the worker"),
    ({"written": None}, "output was not delivered by the worker"),
])
def test_each_broken_output_contract_is_named_exactly(item, reason):
    assert check_contract("tensor", REF, meta(item), "cpu") == reason
    assert check_contract("tuple", PAIR, meta({}, item, container="tuple"), "cpu") == \
        reason.replace("output", "output 1", 1)


def test_the_container_and_the_count_must_match():
    assert check_contract("tensor", REF, meta({}), "cpu") == ""
    assert check_contract("tuple", PAIR, meta({}, {}, container="tuple"), "cpu") == ""
    assert check_contract("tensor", REF, meta({}, container="tuple"), "cpu") == \
        "output is a tuple of 1, expected a tensor of 1"
    assert check_contract("tuple", PAIR, meta({}, container="tuple"), "cpu") == \
        "output is a tuple of 1, expected a tuple of 2"


def test_judge_call_checks_the_contract_then_the_inputs_then_the_numerics():
    x = torch.randn(2, 3)
    good = [x.clone()]
    assert judge_call("tensor", [x], [x], good, meta({}), [x.clone()], "cpu") == compare([x], good)
    assert judge_call("tensor", [x], [x], good, meta({}), [x.clone()], "cpu").ok
    broken = judge_call("tensor", [x], [x], [x + 1], meta({"dtype": "torch.float64"}), [x + 1], "cpu")
    assert (broken.ok, broken.reason) == (False, "output has dtype torch.float64, expected torch.float32")
    touched = judge_call("tensor", [x], [x, x], [x + 1], meta({}), [x.clone(), x + 1], "cpu")
    assert (touched.ok, touched.reason) == (False, "the candidate modified input 1")
    wrong = judge_call("tensor", [x], [x], [x + 1], meta({}), [x.clone()], "cpu")
    assert not wrong.ok and wrong.reason.startswith("output: 6/6 elements outside")
    assert judge_call("tensor", [x], None, good, meta({}), None, "cpu").ok      # no inputs to compare


def test_several_outputs_are_labelled_and_the_worst_figures_kept():
    a, b = torch.full((1000,), 1.0), torch.full((1000,), 2.0)
    result = compare([a, b], [a + 1e-6, b + 3e-6])
    assert result.ok and result.max_abs_error == pytest.approx(3e-6, rel=0.1)
    assert result.rel_error == pytest.approx(1.5e-6, rel=0.1)
    failed = compare([a, b], [a, b + 1])
    assert not failed.ok and failed.reason.startswith("output 1: 1000/1000 elements outside")


def test_integers_must_match_exactly_and_say_how_many_differ():
    ref = torch.arange(10)
    assert compare([ref], [ref.clone()]) == Comparison(True, "", 0.0, 0.0)
    off = ref.clone()
    off[3] += 1
    assert compare([ref], [off]) == Comparison(False, "output: 1/10 elements differ (exact match required)")


def test_non_finite_values_are_named():
    ref = torch.tensor([1.0, float("inf"), float("nan"), 2.0])
    nan_out = ref.clone()
    nan_out[0] = float("nan")
    assert compare([ref], [nan_out]).reason == "output: 1 non-finite values where the reference is finite"
    flipped = ref.clone()
    flipped[1] = float("-inf")
    assert compare([ref], [flipped]).reason == "output: differs from the reference where the reference is inf or nan"
    assert compare([ref], [ref.clone()]) == Comparison(True, "", 0.0, 0.0)
    only_special = torch.tensor([float("inf"), float("nan")])
    assert compare([only_special], [only_special.clone()]) == Comparison(True, "", 0.0, 0.0)


def test_a_single_wrong_element_fails():
    assert not compare([torch.tensor([1.0])], [torch.tensor([2.0])]).ok
    ref = torch.tensor([float("inf"), 1.0])          # one finite element left after the non-finite ones
    assert not compare([ref], [torch.tensor([float("inf"), 5.0])]).ok


def test_a_slice_with_no_finite_element_does_not_end_the_comparison(monkeypatch):
    from tools import compare as module
    monkeypatch.setattr(module, "CHUNK", 2)
    ref = torch.tensor([float("inf"), float("nan"), 1.0, 2.0])
    out = ref.clone()
    out[3] = 5.0
    assert not module.compare([ref], [out]).ok


def test_an_error_exactly_at_the_bound_is_within():
    ref = torch.full((100_000,), 0.5, dtype=torch.float64)     # rms 0.5: scale 1, atol = rtol = 1e-7
    ref[0] = 0.0
    out = ref.clone()
    out[0] = 1e-7                                               # |diff| == atol * 1 + rtol * 0
    assert compare([ref], [out]).ok
    out[0] = 1.01e-7
    assert not compare([ref], [out]).ok


def test_the_worst_element_is_the_one_furthest_past_its_own_bound():
    ref = torch.ones(1002)
    ref[0], ref[1] = 0.0, 5000.0                # rms ~158: atol*scale ~0.016; at 5000 the bound is ~0.52
    out = ref.clone()
    out[0] += 0.3                               # 0.28 past its bound
    out[1] += 0.6                               # a larger error, but only 0.08 past its bound
    result = compare([ref], [out])
    assert "2/1002 elements outside" in result.reason and "worst got 0.3, expected 0;" in result.reason


def test_a_dtype_without_its_own_tolerance_is_held_to_fp32s():
    ref = torch.tensor([1.0, 2.0, 0.0]).to(torch.float8_e4m3fn)
    assert compare([ref], [ref.clone()]).ok
    off = torch.tensor([1.0, 2.0, 0.001953125]).to(torch.float8_e4m3fn)     # 2e-3 from 0: outside 1e-4 * 1.29
    result = compare([ref], [off])
    assert result.ok is False and "atol=0.0001*1.29, rtol=0.0001" in result.reason


def test_no_outputs_compare_equal():
    assert compare([], []) == Comparison(True, "", 0.0, 0.0)


def test_non_finite_values_are_counted_over_every_slice(monkeypatch):
    from tools import compare as module
    monkeypatch.setattr(module, "CHUNK", 2)
    ref = torch.ones(6)
    out = ref.clone()
    out[0], out[1] = float("nan"), float("inf")      # both in the first slice, none in the last
    assert module.compare([ref], [out]).reason == "output: 2 non-finite values where the reference is finite"


def test_nan_does_not_stand_in_for_inf():
    ref = torch.tensor([1.0, float("inf"), float("-inf")])
    out = ref.clone()
    out[1] = float("nan")
    result = compare([ref], [out])
    assert result.ok is False and "where the reference is inf or nan" in result.reason


def test_failures_are_false_with_their_figures():
    ref = torch.full((1000,), 1e-5)
    result = compare([ref], [ref * 2])
    assert result.ok is False and result.max_abs_error == pytest.approx(1e-5, rel=1e-5)
    special = compare([torch.tensor([float("inf")])], [torch.tensor([1.0])])
    assert special.ok is False
