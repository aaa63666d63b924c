"""Problem lint: flag degenerate problems once per problem instead of scoring them silently.

A problem is degenerate when a candidate could pass without computing it: its output
barely depends on the input (two independent inputs give outputs equal within
tolerance), its output is not well above the tolerance (an all-zeros answer is
close enough), or its reference does not reproduce itself on the same input (active
Dropout: no candidate can match it). The lint also decides which input distributions
are usable: one whose reference output turns non-finite while the problem's own stays
finite (a `log` of signed inputs) is left out of the trials.
"""
import torch

from tools.compare import compare
from tools.inputs import Distribution, draw
from tools.records import LintReport
from tools.reference import Reference

LINT_SEEDS = (11, 22)   # public on purpose: lint judges the problem, not a candidate


def lint_problem(reference: Reference) -> LintReport:
    """Each output is dropped as soon as it is compared: on KernelBench's sizes one output
    can be 8 GB, and the trusted process also holds the sandbox's arena."""
    problem = reference.problem
    first = draw(problem, LINT_SEEDS[0], Distribution.OWN, reference.device)
    _, out_a = reference.run(first)
    _, out_again = reference.run(first)
    del first
    findings = []
    if not compare(out_a, out_again).ok:
        findings.append("the reference does not reproduce itself on the same input (random ops such as active Dropout)")
    del out_again
    _, out_b = reference.run(draw(problem, LINT_SEEDS[1], Distribution.OWN, reference.device))
    if compare(out_a, out_b).ok:
        findings.append("the output barely depends on the input: two independent inputs give outputs equal within tolerance")
    del out_b
    if compare(out_a, [torch.zeros_like(x) for x in out_a]).ok:
        findings.append(f"an all-zeros output passes the comparison (output peaks at {_peak(out_a):.3g})")
    return LintReport(problem_hash=problem.hash, degenerate=bool(findings), findings=findings,
                      distributions=[d.value for d in usable_distributions(reference, out_a)])


def usable_distributions(reference: Reference, own_outputs: list[torch.Tensor]) -> list[Distribution]:
    usable = [Distribution.OWN]
    if not _all_finite(own_outputs):
        return usable
    for distribution in (Distribution.SIGNED, Distribution.SCALED):
        _, outputs = reference.run(draw(reference.problem, LINT_SEEDS[0], distribution, reference.device))
        if _all_finite(outputs):
            usable.append(distribution)
    return usable


def _peak(outputs: list[torch.Tensor]) -> float:
    return max((float(x.float().nan_to_num(posinf=0.0, neginf=0.0).abs().max())
                for x in outputs if x.numel() > 0), default=0.0)


def _all_finite(outputs: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(x).all()) for x in outputs if x.is_floating_point())
