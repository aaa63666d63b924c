"""The trusted comparison of a candidate's outputs with the reference's.

First the strict output contract (container, exact tensor type, device, dtype, shape,
no storage shared with an input), then numerics in float64: every element within
`atol * max(1, rms(ref)) + rtol * |ref|` (the absolute term follows the output's scale,
so an fp32 sum of large values is held to fp32 accuracy, not to 1e-4 absolute), the
relative L2 error within `rel_l2`, non-finite values exactly where the reference has
them. Integer and boolean outputs must be equal. Floating outputs are compared in
slices of CHUNK elements, so the float64 temporaries of a billion-element output stay
small next to the model that made it.
"""
from dataclasses import dataclass

import torch

from tools.sandbox.replies import OutputMeta


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    rel_l2: float


TOLERANCES = {
    torch.float64: Tolerance(1e-7, 1e-7, 1e-7),
    torch.float32: Tolerance(1e-4, 1e-4, 1e-4),
    torch.float16: Tolerance(1e-2, 1e-2, 1e-2),
    torch.bfloat16: Tolerance(1e-2, 1e-2, 1e-2),
}


@dataclass(frozen=True)
class Comparison:
    ok: bool
    reason: str
    max_abs_error: float | None = None
    rel_error: float | None = None


def check_contract(ref_container: str, reference: list[torch.Tensor], meta: OutputMeta, device: str) -> str:
    """'' when the worker's facts about the outputs match the reference's exact form,
    else what is wrong."""
    items = meta.items
    if meta.container != ref_container or len(items) != len(reference):
        return f"output is a {meta.container} of {len(items)}, expected a {ref_container} of {len(reference)}"
    for index, (ref, item) in enumerate(zip(reference, items)):
        label = "output" if ref_container == "tensor" else f"output {index}"
        if item.type != "torch.Tensor":
            return f"{label} is a {item.type}, expected exactly torch.Tensor"
        if item.device != device:
            return f"{label} is on {item.device}, expected {device}"
        if item.dtype != str(ref.dtype):
            return f"{label} has dtype {item.dtype}, expected {ref.dtype}"
        if list(item.shape) != list(ref.shape):
            return f"{label} has shape {tuple(item.shape)}, expected {tuple(ref.shape)}"
        if item.shares_input_storage:
            return f"{label} shares storage with an input"
        if item.written is not True:
            return f"{label} was not delivered by the worker"
    return ""


def compare(reference: list[torch.Tensor], outputs: list[torch.Tensor]) -> Comparison:
    """Numerics of outputs that already passed the contract; the worst item decides."""
    worst = Comparison(True, "", 0.0, 0.0)
    for index, (ref, out) in enumerate(zip(reference, outputs)):
        result = _compare_one(ref, out, f"output {index}" if len(reference) > 1 else "output")
        if not result.ok:
            return result
        worst = Comparison(True, "", max(worst.max_abs_error, result.max_abs_error),
                           max(worst.rel_error, result.rel_error))
    return worst


CHUNK = 1 << 24     # elements compared at once in float64 (128 MiB a temporary): a billion-element output fits


def _compare_one(ref: torch.Tensor, out: torch.Tensor, label: str) -> Comparison:
    if not ref.is_floating_point():
        mismatched = int((ref != out.to(ref.device)).sum())
        if mismatched:
            return Comparison(False, f"{label}: {mismatched}/{ref.numel()} elements differ (exact match required)", None, None)
        return Comparison(True, "", 0.0, 0.0)
    tol = TOLERANCES.get(ref.dtype, TOLERANCES[torch.float32])
    nonfinite_bad, special_bad, squares, count = 0, False, 0.0, 0
    for r, o in _slices(ref, out):              # first pass: non-finite values, and the reference's scale
        finite = torch.isfinite(r)
        nonfinite_bad += int((finite & ~torch.isfinite(o)).sum())
        special = ~finite
        if bool(special.any()) and not bool(((o[special] == r[special]) | (o[special].isnan() & r[special].isnan())).all()):
            special_bad = True
        kept = r[finite]
        squares, count = squares + float(kept.pow(2).sum()), count + kept.numel()
    if nonfinite_bad:
        return Comparison(False, f"{label}: {nonfinite_bad} non-finite values where the reference is finite")
    if special_bad:
        return Comparison(False, f"{label}: differs from the reference where the reference is inf or nan")
    if count == 0:
        return Comparison(True, "", 0.0, 0.0)
    return _numeric(ref, out, tol, label, max(1.0, (squares / count) ** 0.5), squares, count)


def _slices(ref: torch.Tensor, out: torch.Tensor):
    """(reference, output) float64 slices of CHUNK elements, flattened, on the reference's device."""
    r_flat, o_flat = ref.reshape(-1), out.to(ref.device).reshape(-1)
    for start in range(0, r_flat.numel(), CHUNK):
        yield r_flat[start:start + CHUNK].double(), o_flat[start:start + CHUNK].double()


def _numeric(ref: torch.Tensor, out: torch.Tensor, tol: Tolerance, label: str, scale: float, squares: float,
             count: int) -> Comparison:
    """Second pass over the finite elements: every one within atol * scale + rtol * |ref|,
    then the relative L2 error; the worst element (largest excess) is reported."""
    max_abs, diff_squares, n_out, worst = 0.0, 0.0, 0, (0.0, 0.0, 0.0)    # worst: (excess, got, expected)
    for r, o in _slices(ref, out):
        finite = torch.isfinite(r)
        if not bool(finite.all()):
            r, o = r[finite], o[finite]
        if r.numel() == 0:
            continue
        diff = (o - r).abs()
        allowed = tol.atol * scale + tol.rtol * r.abs()
        outside = diff > allowed
        max_abs, diff_squares = max(max_abs, float(diff.max())), diff_squares + float(diff.pow(2).sum())
        n_out += int(outside.sum())
        if bool(outside.any()):
            excess = (diff - allowed) * outside
            at = int(torch.argmax(excess))
            if float(excess[at]) > worst[0]:
                worst = (float(excess[at]), float(o[at]), float(r[at]))
    rel = diff_squares ** 0.5 / max(squares ** 0.5, 1e-300)
    if n_out:
        reason = (f"{label}: {n_out}/{count} elements outside atol={tol.atol:g}*{scale:.3g}, rtol={tol.rtol:g}; "
                  f"worst got {worst[1]:.6g}, expected {worst[2]:.6g}; max abs error {max_abs:.3g}")
        return Comparison(False, reason, max_abs, rel)
    if rel > tol.rel_l2:
        return Comparison(False, f"{label}: relative L2 error {rel:.3g} above {tol.rel_l2:g}", max_abs, rel)
    return Comparison(True, "", max_abs, rel)


def judge_call(container: str, expected: list[torch.Tensor], inputs: list[torch.Tensor] | None,
               outputs: list, meta: OutputMeta, inputs_after: list | None, device: str) -> Comparison:
    """Contract, then untouched inputs, then numerics: one call's outputs (the arena
    slots the worker wrote) against the reference."""
    broken = check_contract(container, expected, meta, device)
    if broken:
        return Comparison(False, broken)
    for index, (before, after) in enumerate(zip(inputs or [], inputs_after or [])):
        if not torch.equal(before, after.to(before.device)):
            return Comparison(False, f"the candidate modified input {index}")
    return compare(expected, outputs)
