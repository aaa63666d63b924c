"""The tolerance contract of tools/compare.py: every element within
`atol * max(1, rms(ref)) + rtol * |ref|`, the relative L2 error within `rel_l2`.

The absolute term follows the output's scale: an element near zero in an output whose
values are in the thousands carries the rounding error of the large values it was computed
from, so it is held to `atol * rms`, not to `atol` alone. Each test pins one factor of the
formula at a boundary, so that dropping or changing it flips the verdict."""
import pytest
import torch

from tools.compare import TOLERANCES, compare

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
