"""The trusted comparison of a candidate's outputs with the reference's.

First the strict output contract (container, exact tensor type, device, dtype, shape,
no storage shared with an input), then numerics in float64: every element within
`atol * max(1, rms(ref)) + rtol * |ref|` (the absolute term follows the output's scale,
so an fp32 sum of large values is held to fp32 accuracy, not to 1e-4 absolute), the
relative L2 error within `rel_l2`, non-finite values exactly where the reference has
them. Integer and boolean outputs must be equal.
"""
from dataclasses import dataclass

import torch


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


def check_contract(ref_container: str, reference: list[torch.Tensor], meta: dict, device: str) -> str:
    """'' when the worker's facts about the outputs match the reference's exact form,
    else what is wrong."""
    items = meta["items"]
    if meta["container"] != ref_container or len(items) != len(reference):
        return f"output is a {meta['container']} of {len(items)}, expected a {ref_container} of {len(reference)}"
    for index, (ref, item) in enumerate(zip(reference, items)):
        label = "output" if ref_container == "tensor" else f"output {index}"
        if item["type"] != "torch.Tensor":
            return f"{label} is a {item['type']}, expected exactly torch.Tensor"
        if item["device"] != device:
            return f"{label} is on {item['device']}, expected {device}"
        if item["dtype"] != str(ref.dtype):
            return f"{label} has dtype {item['dtype']}, expected {ref.dtype}"
        if list(item["shape"]) != list(ref.shape):
            return f"{label} has shape {tuple(item['shape'])}, expected {tuple(ref.shape)}"
        if item["shares_input_storage"]:
            return f"{label} shares storage with an input"
        if item["written"] is not True:
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


def _compare_one(ref: torch.Tensor, out: torch.Tensor, label: str) -> Comparison:
    if not ref.is_floating_point():
        mismatched = int((ref != out.to(ref.device)).sum())
        if mismatched:
            return Comparison(False, f"{label}: {mismatched}/{ref.numel()} elements differ (exact match required)", None, None)
        return Comparison(True, "", 0.0, 0.0)
    tol = TOLERANCES.get(ref.dtype, TOLERANCES[torch.float32])
    r, o = ref.double(), out.to(ref.device).double()
    finite = torch.isfinite(r)
    nonfinite_bad = int((finite & ~torch.isfinite(o)).sum())
    if nonfinite_bad:
        return Comparison(False, f"{label}: {nonfinite_bad} non-finite values where the reference is finite")
    special = ~finite
    if bool(special.any()) and not bool(((o[special] == r[special]) | (o[special].isnan() & r[special].isnan())).all()):
        return Comparison(False, f"{label}: differs from the reference where the reference is inf or nan")
    return _numeric(r[finite], o[finite], tol, label)


def _numeric(r: torch.Tensor, o: torch.Tensor, tol: Tolerance, label: str) -> Comparison:
    if r.numel() == 0:
        return Comparison(True, "", 0.0, 0.0)
    diff = (o - r).abs()
    scale = max(1.0, float(r.pow(2).mean().sqrt()))
    allowed = tol.atol * scale + tol.rtol * r.abs()
    outside = diff > allowed
    max_abs = float(diff.max())
    rel = float(diff.norm() / max(float(r.norm()), 1e-300))
    n_out = int(outside.sum())
    if n_out:
        at = int(torch.argmax((diff - allowed) * outside))
        reason = (f"{label}: {n_out}/{r.numel()} elements outside atol={tol.atol:g}*{scale:.3g}, rtol={tol.rtol:g}; "
                  f"worst got {float(o[at]):.6g}, expected {float(r[at]):.6g}; max abs error {max_abs:.3g}")
        return Comparison(False, reason, max_abs, rel)
    if rel > tol.rel_l2:
        return Comparison(False, f"{label}: relative L2 error {rel:.3g} above {tol.rel_l2:g}", max_abs, rel)
    return Comparison(True, "", max_abs, rel)


def judge_call(container: str, expected: list[torch.Tensor], inputs: list[torch.Tensor] | None,
               outputs: list, meta: dict, inputs_after: list | None, device: str) -> Comparison:
    """Contract, then untouched inputs, then numerics: one call's outputs (the arena
    slots the worker wrote) against the reference."""
    broken = check_contract(container, expected, meta, device)
    if broken:
        return Comparison(False, broken)
    for index, (before, after) in enumerate(zip(inputs or [], inputs_after or [])):
        if not torch.equal(before, after.to(before.device)):
            return Comparison(False, f"the candidate modified input {index}")
    return compare(expected, outputs)
